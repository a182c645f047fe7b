//go:build linux

package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// slowClient dials s with a small receive buffer.
func slowClient(t *testing.T, s *site) *net.TCPConn {
	t.Helper()
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.ports["PUBLIC"]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tc := conn.(*net.TCPConn)
	if err := tc.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	return tc
}

// A hit from memory larger than Caddy's 64 KiB write chunk goes out whole:
// its deadline moves forward as the client takes it, and the client gets
// every byte, whole, in ranges and as HEAD, on one kept-alive connection.
func TestWholeWriteHits(t *testing.T) {
	var wholes, moves atomic.Int64
	setHook(t, &testHookWholeStart, func() { wholes.Add(1) }) // before the client can have it all
	setHook(t, &testHookWholeProgress, func() { moves.Add(1) })
	s := wrappedSite(t, "")
	conn := slowClient(t, s)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	roundTrip := roundTripper(t, conn)
	for _, size := range []int{64 << 10, 64<<10 + 1, 1 << 20, 8 << 20} {
		path := "/" + strconv.Itoa(size)
		want := sizedBody(size)
		if r := s.get(t, s.url("PUBLIC", path)); r.cacheStatus() != "MISS" || len(r.Body) != size {
			t.Fatalf("priming %s: %s, %d bytes", path, r.cacheStatus(), len(r.Body))
		}
		// Stored, not still streaming from the fill (serveStream).
		zone := activeApp(t).Zone("default")
		testkit.Eventually(t, 5*time.Second, testkit.Holds(path+" stored in memory", func() bool {
			_, tier := zone.LookupTier(path, nil)
			return tier == cache.TierMemory
		}))
		wholesBefore, movesBefore := wholes.Load(), moves.Load()
		res, body := roundTrip("GET", path, "")
		if got := res.Header.Get("X-Cache-Status"); got != "HIT" || !bytes.Equal(body, want) {
			t.Fatalf("GET %s: %s, %d bytes, equal %v", path, got, len(body), bytes.Equal(body, want))
		}
		whole, moved := wholes.Load()-wholesBefore, moves.Load()-movesBefore
		switch {
		case size <= 64<<10 && whole != 0:
			t.Errorf("GET %s: written whole; want Caddy's write", path)
		case size > 64<<10 && whole == 0:
			t.Errorf("GET %s: not written whole", path)
		case moved > int64(size/(64<<10)):
			t.Errorf("GET %s: the deadline moved %d times, more than once per 64 KiB chunk", path, moved)
		case size > 4<<20 && moved == 0:
			// More than the largest send buffer Linux gives a socket:
			// more than one write, and the deadline moved in between.
			t.Errorf("GET %s: the deadline never moved", path)
		}
		res, body = roundTrip("GET", path, "Range: bytes=10-\r\n")
		if res.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[10:]) {
			t.Errorf("range of %s: %d, %d bytes", path, res.StatusCode, len(body))
		}
		res, body = roundTrip("HEAD", path, "")
		if res.Header.Get("Content-Length") != strconv.Itoa(size) || len(body) != 0 {
			t.Errorf("HEAD %s: Content-Length %q, %d body bytes", path, res.Header.Get("Content-Length"), len(body))
		}
	}
}

// A disk hit larger than Caddy's 64 KiB write chunk, once verified, goes
// out with one sendfile loop, not one per chunk, its deadline moving as
// the client takes it.
func TestWholeWriteDiskHits(t *testing.T) {
	const size = 8 << 20
	var moves atomic.Int64
	var mu sync.Mutex
	var sendfiles []int64 // of the last hit
	setHook(t, &testHookWholeProgress, func() { moves.Add(1) })
	setHook(t, &testHookSendfile, func(n int64) {
		mu.Lock()
		sendfiles = append(sendfiles, n)
		mu.Unlock()
	})
	s := wrappedSite(t, "", "zone default {\n\t\t\tmemory 64MiB\n\t\t\tmemory_entry_max 1B\n\t\t\tpath "+t.TempDir()+"\n\t\t}")
	u := s.url("PUBLIC", "/"+strconv.Itoa(size))
	want := sizedBody(size)
	for i, status := range []string{"MISS", "HIT", "HIT"} { // the first hit verifies the file
		if r := s.get(t, u); r.cacheStatus() != status || r.Body != string(want) {
			t.Fatalf("GET #%d: %s, %d bytes; want %s, the body", i, r.cacheStatus(), len(r.Body), status)
		}
	}
	// net/http sends the first 512 bytes (its sniffing length) with the
	// headers before it calls ReadFrom. The server may record the last
	// sendfile after the client has read all.
	var got []int64
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the hit's sendfile recorded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = slices.Clone(sendfiles)
		var sum int64
		for _, n := range got {
			sum += n
		}
		return sum >= size-512
	}))
	if len(got) != 1 || got[0] != size-512 {
		t.Errorf("sendfile loops of %v bytes, want one of %d", got, size-512)
	}
	if moves.Load() == 0 {
		t.Error("the deadline never moved")
	}
}

