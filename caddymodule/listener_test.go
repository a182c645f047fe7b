package caddymodule

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// accept dials a loopback listener and returns what the edge_cache
// wrapper around wrap(listener) accepts, and the client side.
func accept(t *testing.T, wrap func(net.Listener) net.Listener) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = (ListenerWrapper{}).WrapListener(wrap(ln)).Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// connPair returns a wrapped server side and the client side of a
// loopback TCP connection.
func connPair(t *testing.T) (*coalescingConn, net.Conn) {
	t.Helper()
	server, client := accept(t, func(ln net.Listener) net.Listener { return ln })
	c, ok := server.(*coalescingConn)
	if !ok {
		t.Fatalf("accepted %T, want *coalescingConn", server)
	}
	return c, client
}

// readFor reads what arrives at c within d.
func readFor(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var got []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got)
		}
	}
}

// readN reads n bytes from c, or what arrived before an error or a
// deadline that only a stuck connection reaches: a positive check waits
// for its bytes, however loaded the machine (readFor's window is for
// checking that nothing arrives).
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, n)
	m, _ := io.ReadFull(c, got)
	return string(got[:m])
}

func countCoalesced(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	testHookCoalesced = func() { n.Add(1) }
	t.Cleanup(func() { testHookCoalesced = nil })
	return &n
}

func countSendfile(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	setHook(t, &testHookSendfile, func(sent int64) { n.Add(sent) })
	return &n
}

func TestCoalescingConnHoldsOneWrite(t *testing.T) {
	coalesced := countCoalesced(t)
	server, client := connPair(t)
	full := strings.Repeat("h", heldWriteSize) // net/http's full buffer

	// Unmarked, writes go straight out.
	server.Write([]byte(full))
	if got := readN(t, client, len(full)); got != full {
		t.Fatalf("unmarked write: got %d bytes", len(got))
	}

	server.holdNextWrite(10 << 10)
	if n, err := server.Write([]byte(full)); n != len(full) || err != nil {
		t.Fatalf("held write returned %d, %v", n, err)
	}
	if got := readFor(t, client, 100*time.Millisecond); got != "" {
		t.Fatalf("held write was sent: %d bytes", len(got))
	}
	if n, err := server.Write([]byte("body-rest")); n != 9 || err != nil {
		t.Fatalf("second write returned %d, %v", n, err)
	}
	if got := readN(t, client, len(full)+9); got != full+"body-rest" {
		t.Fatalf("coalesced writes: got %d bytes", len(got))
	}
	if coalesced.Load() != 1 {
		t.Errorf("%d coalesced writes, want 1", coalesced.Load())
	}

	// Only the next write is held, only when it is a full buffer shorter
	// than the body.
	for _, tt := range []struct {
		name   string
		body   int
		writes []string
	}{
		{"write as long as the body", heldWriteSize, []string{full, "-next"}},
		{"not a full buffer", 10 << 10, []string{"short", full, "-next"}},
	} {
		server.holdNextWrite(tt.body)
		for _, w := range tt.writes {
			server.Write([]byte(w))
		}
		want := strings.Join(tt.writes, "")
		if got := readN(t, client, len(want)); got != want {
			t.Fatalf("%s: got %d bytes", tt.name, len(got))
		}
		if coalesced.Load() != 1 {
			t.Fatalf("%s: a write was held", tt.name)
		}
	}
}

// TestCoalescingConnSafetyNets: a held write is never stranded, whatever
// ends the response.
func TestCoalescingConnSafetyNets(t *testing.T) {
	full := strings.Repeat("h", heldWriteSize)
	for name, end := range map[string]func(c *coalescingConn) error{
		"read deadline": func(c *coalescingConn) error { return c.SetReadDeadline(time.Time{}) },
		"deadline":      func(c *coalescingConn) error { return c.SetDeadline(time.Time{}) },
		"close write":   func(c *coalescingConn) error { return c.CloseWrite() },
		"close":         func(c *coalescingConn) error { return c.Close() },
		"read from": func(c *coalescingConn) error {
			_, err := c.ReadFrom(strings.NewReader("+file"))
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			server, client := connPair(t)
			server.holdNextWrite(10 << 10)
			server.Write([]byte(full))
			if server.held == nil {
				t.Fatal("the write was not held")
			}
			if err := end(server); err != nil {
				t.Fatal(err)
			}
			want := full
			if name == "read from" {
				want += "+file"
			}
			if got := readN(t, client, len(want)); got != want {
				t.Errorf("got %d bytes, want %d", len(got), len(want))
			}
		})
	}
	server, _ := connPair(t)
	server.Close()
	if _, ok := pendingConns.Load(server.addr); ok {
		t.Error("closed connection still pending")
	}
}

