//go:build unix

package testkit

import (
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// SlowClient asks addr (host:port) for uri on a raw connection whose
// receive buffer is as small as the kernel allows, and reads the answer
// one byte per second: a client that barely reads, whose socket fills at
// once. It is closed when the test ends.
func SlowClient(tb testing.TB, addr, uri string) {
	tb.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() {
		conn.Close()
		<-done
	})
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", uri, addr); err != nil {
		close(done)
		tb.Fatal(err)
	}
	go func() {
		defer close(done)
		b := make([]byte, 1)
		for {
			if _, err := conn.Read(b); err != nil {
				return
			}
			time.Sleep(time.Second) // the slow client
		}
	}()
}

// Digest is what a client got: the body summed (CRC-32) rather than kept,
// and when it was whole.
type Digest struct {
	Status      int
	CacheStatus string // X-Cache-Status
	Size        int64
	Sum         uint32
	Took        time.Duration
	End         time.Time
}

// GetDigest GETs url with client and sums the body as it comes: a large
// body read into memory costs more than it takes to come.
func GetDigest(tb testing.TB, client *http.Client, url string) Digest {
	start := time.Now()
	res, err := client.Get(url)
	if err != nil {
		tb.Error(err)
		return Digest{}
	}
	defer res.Body.Close()
	h := crc32.NewIEEE()
	n, err := io.Copy(h, res.Body)
	if err != nil {
		tb.Error(err)
	}
	return Digest{res.StatusCode, res.Header.Get("X-Cache-Status"), n, h.Sum32(), time.Since(start), time.Now()}
}
