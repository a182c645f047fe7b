package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/edgecache/edgecache/internal/testkit"
)

// hide_headers removes the named headers from every response through the
// handler, as nginx's proxy_hide_header: a MISS that is stored, a HIT, an
// answer not stored, a POST, a private request's BYPASS, the refresh port,
// and a 1xx informational response before the final one.
func TestHideHeaders(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.URL.Path == "/early" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.Header().Set("Set-Cookie", "early=1")
			w.Header().Set("X-Powered-By", "Django")
			w.WriteHeader(http.StatusEarlyHints)
		}
		w.Header().Set("Set-Cookie", fmt.Sprintf("sessionid=s%d; Path=/", n))
		w.Header().Set("X-Powered-By", "Django")
		if r.URL.Path == "/error" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		ignore_headers Set-Cookie
		private_cookies logged_in
		hide_headers set-cookie X-Powered-By
	}
	reverse_proxy $BACKEND
}
http://127.0.0.1:$REFRESH {
	edge_cache {
		valid 200 1h
		ignore_headers Set-Cookie
		refresh
		hide_headers Set-Cookie X-Powered-By
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC", "REFRESH")
	hidden := func(what string, r response) {
		t.Helper()
		for _, name := range []string{"Set-Cookie", "X-Powered-By"} {
			if v := r.Header.Values(name); len(v) > 0 {
				t.Errorf("%s: %s %q reached the client", what, name, v)
			}
		}
	}
	u := s.url("PUBLIC", "/a")
	r := s.get(t, u)
	expect(t, "miss", r, 200, "MISS", "/a v1")
	hidden("miss", r)
	r = s.get(t, u)
	expect(t, "hit", r, 200, "HIT", "/a v1")
	hidden("hit", r)
	r = s.get(t, s.url("PUBLIC", "/error"))
	expect(t, "not stored", r, 503, "MISS", "/error v2")
	hidden("not stored", r)
	r = s.do(t, http.MethodPost, u)
	expect(t, "POST", r, 200, "", "/a v3")
	hidden("POST", r)
	r = s.do(t, http.MethodDelete, u)
	hidden("DELETE", r)
	r = s.do(t, http.MethodOptions, u)
	hidden("OPTIONS", r)
	r = s.get(t, u, "Cookie", "logged_in=1")
	expect(t, "private", r, 200, "BYPASS", "/a v6")
	hidden("private", r)
	r = s.get(t, s.url("REFRESH", "/a"))
	expect(t, "refresh", r, 200, "BYPASS", "/a v7")
	hidden("refresh", r)

	// The informational response loses them too; its other headers pass.
	// On a fill that may be stored the cookie goes anyway (as the stored
	// answer's); on a private request's, only hide_headers removes it.
	for _, c := range []struct {
		what   string
		header []string
	}{{"fill", nil}, {"private", []string{"Cookie", "logged_in=1"}}} {
		final, early := getWithEarlyHints(t, s, s.url("PUBLIC", "/early"), c.header...)
		hidden(c.what+": final after 103", response{Header: final})
		if len(early) != 1 {
			t.Fatalf("%s: got %d informational responses, want 1", c.what, len(early))
		}
		if early[0].Get("Link") == "" || early[0].Get("Set-Cookie") != "" || early[0].Get("X-Powered-By") != "" {
			t.Errorf("%s: 103 Early Hints: %v; want the link without the cookie nor X-Powered-By", c.what, early[0])
		}
	}
}

// getWithEarlyHints sends a GET (with header: names and values) and returns
// the final response's header and those of the informational (1xx)
// responses before it.
func getWithEarlyHints(t *testing.T, s *site, url string, header ...string) (http.Header, []textproto.MIMEHeader) {
	t.Helper()
	var mu sync.Mutex
	var early []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		early = append(early, h)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	return res.Header, early
}

// hide_headers is read from the Caddyfile and checked.
func TestHideHeadersCaddyfile(t *testing.T) {
	h := handlerJSON(t, adapt(t, globalOptions("zone default 64MiB")+`
http://127.0.0.1:8080 {
	edge_cache {
		hide_headers Set-Cookie X-Powered-By
	}
}
`))
	if got := fmt.Sprint(h["hide_headers"]); got != "[Set-Cookie X-Powered-By]" {
		t.Errorf("hide_headers %s", got)
	}
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(globalOptions("zone default 64MiB")+`
http://127.0.0.1:8080 {
	edge_cache {
		hide_headers
	}
}
`), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
		t.Errorf("hide_headers without a name: %v, want an error with its line", err)
	}
}

// With the backend unreachable, the error answer still carries the cache
// status, in the header and in the placeholder: MISS on a normal site,
// BYPASS on a refresh site, as nginx reports with its 502.
func TestStatusOnFailedFetch(t *testing.T) {
	dead := testkit.NewBackend(t, versioned)
	addr := dead.Addr()
	dead.Close()
	cf := globalOptions("zone default 64MiB") + strings.ReplaceAll(`
http://127.0.0.1:$PUBLIC {
	header X-Test-Status {http.edge_cache.status} {
		defer
	}
	edge_cache {
		valid 200 1h
	}
	reverse_proxy DEAD
}
http://127.0.0.1:$REFRESH {
	edge_cache {
		valid 200 1h
		refresh
	}
	reverse_proxy DEAD
	handle_errors {
		respond "{http.edge_cache.status} {err.status_code}"
	}
}
`, "DEAD", addr)
	s := startCaddy(t, cf, nil, "PUBLIC", "REFRESH")
	r := s.get(t, s.url("PUBLIC", "/x"))
	if r.Status != http.StatusBadGateway || r.cacheStatus() != "MISS" {
		t.Errorf("public: status %d, X-Cache-Status %q; want 502 MISS", r.Status, r.cacheStatus())
	}
	r = s.get(t, s.url("REFRESH", "/x"))
	if r.Status != http.StatusBadGateway || r.cacheStatus() != "BYPASS" || r.Body != "BYPASS 502" {
		t.Errorf("refresh: status %d, X-Cache-Status %q, body %q; want 502 BYPASS, \"BYPASS 502\"", r.Status, r.cacheStatus(), r.Body)
	}
}

// hide_headers costs a hit no allocation: the wrapper is pooled.
func TestHideHeadersHitAllocations(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	allocs := func(hide string) float64 {
		cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		` + hide + `
	}
	reverse_proxy $BACKEND
}
`
		return hitAllocations(t, cf, be, "/alloc")
	}
	without, with := allocs(""), allocs("hide_headers Set-Cookie X-Powered-By")
	t.Logf("allocations per hit: %.1f without hide_headers, %.1f with", without, with)
	// Under the race detector sync.Pool drops pooled wrappers at random,
	// which shows as up to a few allocations either way.
	limit := 0.5
	if raceEnabled {
		limit = 2.5
	}
	if with-without >= limit {
		t.Errorf("hide_headers adds %.1f allocations per hit", with-without)
	}
}