// TestListenerWrapperLeavesTLS: net/http serves TLS only on a *tls.Conn.
func TestListenerWrapperLeavesTLS(t *testing.T) {
	conn, _ := accept(t, func(ln net.Listener) net.Listener { return tls.NewListener(ln, &tls.Config{}) })
	if _, ok := conn.(*tls.Conn); !ok {
		t.Errorf("a TLS connection was wrapped: %T", conn)
	}
}

// TestListenerWrapperHits serves hits of sizes around net/http's 4 KiB
// buffer through the wrapper, from memory and from disk, on one keep-alive
// connection, and checks every response byte and its framing. A disk
// hit's first read verifies the body as it sends it, the headers in the
// same write; the later ones go out with sendfile.
func TestListenerWrapperHits(t *testing.T) {
	coalesced := countCoalesced(t)
	sendfiles := countSendfile(t)
	s := wrappedSite(t, "", "zone default {\n\t\t\tmemory 64MiB\n\t\t\tmemory_entry_max 64KiB\n\t\t\tpath "+t.TempDir()+"\n\t\t}")

	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.ports["PUBLIC"]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	roundTrip := roundTripper(t, conn)

	sizes := []int{100, 3000, 3900, 4096, 4200, 8191, 10240, 100 << 10, 1 << 20}
	wantCoalesced, wantSendfile := int64(0), int64(0)
	for _, size := range sizes {
		path := "/" + strconv.Itoa(size)
		want := sizedBody(size)
		for i, status := range []string{"MISS", "HIT", "HIT"} {
			res, body := roundTrip("GET", path, "")
			if got := res.Header.Get("X-Cache-Status"); got != status || !bytes.Equal(body, want) {
				t.Fatalf("GET %s #%d: %s, %d bytes (want %s, %d bytes); equal: %v", path, i, got, len(body), status, size, bytes.Equal(body, want))
			}
		}
		if size > 4<<10 && size <= 64<<10 { // in memory
			wantCoalesced += 2
		}
		if size > 64<<10 { // on disk: verified by the first hit, sent by the second and the range
			// net/http copies the first 512 bytes (its sniffing length)
			// and sends them with the headers before it calls ReadFrom.
			wantCoalesced++
			wantSendfile += int64(size-512) + int64(size-10-512)
		}
		res, body := roundTrip("HEAD", path, "")
		if res.Header.Get("Content-Length") != strconv.Itoa(size) || len(body) != 0 {
			t.Errorf("HEAD %s: Content-Length %q, %d body bytes", path, res.Header.Get("Content-Length"), len(body))
		}
		res, body = roundTrip("GET", path, "Range: bytes=10-\r\n")
		if res.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[10:]) {
			t.Errorf("range of %s: %d, %d bytes", path, res.StatusCode, len(body))
		}
		if size-10 > 4<<10 && size <= 64<<10 { // a range from memory too
			wantCoalesced++
		}
	}
	// The last response, on a connection the server closes after it.
	res, body := roundTrip("GET", "/10240", "Connection: close\r\n")
	if !bytes.Equal(body, sizedBody(10240)) || !res.Close {
		t.Errorf("closing response: %d bytes, close %v", len(body), res.Close)
	}
	wantCoalesced++
	if got := coalesced.Load(); got != wantCoalesced {
		t.Errorf("%d hits sent in one write, want %d", got, wantCoalesced)
	}
	if got := sendfiles.Load(); got != wantSendfile {
		t.Errorf("%d bytes sent with sendfile, want %d", got, wantSendfile)
	}
}

