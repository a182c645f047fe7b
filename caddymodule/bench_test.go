package caddymodule

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/internal/testkit"
)

func BenchmarkHit10KiB(b *testing.B) { benchmarkHit(b, 10<<10, "zone default 256MiB") }
func BenchmarkHit1MiB(b *testing.B)  { benchmarkHit(b, 1<<20, "zone default 256MiB") }

// The same with the zone in a fleet (a shared block, a real Redis): a
// local hit never touches Redis, so these must not differ from the above.
func BenchmarkHit10KiBShared(b *testing.B) {
	benchmarkHit(b, 10<<10, sharedZone(b, "zone default 256MiB"))
}
func BenchmarkHit1MiBShared(b *testing.B) {
	benchmarkHit(b, 1<<20, sharedZone(b, "zone default 256MiB"))
}

func sharedZone(b *testing.B, zones string) string {
	r := testkit.StartRedis(b)
	return "shared {\n\t\t\tredis " + r.Addr + "\n\t\t}\n\t\t" + zones
}

// Hits from disk: the memory tier holds nothing over 1 byte, so every hit
// opens the entry file and verifies the blocks it sends.
func BenchmarkDiskHit10KiB(b *testing.B) { benchmarkHit(b, 10<<10, diskOnlyZone(b)) }
func BenchmarkDiskHit1MiB(b *testing.B)  { benchmarkHit(b, 1<<20, diskOnlyZone(b)) }

func diskOnlyZone(b *testing.B) string {
	return `zone default {
		memory 64MiB
		memory_entry_max 1B
		path ` + b.TempDir() + `
	}`
}

// benchmarkHit measures a cache hit through the full Caddy handler chain:
// over loopback with a pooled client, and by calling the server's handler
// directly with a writer that discards, which leaves out the network and
// net/http.
func benchmarkHit(b *testing.B, size int, zones string) {
	body := bytes.Repeat([]byte("x"), size)
	be := testkit.NewBackend(b, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	})
	cf := globalOptions(zones) + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		strip_query _
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(b, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/webgateway/render_image/1234/0/0/?c=1|0:255$FF0000&_=1712345678")
	if r := s.get(b, u); r.cacheStatus() != "MISS" || len(r.Body) != size {
		b.Fatalf("priming: %s %d bytes", r.cacheStatus(), len(r.Body))
	}
	if r := s.get(b, u); r.cacheStatus() != "HIT" {
		b.Fatalf("not a hit: %s", r.cacheStatus())
	}

	b.Run("loopback", func(b *testing.B) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			res, err := s.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if n != int64(size) {
				b.Fatalf("%d bytes", n)
			}
		}
	})

	// For reference: the same client fetching the backend itself, with no
	// Caddy in between.
	b.Run("backend-direct", func(b *testing.B) {
		req, _ := http.NewRequest(http.MethodGet, be.URL+"/direct", nil)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			res, err := s.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})

	// The request through a raw connection: a real net/http server, and a
	// client that allocates nothing, so that allocs/op are the server's
	// own per hit, net/http's included.
	b.Run("conn", func(b *testing.B) {
		benchmarkConn(b, s.url("PUBLIC", ""), u, size)
	})

	b.Run("handler", func(b *testing.B) {
		srv := activeServer(b)
		req := serverRequest(u)
		w := &countingWriter{}
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			w.header = make(http.Header) // as net/http makes one per response
			w.n = 0
			srv.ServeHTTP(w, req)
			if w.n != size || w.status != http.StatusOK {
				b.Fatalf("status %d, %d bytes", w.status, w.n)
			}
		}
		b.StopTimer()
		if got := w.header.Get("X-Cache-Status"); got != "HIT" {
			b.Fatalf("X-Cache-Status %q", got)
		}
	})

	cached := 0
	for _, req := range be.Seen() {
		if req.URI != "/direct" {
			cached++
		}
	}
	if cached != 1 {
		b.Errorf("%d backend requests for the cached URI, want 1", cached)
	}
}

// activeServer returns the running config's only HTTP server.
func activeServer(b testing.TB) *caddyhttp.Server {
	b.Helper()
	a, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	for _, srv := range a.(*caddyhttp.App).Servers {
		return srv
	}
	b.Fatal("no HTTP server")
	return nil
}

// serverRequest is a GET of u as net/http's server hands it to a handler:
// its RequestURI in origin form.
func serverRequest(u string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, u, nil)
	req.RequestURI = req.URL.RequestURI()
	return req
}

// countingWriter is a ResponseWriter that counts the body and discards it.
// It takes write deadlines, as net/http's does: Caddy's idle timeout
// writer sets one before each write.
type countingWriter struct {
	header http.Header
	status int
	n      int
}

func (w *countingWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *countingWriter) Header() http.Header  { return w.header }
func (w *countingWriter) WriteHeader(code int) { w.status = code }
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// BenchmarkHitEncoded10KiB is a 10 KiB JSON hit on a site with Caddy's
// encode before edge_cache (the way entries, held in the identity
// encoding, reach clients that accept gzip): "identity" is a client that
// asks for no encoding, "gzip" one that does and gets the entry compressed
// on the way out. docs/configuration.md ("Encodings") compares their
// allocs/op with the plain hit's.
func BenchmarkHitEncoded10KiB(b *testing.B) {
	body := bytes.Repeat([]byte(`{"id": 1234, "name": "an OMERO image"}, `), 10<<10/40)
	be := testkit.NewBackend(b, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	s := startCaddy(b, globalOptions("zone default 256MiB")+`
http://127.0.0.1:$PUBLIC {
	encode gzip
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
	u := s.url("PUBLIC", "/api/v0/m/images/1234/")
	s.get(b, u)
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			srv := activeServer(b)
			req := serverRequest(u)
			req.Header.Set("Accept-Encoding", enc)
			w := &countingWriter{}
			b.ReportAllocs()
			for b.Loop() {
				w.header = make(http.Header)
				w.n = 0
				srv.ServeHTTP(w, req)
			}
			b.StopTimer()
			if w.header.Get("X-Cache-Status") != "HIT" || (enc == "gzip") != (w.header.Get("Content-Encoding") == "gzip") {
				b.Fatalf("%s: %v", enc, w.header)
			}
		})
	}
}

// benchmarkConn requests u, a URL of the site at base, over one kept-alive
// connection, and reads each response without allocating: the status
// line, the header lines up to the blank one, then Content-Length bytes.
// Besides ns/op it reports the process's CPU time per request (server and
// client), which other processes on the machine disturb less.
func benchmarkConn(b *testing.B, base, u string, size int) {
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET " + strings.TrimPrefix(u, base) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	start, n := cpuTime(), 0
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		got, err := readResponse(br)
		if err != nil {
			b.Fatal(err)
		}
		if got != size {
			b.Fatalf("%d bytes", got)
		}
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// readResponse reads a 200 HIT with a Content-Length from br and returns
// its body's length.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return 0, fmt.Errorf("status line %q", line)
	}
	size, hit := -1, false
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(": "))
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			size = 0
			for _, c := range value {
				size = size*10 + int(c-'0')
			}
		case bytes.EqualFold(name, []byte("X-Cache-Status")):
			hit = string(value) == "HIT"
		}
	}
	if !hit || size < 0 {
		return 0, errors.New("not a HIT with a Content-Length")
	}
	n, err := br.Discard(size)
	return n, err
}
