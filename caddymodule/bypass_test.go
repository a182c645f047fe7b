package caddymodule

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// TestRequestsNotStored: a GET with a body (announced length or chunked),
// or one asking to stand for another method, is passed to the backend
// uncached, marked BYPASS and counted by reason; its answer is neither
// served from nor stored in the cache.
func TestRequestsNotStored(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-Body", string(body))
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 16MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		status_header X-Cache-Status
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	zone := activeApp(t).Zone("default")
	u := s.url("PUBLIC", "/a")
	expect(t, "stored", s.get(t, u), 200, "MISS", "/a v1")

	send := func(what, url string, body io.Reader, length int64, header ...string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return response{Status: res.StatusCode, Header: res.Header, Body: string(b), Err: err}
	}
	n := int64(1)
	for _, c := range []struct {
		what   string
		body   io.Reader
		length int64
		header []string
		reason cache.BypassReason
	}{
		{"a body", strings.NewReader("q=1"), 3, nil, cache.BypassRequestBody},
		{"a chunked body", io.MultiReader(strings.NewReader("q=2")), -1, nil, cache.BypassRequestBody},
		{"X-HTTP-Method-Override", nil, 0, []string{"X-HTTP-Method-Override", "DELETE"}, cache.BypassMethodOverride},
		{"X-HTTP-Method", nil, 0, []string{"X-HTTP-Method", "PUT"}, cache.BypassMethodOverride},
		{"X-Method-Override", nil, 0, []string{"X-Method-Override", "PATCH"}, cache.BypassMethodOverride},
	} {
		before := zone.Stats.Bypassed[c.reason].Load()
		n++
		r := send(c.what, u, c.body, c.length, c.header...)
		expect(t, c.what, r, 200, "BYPASS", "/a v"+strconv.FormatInt(n, 10))
		if c.body != nil && r.Header.Get("X-Got-Body") == "" {
			t.Errorf("%s: the backend did not get the body", c.what)
		}
		if got := zone.Stats.Bypassed[c.reason].Load() - before; got != 1 {
			t.Errorf("%s: counted %d times as %s, want once", c.what, got, c.reason)
		}
		// Not stored over the entry: a plain GET still gets the first answer.
		expect(t, c.what+", then a plain GET", s.get(t, u), 200, "HIT", "/a v1")
	}
	if got := zone.Stats.Requests[cache.StatusBypass].Load(); got != 5 {
		t.Errorf("BYPASS requests %d, want 5", got)
	}

	// On a key not stored yet: nothing is stored for the plain GET after.
	fresh := s.url("PUBLIC", "/b")
	expect(t, "a body, on a new key", send("a body", fresh, strings.NewReader("q=1"), 3), 200, "BYPASS", "/b v7")
	expect(t, "an override, on a new key", send("override", fresh, nil, 0, "X-HTTP-Method-Override", "DELETE"), 200, "BYPASS", "/b v8")
	expect(t, "a plain GET after them", s.get(t, fresh), 200, "MISS", "/b v9")
}

// TestEarlyHintsLoseTheCookieOfAStoredFill: without hide_headers, the
// Set-Cookie of a 103 before a stored answer is removed as the stored
// answer's is (and as hide_headers removes it: TestHideHeaders).
func TestEarlyHintsLoseTheCookieOfAStoredFill(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.Header().Set("Set-Cookie", "early=1")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Set-Cookie", "sessionid=anonymous")
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 16MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		ignore_headers Set-Cookie
		status_header X-Cache-Status
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	final, early := getWithEarlyHints(t, s, s.url("PUBLIC", "/a"))
	if final.Get("X-Cache-Status") != "MISS" || final.Get("Set-Cookie") != "" {
		t.Errorf("the stored fill: %s, Set-Cookie %q", final.Get("X-Cache-Status"), final.Get("Set-Cookie"))
	}
	if len(early) != 1 || early[0].Get("Link") == "" || early[0].Get("Set-Cookie") != "" {
		t.Errorf("103 Early Hints: %v, want the link without the cookie", early)
	}
}