// sizedBody is size bytes that differ from position to position.
func sizedBody(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte('a' + i*7%26)
	}
	return b
}

// TestDiskHitsOnceVerified serves disk hits (the memory tier keeps no
// body) of a small and a large body, whole, in ranges and as HEAD, with and
// without the listener wrapper and with verify always: the first hit of an
// entry verifies its blocks; the later ones are sent unread, the small in
// one write with the headers and the large with sendfile where the
// listener wrapper gives the connection.
func TestDiskHitsOnceVerified(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wrapper bool
		verify  string
	}{
		{"wrapper", true, ""},
		{"no wrapper", false, ""},
		{"verify always", true, "always"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sendfiles := countSendfile(t)
			be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				size, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.Write(sizedBody(size))
			})
			servers := ""
			if tc.wrapper {
				servers = "servers {\n\t\tlistener_wrappers {\n\t\t\tedge_cache\n\t\t}\n\t}"
			}
			verify := ""
			if tc.verify != "" {
				verify = "verify " + tc.verify
			}
			s := startCaddy(t, `{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	log {
		output discard
	}
	`+servers+`
	edge_cache {
		zone default {
			memory 64MiB
			memory_entry_max 1B
			path `+t.TempDir()+`
			`+verify+`
		}
	}
}
:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
			for _, size := range []int{10 << 10, 300 << 10} {
				u := s.url("PUBLIC", "/"+strconv.Itoa(size))
				want := string(sizedBody(size))
				for i, status := range []string{"MISS", "HIT", "HIT", "HIT"} {
					expect(t, fmt.Sprintf("GET %d #%d", size, i), s.get(t, u), 200, status, want)
				}
				r := s.get(t, u, "Range", "bytes=100-")
				if r.Status != http.StatusPartialContent || r.Body != want[100:] {
					t.Errorf("range of %d: %d, %d bytes", size, r.Status, len(r.Body))
				}
				r = s.get(t, u, "Range", "bytes=5-9")
				if r.Status != http.StatusPartialContent || r.Body != want[5:10] {
					t.Errorf("small range of %d: %d, %q", size, r.Status, r.Body)
				}
				r = s.do(t, http.MethodHead, u)
				if r.Header.Get("Content-Length") != strconv.Itoa(size) || r.Body != "" {
					t.Errorf("HEAD %d: Content-Length %q", size, r.Header.Get("Content-Length"))
				}
			}
			got := sendfiles.Load()
			if sent := tc.wrapper && tc.verify == ""; sent != (got > 0) {
				t.Errorf("%d bytes sent with sendfile", got)
			}
		})
	}
}

// setHook sets a test hook until the end of the test.
func setHook[F any](t *testing.T, hook *atomic.Pointer[F], f F) {
	hook.Store(&f)
	t.Cleanup(func() { hook.Store(nil) })
}

// roundTripper sends requests on conn, one at a time, and reads each
// answer whole.
func roundTripper(t *testing.T, conn net.Conn) func(method, path, extra string) (*http.Response, []byte) {
	br := bufio.NewReader(conn)
	return func(method, path, extra string) (*http.Response, []byte) {
		t.Helper()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: edge\r\n%s\r\n", method, path, extra)
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return res, body
	}
}

// wrappedSite is a site on $PUBLIC with the listener wrapper (and the
// servers' timeouts given) and a memory zone holding bodies up to 16 MiB
// (or the zone given), whose backend answers /<size> with size bytes.
func wrappedSite(t *testing.T, timeouts string, zone ...string) *site {
	z := "zone default {\n\t\t\tmemory 64MiB\n\t\t\tmemory_entry_max 16MiB\n\t\t}"
	if len(zone) > 0 {
		z = zone[0]
	}
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		size, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(sizedBody(size))
	})
	return startCaddy(t, `{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	log {
		output discard
	}
	servers {
		listener_wrappers {
			edge_cache
		}
		`+timeouts+`
	}
	edge_cache {
		`+z+`
	}
}
:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
}
