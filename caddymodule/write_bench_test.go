package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// BenchmarkHit1MiBWrite compares the ways a 1 MiB hit reaches a client
// through a real loopback connection (a client that reads and discards,
// allocating nothing): a plain net/http server writing the same slice, for
// reference; then edgecache from memory without and with its listener
// wrapper, and with Caddy's write idle timeout set otherwise (its chunks of
// 64 KiB, each a write with a deadline, made larger, or the timeout off);
// then from disk (a verified file: sendfile with the wrapper, a copy
// through a buffer without).
func BenchmarkHit1MiBWrite(b *testing.B) {
	const size = 1 << 20
	body := bytes.Repeat([]byte("x"), size)
	b.Run("net-http", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"application/octet-stream"}
			h["Content-Length"] = []string{strconv.Itoa(size)}
			h["X-Cache-Status"] = []string{"HIT"}
			w.Write(body)
		}))
		defer srv.Close()
		benchmarkConn(b, srv.URL, srv.URL+"/x", size)
	})
	be := testkit.NewBackend(b, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	})
	wrapper := "listener_wrappers {\n\t\t\tedge_cache\n\t\t}"
	for _, c := range []struct{ name, servers, zone string }{
		{"caddy", "", ""},
		{"wrapper", wrapper, ""},
		{"wrapper-chunk-256KiB", wrapper + "\n\t\ttimeouts {\n\t\t\twrite_max_chunk 256KiB\n\t\t}", ""},
		{"wrapper-chunk-1MiB", wrapper + "\n\t\ttimeouts {\n\t\t\twrite_max_chunk 1MiB\n\t\t}", ""},
		{"wrapper-no-write-idle", wrapper + "\n\t\ttimeouts {\n\t\t\twrite_idle -1s\n\t\t}", ""},
		{"disk", "", "disk"},
		{"disk-wrapper", wrapper, "disk"},
	} {
		b.Run(c.name, func(b *testing.B) {
			zone := "zone default 64MiB"
			if c.zone == "disk" {
				zone = diskOnlyZone(b)
			}
			global := globalOptions(zone)
			if c.servers != "" {
				global = strings.Replace(global, "\tedge_cache {", "\tservers {\n\t\t"+c.servers+"\n\t}\n\tedge_cache {", 1)
			}
			s := startCaddy(b, global+`
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
			u := s.url("PUBLIC", "/1m")
			s.get(b, u)
			s.get(b, u) // the first whole read of a disk body verifies it
			if r := s.get(b, u); r.cacheStatus() != "HIT" {
				b.Fatalf("not a hit: %s", r.cacheStatus())
			}
			benchmarkConn(b, s.url("PUBLIC", ""), u, size)
		})
	}
}
