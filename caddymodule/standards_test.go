package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/edgecache/edgecache/internal/testkit"
)

// standardsSite is a standards-mode site: the backend's headers decide.
const standardsSite = `
:$PUBLIC {
	edge_cache
	reverse_proxy $BACKEND
}
`

func startStandards(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64)) (*site, *testkit.Backend) {
	t.Helper()
	be := testkit.NewBackend(t, handle)
	s := startCaddy(t, globalOptions("zone default 16MiB")+standardsSite, be, "PUBLIC")
	return s, be
}

// RFC 9111 §5.1 and §4.2.3: a hit carries Age (the age on arrival plus the
// time in this cache) and the origin's Date, not a fresh one.
func TestHitAgeAndDate(t *testing.T) {
	originDate := time.Now().Add(-10 * time.Second).UTC().Format(http.TimeFormat)
	s, _ := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Age", "100")
		w.Header().Set("Date", originDate)
		fmt.Fprintf(w, "v%d", n)
	})
	u := s.url("PUBLIC", "/a")
	expect(t, "miss", s.get(t, u), 200, "MISS", "v1")
	hit := s.get(t, u)
	expect(t, "hit", hit, 200, "HIT", "v1")
	if got := hit.Header.Get("Date"); got != originDate {
		t.Errorf("RFC 9111 §4.2.3: hit Date %q, want the origin's %q", got, originDate)
	}
	// Age 100 upstream, plus the time here.
	age, err := strconv.Atoi(hit.Header.Get("Age"))
	if err != nil || age < 100 || age > 110 {
		t.Errorf("RFC 9111 §5.1: hit Age %q, want 100 and a little more", hit.Header.Get("Age"))
	}
	if vals := hit.Header.Values("Age"); len(vals) != 1 {
		t.Errorf("Age sent %d times", len(vals))
	}
}

// RFC 9111 §5.2.2.4: a no-cache response is stored and validated on every
// use; the backend's 304 makes it a hit, a 200 replaces it.
func TestNoCacheRevalidatesEveryUse(t *testing.T) {
	var mu sync.Mutex
	version := "1"
	s, be := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		mu.Lock()
		v := version
		mu.Unlock()
		etag := `"` + v + `"`
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "body %s", v)
	})
	u := s.url("PUBLIC", "/nc")
	expect(t, "first", s.get(t, u), 200, "MISS", "body 1")
	expect(t, "second (304)", s.get(t, u), 200, "HIT", "body 1")
	expect(t, "third (304)", s.get(t, u), 200, "HIT", "body 1")
	if got := be.Requests(); got != 3 {
		t.Errorf("RFC 9111 §5.2.2.4: %d backend requests, want one per use (3)", got)
	}
	seen := be.Seen()
	for _, r := range seen[1:] {
		if r.Header.Get("If-None-Match") != `"1"` {
			t.Errorf("revalidation without the stored ETag: %q", r.Header.Get("If-None-Match"))
		}
	}
	mu.Lock()
	version = "2"
	mu.Unlock()
	expect(t, "changed", s.get(t, u), 200, "EXPIRED", "body 2")
	expect(t, "then (304)", s.get(t, u), 200, "HIT", "body 2")
}

// RFC 5861 §3: the backend's stale-while-revalidate serves the stale
// response to a single request while a background request refreshes it,
// without background_update.
func TestBackendStaleWhileRevalidate(t *testing.T) {
	s, be := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=2, stale-while-revalidate=600")
		fmt.Fprintf(w, "v%d", n)
	})
	u := s.url("PUBLIC", "/swr")
	expect(t, "miss", s.get(t, u), 200, "MISS", "v1")
	testkit.Eventually(t, 10*time.Second, func() string {
		if r := s.get(t, u); r.cacheStatus() != "STALE" {
			return "not stale yet: " + r.cacheStatus()
		}
		return ""
	})
	testkit.Eventually(t, 10*time.Second, func() string {
		if r := s.get(t, u); r.Body == "v1" || be.Requests() < 2 {
			return fmt.Sprintf("not refreshed in the background: %q after %d backend requests", r.Body, be.Requests())
		}
		return ""
	})
}