// A client that stops reading is cut off after write_idle, as with Caddy's
// own chunks: a whole write, or sendfile loop, moves its deadline only
// when the client has taken another chunk.
func TestWholeWriteStalledClient(t *testing.T) {
	const size = 8 << 20
	path := "/" + strconv.Itoa(size)
	for _, tc := range []struct {
		name, zone string
		tier       cache.Tier
	}{
		{"memory", "zone default {\n\t\t\tmemory 64MiB\n\t\t\tmemory_entry_max 16MiB\n\t\t}", cache.TierMemory},
		{"disk", "zone default {\n\t\t\tmemory 64MiB\n\t\t\tmemory_entry_max 1B\n\t\t\tpath " + t.TempDir() + "\n\t\t}", cache.TierDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only a write cut short counts: the hits before may end after
			// their client has read all.
			ended := make(chan error, 1)
			end := func(err error) {
				select {
				case ended <- err:
				default:
				}
			}
			setHook(t, &testHookWholeDone, func(err error) {
				if err != nil {
					end(err)
				}
			})
			setHook(t, &testHookSendfile, func(n int64) {
				if n < size-512 {
					end(fmt.Errorf("sendfile ended after %d bytes", n))
				}
			})
			s := wrappedSite(t, "timeouts {\n\t\t\twrite_idle 300ms\n\t\t}", tc.zone)
			if r := s.get(t, s.url("PUBLIC", path)); r.cacheStatus() != "MISS" || len(r.Body) != size {
				t.Fatalf("priming: %s, %d bytes", r.cacheStatus(), len(r.Body))
			}
			zone := activeApp(t).Zone("default")
			testkit.Eventually(t, 5*time.Second, testkit.Holds(path+" stored", func() bool {
				_, tier := zone.LookupTier(path, nil)
				return tier == tc.tier
			}))
			if r := s.get(t, s.url("PUBLIC", path)); r.cacheStatus() != "HIT" || len(r.Body) != size {
				t.Fatalf("first hit (which verifies a disk body): %s, %d bytes", r.cacheStatus(), len(r.Body))
			}
			conn := slowClient(t, s)
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n", path)
			select {
			case err := <-ended:
				if tc.tier == cache.TierMemory && !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("the write ended with %v, want its deadline exceeded", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the write to a client that reads nothing did not time out")
			}
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, _ := io.Copy(io.Discard, conn)
			if n >= size {
				t.Errorf("the stalled client got %d bytes, all of the body", n)
			}
		})
	}
}

func TestWholeWriteDeadline(t *testing.T) {
	now := time.Now()
	w := wholeWrite{idle: time.Minute}
	if got := w.deadline(now); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("no ceiling: %v, want now + idle", got.Sub(now))
	}
	w.ceiling = now.Add(time.Second)
	if got := w.deadline(now); !got.Equal(w.ceiling) {
		t.Errorf("ceiling: %v, want the ceiling", got.Sub(now))
	}
	c := &coalescingConn{whole: wholeWrite{idle: time.Minute, chunk: 64 << 10}}
	c.writeDeadline = now.Add(time.Minute - time.Millisecond) // write_idle's own, set a moment ago
	if got := c.wholeFor(now); !got.ceiling.IsZero() {
		t.Errorf("write_idle's deadline taken for a ceiling: %v", got.ceiling.Sub(now))
	}
	c.writeDeadline = now.Add(10 * time.Second) // a handler's, or the write timeout's
	if got := c.wholeFor(now); !got.ceiling.Equal(c.writeDeadline) {
		t.Errorf("ceiling %v, want the deadline set before the write", got.ceiling.Sub(now))
	}
	c.whole.ceiling = now.Add(time.Second) // the write timeout, earlier still
	if got := c.wholeFor(now); !got.ceiling.Equal(c.whole.ceiling) {
		t.Errorf("ceiling %v, want the write timeout", got.ceiling.Sub(now))
	}
}
