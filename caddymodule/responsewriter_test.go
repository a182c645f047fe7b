package caddymodule

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestRangeWindow(t *testing.T) {
	const size = 36
	tests := []struct {
		spec, ifRange, encoding string
		length                  string // Content-Length; "" for unknown
		code                    int
		start, end              int64
		contentRange            string
	}{
		{spec: "", code: 200},
		{spec: "bytes=0-0", code: 206, start: 0, end: 1, contentRange: "bytes 0-0/36"},
		{spec: "bytes=10-19", code: 206, start: 10, end: 20, contentRange: "bytes 10-19/36"},
		{spec: "bytes= 10-19", code: 206, start: 10, end: 20, contentRange: "bytes 10-19/36"},
		{spec: "bytes=30-", code: 206, start: 30, end: 36, contentRange: "bytes 30-35/36"},
		{spec: "bytes=-4", code: 206, start: 32, end: 36, contentRange: "bytes 32-35/36"},
		{spec: "bytes=-100", code: 206, start: 0, end: 36, contentRange: "bytes 0-35/36"},
		{spec: "bytes=20-1000", code: 206, start: 20, end: 36, contentRange: "bytes 20-35/36"},
		{spec: "bytes=36-", code: 416, contentRange: "bytes */36"},
		{spec: "bytes=-0", code: 416, contentRange: "bytes */36"},
		{spec: "bytes=5-2", code: 200},
		{spec: "bytes=0-1,4-5", code: 200},
		{spec: "bytes=a-b", code: 200},
		{spec: "bytes=5", code: 200},
		{spec: "items=0-1", code: 200},
		{spec: "bytes=0-1", ifRange: `"v1"`, code: 200},
		// The range is of the encoded bytes, as stored (RFC 9110 §14.1).
		{spec: "bytes=0-1", encoding: "gzip", code: 206, start: 0, end: 2, contentRange: "bytes 0-1/36"},
		{spec: "bytes=0-1", length: "-", code: 200},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.spec), func(t *testing.T) {
			req := http.Header{}
			if tt.spec != "" {
				req.Set("Range", tt.spec)
			}
			if tt.ifRange != "" {
				req.Set("If-Range", tt.ifRange)
			}
			hdr := http.Header{}
			if tt.length != "-" {
				hdr.Set("Content-Length", fmt.Sprint(size))
			}
			if tt.encoding != "" {
				hdr.Set("Content-Encoding", tt.encoding)
			}
			w, code := rangeWindow(req, hdr)
			if code != tt.code {
				t.Fatalf("code %d, want %d", code, tt.code)
			}
			if code == 200 {
				if w != nil || hdr.Get("Content-Range") != "" {
					t.Errorf("a 200 with a window %v or Content-Range %q", w, hdr.Get("Content-Range"))
				}
				return
			}
			if got := hdr.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if w == nil || w.start != tt.start || w.end != tt.end {
				t.Errorf("window %+v, want [%d, %d)", w, tt.start, tt.end)
			}
			if code == 206 && hdr.Get("Content-Length") != fmt.Sprint(tt.end-tt.start) {
				t.Errorf("Content-Length %q", hdr.Get("Content-Length"))
			}
			// The window clips a body streamed in pieces to exactly the range.
			body := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
			var got []byte
			for pos := 0; pos < size; pos += 7 {
				got = append(got, w.clip(int64(pos), body[pos:min(pos+7, size)])...)
			}
			if string(got) != string(body[tt.start:tt.end]) {
				t.Errorf("clipped %q, want %q", got, body[tt.start:tt.end])
			}
		})
	}
}

// Headers that handlers before edge_cache set on every request are theirs,
// not the resource's: they are not stored and replayed on hits.
func TestHeadersSetBeforeAreNotStored(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("X-Backend", fmt.Sprint("b", n))
		w.Header().Set("Connection", "close")
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 16MiB") + `
http://127.0.0.1:$PUBLIC {
	header X-Request-Id {http.request.uuid}
	header Access-Control-Allow-Origin *
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/h")
	miss := s.get(t, u)
	hit := s.get(t, u)
	expect(t, "miss", miss, 200, "MISS", "/h v1")
	expect(t, "hit", hit, 200, "HIT", "/h v1")
	if a, b := miss.Header.Get("X-Request-Id"), hit.Header.Get("X-Request-Id"); a == "" || a == b {
		t.Errorf("X-Request-Id %q on the miss, %q on the hit: replayed from the cache", a, b)
	}
	if got := hit.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
		t.Errorf("hit: Access-Control-Allow-Origin %q", got)
	}
	if hit.Header.Get("X-Backend") != "b1" {
		t.Errorf("hit: the backend's header X-Backend %q, want b1", hit.Header.Get("X-Backend"))
	}
	e, ok := activeApp(t).Zone("default").Get("/h")
	if !ok {
		t.Fatal("not stored")
	}
	for _, name := range []string{"X-Request-Id", "Access-Control-Allow-Origin", "X-Cache-Status", "Connection", "Date", "Set-Cookie"} {
		if _, ok := e.Header[name]; ok {
			t.Errorf("stored header has %s", name)
		}
	}
}
