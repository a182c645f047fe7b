package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

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

	b.Run("handler", func(b *testing.B) {
		srv := activeServer(b)
		req := httptest.NewRequest(http.MethodGet, u, nil)
		w := &countingWriter{header: make(http.Header)}
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			clear(w.header)
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

type countingWriter struct {
	header http.Header
	status int
	n      int
}

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
			req := httptest.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Accept-Encoding", enc)
			w := &countingWriter{header: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.header)
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
