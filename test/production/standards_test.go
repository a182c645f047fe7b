package production_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

// standardsCaddyfile has a standards-mode site (the backend's headers
// decide: no valid rules, nothing ignored) under /std/ and an
// aggressive-mode one (headers ignored, valid rules: nginx parity) under
// /agg/, both in front of the same backend.
const standardsCaddyfile = `{
	admin {$EDGECACHE_ADMIN}
	persist_config off
	auto_https off
	grace_period 1s
	edge_cache {
		zone default 64MiB
	}
}
{$EDGECACHE_PUBLIC} {
	bind 127.0.0.1
	handle /std/* {
		edge_cache {
			cache_status_header on
		}
		reverse_proxy {$OMERO_READONLY}
	}
	handle /agg/* {
		edge_cache {
			valid any 1h
			ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires
		}
		reverse_proxy {$OMERO_READONLY}
	}
}
http://127.0.0.1:{$EDGECACHE_REFRESH_PORT} {
	bind 127.0.0.1
	respond 404
}
http://127.0.0.1:{$EDGECACHE_LONG_PORT} {
	bind 127.0.0.1
	respond 404
}
`

// headersFor is the backend of TestStandardsMode: each path names the
// response headers it sends (the path after /std/ or /agg/).
func headersFor(w http.ResponseWriter, r *http.Request, n int64) {
	now := time.Now().UTC()
	h := w.Header()
	status := http.StatusOK
	switch strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/std"), "/agg") {
	case "/age-within":
		h.Set("Cache-Control", "max-age=100")
		h.Set("Age", "50")
	case "/age-beyond":
		h.Set("Cache-Control", "max-age=100")
		h.Set("Age", "100")
	case "/expires-after-date":
		// Expires is an hour from now, but the backend's Date says it is
		// two hours from now: Expires − Date is negative.
		h.Set("Date", now.Add(2*time.Hour).Format(http.TimeFormat))
		h.Set("Expires", now.Add(time.Hour).Format(http.TimeFormat))
	case "/expires-sloppy":
		// A one-digit hour: Go's http.ParseTime takes it, HTTP-date does not.
		h.Set("Expires", now.Truncate(24*time.Hour).Add(27*time.Hour).Format("Mon, 02 Jan 2006 3:04:05 GMT"))
	case "/expires-zero":
		h.Set("Expires", "0")
	case "/heuristic":
		h.Set("Last-Modified", now.Add(-240*time.Hour).Format(http.TimeFormat))
	case "/heuristic-302":
		h.Set("Last-Modified", now.Add(-240*time.Hour).Format(http.TimeFormat))
		h.Set("Location", "/elsewhere")
		status = http.StatusFound
	case "/cdn":
		h.Set("CDN-Cache-Control", "max-age=600")
		h.Set("Cache-Control", "no-store")
	case "/cdn-invalid":
		h.Set("CDN-Cache-Control", "max-age=600, MaxAge=1")
		h.Set("Cache-Control", "no-store")
	case "/must-understand":
		h.Set("Cache-Control", "must-understand, no-store, max-age=600")
	case "/vary-star":
		h.Set("Cache-Control", "max-age=600")
		h.Set("Vary", "Accept-Encoding, *")
	case "/dated":
		h.Set("Cache-Control", "max-age=600")
		h.Set("Date", now.Add(-5*time.Second).Format(http.TimeFormat))
		h.Set("Age", "5")
	case "/no-cache":
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", `"same"`)
		if r.Header.Get("If-None-Match") == `"same"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	case "/post-target":
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Cache-Control", "max-age=600")
	case "/partial":
		h.Set("Cache-Control", "max-age=600")
		h.Set("Content-Range", "bytes 0-1/10")
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
}

// TestStandardsMode checks, through the real binary, that the backend's
// headers are read as RFC 9111 (and 9110, 9213) say where they are
// honoured, and that aggressive mode keeps nginx's absolute lifetimes.
func TestStandardsMode(t *testing.T) {
	e, be := newEdgeFor(t, standardsCaddyfile, headersFor)
	tests := []struct {
		rfc, path string
		stored    bool
	}{
		{"RFC 9111 §4.2.3 (age within max-age)", "/std/age-within", true},
		{"RFC 9111 §4.2.3 (Age uses up max-age)", "/std/age-beyond", false},
		{"RFC 9111 §4.2.1 (Expires − Date)", "/std/expires-after-date", false},
		{"RFC 9110 §5.6.7 (runs of spaces in Expires)", "/std/expires-sloppy", false},
		{"RFC 9111 §5.3 (Expires: 0)", "/std/expires-zero", false},
		{"RFC 9111 §4.2.2 (heuristic freshness)", "/std/heuristic", true},
		{"RFC 9110 §15.1 (302 is not heuristically cacheable)", "/std/heuristic-302", false},
		{"RFC 9213 §2.1 (CDN-Cache-Control wins)", "/std/cdn", true},
		{"RFC 9213 §2.1 (invalid CDN-Cache-Control falls back)", "/std/cdn-invalid", false},
		{"RFC 9111 §5.2.2.3 (must-understand)", "/std/must-understand", true},
		{"RFC 9111 §4.1 (Vary with * anywhere)", "/std/vary-star", false},
		{"RFC 9111 §3.3 (206 to a fill)", "/std/partial", false},
		// Aggressive mode: valid lifetimes are absolute, the headers ignored.
		{"RFC 9111 §4.2.3 (aggressive: Age does not count)", "/agg/age-beyond", true},
		{"RFC 9111 §5.3 (aggressive: Expires ignored)", "/agg/expires-zero", true},
		{"RFC 9111 §3.3 (aggressive: 206 still never stored)", "/agg/partial", false},
	}
	for _, tt := range tests {
		first := e.get(t, e.Public, tt.path)
		second := e.get(t, e.Public, tt.path)
		fetched := be.RequestsFor(tt.path)
		status := second.Header.Get("X-Cache-Status")
		if tt.stored {
			if fetched != 1 || status != "HIT" || second.Body != first.Body {
				t.Errorf("%s: %s: %d backend requests, second %q %q; want it stored and hit", tt.rfc, tt.path, fetched, status, second.Body)
			}
		} else if fetched != 2 || status == "HIT" {
			t.Errorf("%s: %s: %d backend requests, second %q; want nothing stored", tt.rfc, tt.path, fetched, status)
		}
	}
}

// TestStandardsFlow checks, through the real binary, what a standards-mode
// site does with stored responses: Age and the origin's Date on hits, a
// no-cache response revalidated on every use, invalidation by an unsafe
// method, and the Cache-Status header's syntax.
func TestStandardsFlow(t *testing.T) {
	e, be := newEdgeFor(t, standardsCaddyfile, headersFor)

	miss := e.get(t, e.Public, "/std/dated")
	hit := e.get(t, e.Public, "/std/dated")
	if hit.Header.Get("X-Cache-Status") != "HIT" || hit.Header.Get("Date") != miss.Header.Get("Date") {
		t.Errorf("RFC 9111 §4.2.3: hit %s with Date %q, want the origin's %q", hit.Header.Get("X-Cache-Status"), hit.Header.Get("Date"), miss.Header.Get("Date"))
	}
	if age, err := strconv.Atoi(hit.Header.Get("Age")); err != nil || age < 4 {
		t.Errorf("RFC 9111 §5.1: hit Age %q, want at least the backend's 5", hit.Header.Get("Age"))
	}
	list, err := httpsfv.UnmarshalList(hit.Header.Values("Cache-Status"))
	if err != nil || len(list) != 1 {
		t.Fatalf("RFC 9211 §2: Cache-Status %q: %v", hit.Header.Values("Cache-Status"), err)
	}
	if item := list[0].(httpsfv.Item); item.Value != httpsfv.Token("edgecache") {
		t.Errorf("RFC 9211 §2: member %v, want edgecache", item.Value)
	} else if v, _ := item.Params.Get("hit"); v != true {
		t.Errorf("RFC 9211 §2.1: hit parameter %v", v)
	}

	for i, want := range []string{"MISS", "HIT", "HIT"} {
		if r := e.get(t, e.Public, "/std/no-cache"); r.Header.Get("X-Cache-Status") != want {
			t.Errorf("RFC 9111 §5.2.2.4: no-cache use %d: %s, want %s", i+1, r.Header.Get("X-Cache-Status"), want)
		}
	}
	if n := be.RequestsFor("/std/no-cache"); n != 3 {
		t.Errorf("RFC 9111 §5.2.2.4: %d backend requests for 3 uses of a no-cache response, want 3", n)
	}

	e.get(t, e.Public, "/std/post-target")
	if r := e.get(t, e.Public, "/std/post-target"); r.Header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("not stored: %s", r.Header.Get("X-Cache-Status"))
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.Public+"/std/post-target", nil)
	res, err := e.client("").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if r := e.get(t, e.Public, "/std/post-target"); r.Header.Get("X-Cache-Status") != "MISS" {
		t.Errorf("RFC 9111 §4.4: after a POST, %s, want MISS", r.Header.Get("X-Cache-Status"))
	}
}