// RFC 9111 §4.1: two variants of one URL are kept side by side; request
// header values are normalised before comparing.
func TestVariantsSideBySide(t *testing.T) {
	s, be := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "%s v%d", r.Header.Get("Accept-Language"), n)
	})
	u := s.url("PUBLIC", "/v")
	expect(t, "en miss", s.get(t, u, "Accept-Language", "en, fr;q=0.5"), 200, "MISS", "en, fr;q=0.5 v1")
	expect(t, "de miss", s.get(t, u, "Accept-Language", "de"), 200, "MISS", "de v2")
	expect(t, "en hit, other case and order", s.get(t, u, "Accept-Language", "FR; q=0.5,EN"), 200, "HIT", "en, fr;q=0.5 v1")
	expect(t, "de hit", s.get(t, u, "Accept-Language", "de"), 200, "HIT", "de v2")
	if be.Requests() != 2 {
		t.Errorf("%d backend requests, want 2", be.Requests())
	}
}

// RFC 9111 §4.4: a successful unsafe request invalidates its URL and the
// same-host Location; an error answer or another host's Location does not.
func TestUnsafeMethodInvalidates(t *testing.T) {
	s, _ := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/created?x=1")
			w.Header().Set("Content-Location", "http://elsewhere.example/other")
			w.WriteHeader(http.StatusCreated)
		default:
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
		}
	})
	for _, p := range []string{"/doc", "/created?x=1", "/other", "/fail"} {
		s.get(t, s.url("PUBLIC", p))
		if r := s.get(t, s.url("PUBLIC", p)); r.cacheStatus() != "HIT" {
			t.Fatalf("%s not stored: %s", p, r.cacheStatus())
		}
	}
	if r := s.do(t, http.MethodPost, s.url("PUBLIC", "/doc")); r.Status != http.StatusCreated {
		t.Fatalf("POST: %d", r.Status)
	}
	s.do(t, http.MethodPost, s.url("PUBLIC", "/fail"))
	for p, want := range map[string]string{"/doc": "MISS", "/created?x=1": "MISS", "/other": "HIT", "/fail": "HIT"} {
		if r := s.get(t, s.url("PUBLIC", p)); r.cacheStatus() != want {
			t.Errorf("RFC 9111 §4.4: after the POSTs, %s is %s, want %s", p, r.cacheStatus(), want)
		}
	}
}

// RFC 9110 §13.1.2 and RFC 9111 §4.3.2: conditional requests on a hit are
// evaluated by the cache: an unquoted ETag matches when echoed, and
// If-Modified-Since compares with the stored Date when there is no
// Last-Modified.
func TestConditionalHits(t *testing.T) {
	originDate := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	s, _ := startStandards(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		// A day's lifetime: the Date an hour ago is the response's age.
		w.Header().Set("Cache-Control", "max-age=86400")
		w.Header().Set("Date", originDate)
		if r.URL.Path == "/etag" {
			w.Header()["ETag"] = []string{"abc"} // unquoted, as some backends send
		}
		fmt.Fprintf(w, "v%d", n)
	})
	etag, dated := s.url("PUBLIC", "/etag"), s.url("PUBLIC", "/dated")
	s.get(t, etag)
	s.get(t, dated)
	if r := s.get(t, etag, "If-None-Match", "abc"); r.Status != http.StatusNotModified || r.cacheStatus() != "HIT" {
		t.Errorf("RFC 9110 §13.1.2: unquoted ETag echoed: %d %s, want 304 HIT", r.Status, r.cacheStatus())
	}
	if r := s.get(t, etag, "If-None-Match", `W/"abc"`); r.Status != http.StatusNotModified {
		t.Errorf("RFC 9110 §13.1.2: weak comparison: %d, want 304", r.Status)
	}
	if r := s.get(t, etag, "If-Match", `"zzz"`); r.Status != http.StatusPreconditionFailed {
		t.Errorf("RFC 9110 §13.1.1: If-Match other: %d, want 412", r.Status)
	}
	if r := s.get(t, dated, "If-Modified-Since", originDate); r.Status != http.StatusNotModified {
		t.Errorf("RFC 9111 §4.3.2: If-Modified-Since the stored Date: %d, want 304", r.Status)
	}
	if r := s.get(t, dated, "If-Modified-Since", time.Now().Add(-2*time.Hour).UTC().Format(http.TimeFormat)); r.Status != 200 || r.Body != "v2" {
		t.Errorf("RFC 9111 §4.3.2: If-Modified-Since before the stored Date: %d %q, want 200", r.Status, r.Body)
	}
	if r := s.get(t, etag, "Range", "bytes=0-0", "If-Range", "abc"); r.Status != http.StatusPartialContent || r.Body != "v" {
		t.Errorf("RFC 9110 §13.1.5: Range with a matching If-Range: %d %q, want 206 \"v\"", r.Status, r.Body)
	}
	if r := s.get(t, etag, "Range", "bytes=0-0", "If-Range", `"other"`); r.Status != 200 || r.Body != "v1" {
		t.Errorf("RFC 9110 §13.1.5: Range with another If-Range: %d %q, want the whole 200", r.Status, r.Body)
	}
}

