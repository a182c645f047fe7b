package production_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
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
		edge_cache
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