// RFC 9211: with cache_status_header on, every answer carries this cache's
// Cache-Status member, after the backend's own, as a valid Structured
// Field List.
func TestCacheStatusHeader(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Cache-Status", "origin-cache; hit")
		fmt.Fprintf(w, "v%d", n)
	})
	s := startCaddy(t, globalOptions("zone default 16MiB")+`
:$PUBLIC {
	edge_cache {
		cache_status_header on
		private_cookies logged_in
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
	u := s.url("PUBLIC", "/cs")
	member := func(what string, r response) *httpsfv.Params {
		t.Helper()
		list, err := httpsfv.UnmarshalList(r.Header.Values("Cache-Status"))
		if err != nil {
			t.Fatalf("%s: Cache-Status %q is not a Structured Field List: %v", what, r.Header.Values("Cache-Status"), err)
		}
		last, ok := list[len(list)-1].(httpsfv.Item)
		if !ok || last.Value != httpsfv.Token("edgecache") {
			t.Fatalf("%s: last member %#v, want edgecache", what, list[len(list)-1])
		}
		if len(list) < 2 {
			t.Errorf("%s: the backend's member is gone: %q", what, r.Header.Values("Cache-Status"))
		}
		return last.Params
	}
	param := func(p *httpsfv.Params, name string) any { v, _ := p.Get(name); return v }

	miss := member("miss", s.get(t, u))
	if ttl, _ := param(miss, "ttl").(int64); param(miss, "fwd") != httpsfv.Token("uri-miss") || param(miss, "fwd-status") != int64(200) || param(miss, "stored") != true || ttl < 590 || ttl > 600 {
		t.Errorf("miss: fwd=%v fwd-status=%v stored=%v ttl=%v", param(miss, "fwd"), param(miss, "fwd-status"), param(miss, "stored"), param(miss, "ttl"))
	}
	hit := member("hit", s.get(t, u))
	if ttl, _ := param(hit, "ttl").(int64); param(hit, "hit") != true || ttl < 590 || ttl > 600 {
		t.Errorf("hit: hit=%v ttl=%v", param(hit, "hit"), param(hit, "ttl"))
	}
	bypass := member("private", s.get(t, u, "Cookie", "logged_in=1"))
	if param(bypass, "fwd") != httpsfv.Token("bypass") || param(bypass, "fwd-status") != int64(200) {
		t.Errorf("private: fwd=%v", param(bypass, "fwd"))
	}
	method := s.do(t, http.MethodPost, u)
	if p := member("POST", method); param(p, "fwd") != httpsfv.Token("method") {
		t.Errorf("POST: fwd=%v", param(p, "fwd"))
	}
}
