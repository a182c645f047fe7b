package caddymodule

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// versioned answers "<path> v<n>" for the n-th backend request.
func versioned(w http.ResponseWriter, r *http.Request, n int64) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
}

const statusSites = `
http://127.0.0.1:$PUBLIC {
	header {
		X-Test-Status {http.edge_cache.status}
		defer
	}
	log {
		output file $LOGFILE
		format json
	}
	log_append cache_status {http.edge_cache.status}
	handle /short/* {
		edge_cache {
			valid 200 1s
		}
		reverse_proxy $BACKEND
	}
	handle {
		edge_cache {
			valid 200 1h
			private_cookies logged_in
		}
		reverse_proxy $BACKEND
	}
}
http://127.0.0.1:$REFRESH {
	header {
		X-Test-Status {http.edge_cache.status}
		defer
	}
	edge_cache {
		refresh
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`

func TestCacheStatuses(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	logFile := filepath.Join(t.TempDir(), "access.log")
	cf := globalOptions("zone default 64MiB") + strings.ReplaceAll(statusSites, "$LOGFILE", logFile)
	s := startCaddy(t, cf, be, "PUBLIC", "REFRESH")

	var seen []string // the cache statuses, in order, as headers said
	check := func(what string, r response, cacheStatus, body string, backendHits int) {
		t.Helper()
		expect(t, what, r, 200, cacheStatus, body)
		if got := r.Header.Get("X-Test-Status"); got != cacheStatus {
			t.Errorf("%s: {http.edge_cache.status} in a header gave %q, want %q", what, got, cacheStatus)
		}
		if be.Requests() != backendHits {
			t.Errorf("%s: backend had %d requests, want %d", what, be.Requests(), backendHits)
		}
		seen = append(seen, cacheStatus)
	}
	pub := s.url("PUBLIC", "/a")
	check("first", s.get(t, pub), "MISS", "/a v1", 1)
	check("second", s.get(t, pub), "HIT", "/a v1", 1)
	check("refresh", s.get(t, s.url("REFRESH", "/a")), "BYPASS", "/a v2", 2)
	check("after refresh", s.get(t, pub), "HIT", "/a v2", 2)
	check("authorization", s.get(t, pub, "Authorization", "Basic dTpw"), "BYPASS", "/a v3", 3)
	check("private cookie", s.get(t, pub, "Cookie", "a=1; logged_in=yes"), "BYPASS", "/a v4", 4)
	check("after private", s.get(t, pub), "HIT", "/a v2", 4)

	short := s.url("PUBLIC", "/short/b")
	check("short first", s.get(t, short), "MISS", "/short/b v5", 5)
	check("short second", s.get(t, short), "HIT", "/short/b v5", 5)
	advance(t, 1100*time.Millisecond)
	check("short expired", s.get(t, short), "EXPIRED", "/short/b v6", 6)
	check("short refetched", s.get(t, short), "HIT", "/short/b v6", 6)

	// The access log carries the same statuses, through the placeholder.
	var logged []string
	testkit.Eventually(t, 5*time.Second, testkit.Holds("access log lines", func() bool {
		logged = logged[:0]
		f, err := os.Open(logFile)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line struct {
				CacheStatus string `json:"cache_status"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("log line %q: %v", sc.Text(), err)
			}
			logged = append(logged, line.CacheStatus)
		}
		return len(logged) >= 9 // the public site's requests
	}))
	var wantLogged []string
	for i, st := range seen {
		if i != 2 { // the refresh site has no access log
			wantLogged = append(wantLogged, st)
		}
	}
	if strings.Join(logged, " ") != strings.Join(wantLogged, " ") {
		t.Errorf("access log statuses %q, want %q", logged, wantLogged)
	}
}

func TestSetCookie(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Add("Set-Cookie", fmt.Sprintf("sessionid=s%d; Path=/", n))
		w.Header().Add("Set-Cookie", "csrftoken=x")
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	handle /ignored/* {
		edge_cache {
			valid 200 1h
			ignore_headers Set-Cookie
			private_cookies logged_in
		}
		reverse_proxy $BACKEND
	}
	handle {
		edge_cache {
			valid 200 1h
			private_cookies logged_in
		}
		reverse_proxy $BACKEND
	}
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	noCookie := func(what string, r response) {
		t.Helper()
		if c := r.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("%s: Set-Cookie %q reached the client", what, c)
		}
	}

	// Set-Cookie ignored for caching: stored, but never sent, on the miss either.
	ign := s.url("PUBLIC", "/ignored/x")
	r := s.get(t, ign)
	expect(t, "ignored miss", r, 200, "MISS", "/ignored/x v1")
	noCookie("ignored miss", r)
	r = s.get(t, ign)
	expect(t, "ignored hit", r, 200, "HIT", "/ignored/x v1")
	noCookie("ignored hit", r)

	// Set-Cookie honoured: not stored, so the answer is this visitor's own
	// and keeps its cookie (hide_headers removes it everywhere).
	hon := s.url("PUBLIC", "/honoured")
	r = s.get(t, hon)
	expect(t, "honoured 1", r, 200, "MISS", "/honoured v2")
	if c := r.Header.Values("Set-Cookie"); len(c) != 2 || c[0] != "sessionid=s2; Path=/" {
		t.Errorf("honoured 1: a response not stored lost its Set-Cookie: %q", c)
	}
	r = s.get(t, hon)
	expect(t, "honoured 2", r, 200, "MISS", "/honoured v3")
	if c := r.Header.Values("Set-Cookie"); len(c) != 2 || c[0] != "sessionid=s3; Path=/" {
		t.Errorf("honoured 2: a response not stored lost its Set-Cookie: %q", c)
	}

	// A private request passes through untouched, Set-Cookie included, and
	// stores nothing.
	priv := s.url("PUBLIC", "/ignored/private")
	r = s.get(t, priv, "Cookie", "logged_in=1")
	expect(t, "private", r, 200, "BYPASS", "/ignored/private v4")
	if c := r.Header.Values("Set-Cookie"); len(c) != 2 || c[0] != "sessionid=s4; Path=/" {
		t.Errorf("private request lost its Set-Cookie: %q", c)
	}
	r = s.get(t, priv, "Authorization", "Bearer x")
	expect(t, "authorization", r, 200, "BYPASS", "/ignored/private v5")
	if len(r.Header.Values("Set-Cookie")) != 2 {
		t.Errorf("authorized request lost its Set-Cookie")
	}
	r = s.get(t, priv)
	expect(t, "public after private", r, 200, "MISS", "/ignored/private v6")
	noCookie("public after private", r)

	// An anonymous session cookie, not configured as private, is cached.
	anon := s.url("PUBLIC", "/ignored/anon")
	r = s.get(t, anon, "Cookie", "sessionid=anonymous1")
	expect(t, "anonymous 1", r, 200, "MISS", "/ignored/anon v7")
	noCookie("anonymous 1", r)
	r = s.get(t, anon, "Cookie", "sessionid=anonymous2")
	expect(t, "anonymous 2", r, 200, "HIT", "/ignored/anon v7")
	noCookie("anonymous 2", r)
	// A cookie whose value merely mentions the private name is not private.
	r = s.get(t, anon, "Cookie", "x=logged_in")
	expect(t, "cookie value", r, 200, "HIT", "/ignored/anon v7")
}

func TestHeadSharesGetEntry(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/head")
	r := s.do(t, http.MethodHead, u)
	expect(t, "HEAD miss", r, 200, "MISS", "")
	if r.Header.Get("Content-Length") != "8" {
		t.Errorf("HEAD miss: Content-Length %q, want 8", r.Header.Get("Content-Length"))
	}
	if reqs := be.Seen(); len(reqs) != 1 || reqs[0].Method != http.MethodGet {
		t.Fatalf("backend saw %+v, want one GET", reqs)
	}
	expect(t, "GET after HEAD", s.get(t, u), 200, "HIT", "/head v1")
	r = s.do(t, http.MethodHead, u)
	expect(t, "HEAD hit", r, 200, "HIT", "")
	if r.Header.Get("Content-Length") != "8" {
		t.Errorf("HEAD hit: Content-Length %q, want 8", r.Header.Get("Content-Length"))
	}
	if be.Requests() != 1 {
		t.Errorf("backend had %d requests", be.Requests())
	}
}

func TestConditionalRequests(t *testing.T) {
	lastModified := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", lastModified.Format(http.TimeFormat))
		// Answer conditionals as a real backend would: if the cache passed
		// them on, the filling request would store a 304.
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 304 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")

	u := s.url("PUBLIC", "/cond")
	expect(t, "fill", s.get(t, u), 200, "MISS", "/cond v1")
	r := s.get(t, u, "If-None-Match", `"v1"`)
	expect(t, "If-None-Match", r, 304, "HIT", "")
	r = s.get(t, u, "If-None-Match", `"other"`)
	expect(t, "If-None-Match other", r, 200, "HIT", "/cond v1")
	r = s.get(t, u, "If-Modified-Since", lastModified.Format(http.TimeFormat))
	expect(t, "If-Modified-Since", r, 304, "HIT", "")
	r = s.get(t, u, "If-Modified-Since", lastModified.Add(-time.Hour).Format(http.TimeFormat))
	expect(t, "If-Modified-Since earlier", r, 200, "HIT", "/cond v1")
	expect(t, "plain", s.get(t, u), 200, "HIT", "/cond v1")

	// A conditional request fills the entry: the backend must get an
	// unconditional request, and a later plain client the full 200.
	u2 := s.url("PUBLIC", "/cond2")
	r = s.get(t, u2, "If-None-Match", `"v1"`)
	if r.Status != 200 && r.Status != 304 {
		t.Errorf("conditional miss: status %d", r.Status)
	}
	for _, req := range be.Seen() {
		for _, h := range []string{"If-None-Match", "If-Modified-Since"} {
			if req.Header.Get(h) != "" {
				t.Errorf("backend got %s on %s", h, req.URI)
			}
		}
	}
	for i := range 3 {
		expect(t, fmt.Sprintf("plain after conditional fill %d", i), s.get(t, u2), 200, "HIT", "/cond2 v2")
	}
}

func TestRange(t *testing.T) {
	const body = "0123456789abcdefghijklmnopqrstuvwxyz"
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		fmt.Fprint(w, body)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")

	// A range on a miss: the whole object is fetched and stored.
	u := s.url("PUBLIC", "/range-miss")
	r := s.get(t, u, "Range", "bytes=10-19")
	switch r.Status {
	case 206:
		if r.Body != body[10:20] || r.Header.Get("Content-Range") != "bytes 10-19/36" {
			t.Errorf("ranged miss: 206 %q Content-Range %q", r.Body, r.Header.Get("Content-Range"))
		}
	case 200:
		if r.Body != body {
			t.Errorf("ranged miss: 200 %q", r.Body)
		}
	default:
		t.Errorf("ranged miss: status %d", r.Status)
	}
	if reqs := be.Seen(); len(reqs) != 1 || reqs[0].Header.Get("Range") != "" {
		t.Fatalf("backend saw %+v, want one request without Range", reqs)
	}
	expect(t, "full after ranged miss", s.get(t, u), 200, "HIT", body)

	// Ranges on a cached 200.
	for _, tc := range []struct {
		spec, contentRange, part string
	}{
		{"bytes=0-0", "bytes 0-0/36", "0"},
		{"bytes=10-19", "bytes 10-19/36", body[10:20]},
		{"bytes=30-", "bytes 30-35/36", body[30:]},
		{"bytes=-4", "bytes 32-35/36", body[32:]},
		{"bytes=20-1000", "bytes 20-35/36", body[20:]},
	} {
		r := s.get(t, u, "Range", tc.spec)
		expect(t, tc.spec, r, 206, "HIT", tc.part)
		if got := r.Header.Get("Content-Range"); got != tc.contentRange {
			t.Errorf("%s: Content-Range %q, want %q", tc.spec, got, tc.contentRange)
		}
	}
	r = s.get(t, u, "Range", "bytes=100-200")
	if r.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: status %d", r.Status)
	}
	if be.Requests() != 1 {
		t.Errorf("backend had %d requests", be.Requests())
	}
}

func TestUnmatchedRequestsPassThrough(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Set-Cookie", "sessionid=abc")
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache /cached/* {
		valid 200 1h
		ignore_headers Set-Cookie
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	for i := 1; i <= 2; i++ {
		r := s.get(t, s.url("PUBLIC", "/other"))
		expect(t, "unmatched", r, 200, "", fmt.Sprintf("/other v%d", i))
		if _, ok := r.Header["X-Cache-Status"]; ok {
			t.Error("unmatched request has a status header")
		}
		if r.Header.Get("Set-Cookie") != "sessionid=abc" {
			t.Error("unmatched request lost its Set-Cookie")
		}
	}
	// POST to a matched path is not cached either.
	r := s.do(t, http.MethodPost, s.url("PUBLIC", "/cached/p"))
	expect(t, "POST", r, 200, "", "/cached/p v3")
	if r.Header.Get("Set-Cookie") != "sessionid=abc" {
		t.Error("POST lost its Set-Cookie")
	}
	expect(t, "GET after POST", s.get(t, s.url("PUBLIC", "/cached/p")), 200, "MISS", "/cached/p v4")
	if n := activeApp(t).Zone("default").Len(); n != 1 {
		t.Errorf("zone holds %d keys, want 1", n)
	}
}

func TestStripQueryKey(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		fmt.Fprintf(w, "%s v%d", r.RequestURI, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		strip_query _
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	expect(t, "first", s.get(t, s.url("PUBLIC", "/api/?a=1&_=111&b=2")), 200, "MISS", "/api/?a=1&_=111&b=2 v1")
	expect(t, "other _", s.get(t, s.url("PUBLIC", "/api/?a=1&_=222&b=2")), 200, "HIT", "/api/?a=1&_=111&b=2 v1")
	expect(t, "no _", s.get(t, s.url("PUBLIC", "/api/?a=1&b=2")), 200, "HIT", "/api/?a=1&_=111&b=2 v1")
	expect(t, "other order", s.get(t, s.url("PUBLIC", "/api/?b=2&a=1")), 200, "MISS", "/api/?b=2&a=1 v2")
	keys, _, _ := activeApp(t).Zone("default").Keys("", "", 10)
	if strings.Join(keys, " ") != "/api/?a=1&b=2 /api/?b=2&a=1" {
		t.Errorf("keys %q", keys)
	}
}

func TestStatusCodesAndVary(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/code/"):
			code := 0
			fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/code/"), &code)
			if code == 301 {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(code)
			fmt.Fprintf(w, "%d v%d", code, n)
		default:
			w.Header().Set("Vary", "Accept-Language")
			fmt.Fprintf(w, "%s %s v%d", r.URL.Path, r.Header.Get("Accept-Language"), n)
		}
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	handle /novary/* {
		edge_cache {
			valid 200 1h
			ignore_headers Vary
		}
		reverse_proxy $BACKEND
	}
	handle {
		edge_cache {
			valid 200 1h
			valid 404 1m
		}
		reverse_proxy $BACKEND
	}
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	client := &http.Client{Transport: s.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s.client = client

	expect(t, "404", s.get(t, s.url("PUBLIC", "/code/404")), 404, "MISS", "404 v1")
	expect(t, "404 again", s.get(t, s.url("PUBLIC", "/code/404")), 404, "HIT", "404 v1")
	expect(t, "500", s.get(t, s.url("PUBLIC", "/code/500")), 500, "MISS", "500 v2")
	expect(t, "500 again", s.get(t, s.url("PUBLIC", "/code/500")), 500, "MISS", "500 v3")
	expect(t, "301 with no rule", s.get(t, s.url("PUBLIC", "/code/301")), 301, "MISS", "301 v4")
	r := s.get(t, s.url("PUBLIC", "/code/301"))
	expect(t, "301 with no rule again", r, 301, "MISS", "301 v5")
	if r.Header.Get("Location") != "/elsewhere" {
		t.Errorf("301 Location %q", r.Header.Get("Location"))
	}

	// Vary honoured: several variants per key (RFC 9111 §4.1); another
	// variant misses and is stored beside the first.
	u := s.url("PUBLIC", "/vary")
	expect(t, "en", s.get(t, u, "Accept-Language", "en"), 200, "MISS", "/vary en v6")
	expect(t, "en again", s.get(t, u, "Accept-Language", "en"), 200, "HIT", "/vary en v6")
	expect(t, "fr", s.get(t, u, "Accept-Language", "fr"), 200, "MISS", "/vary fr v7") // nginx: another variant is a MISS, not EXPIRED
	expect(t, "fr again", s.get(t, u, "Accept-Language", "fr"), 200, "HIT", "/vary fr v7")
	expect(t, "en after fr", s.get(t, u, "Accept-Language", "en"), 200, "HIT", "/vary en v6")
	// Vary ignored: one entry for all.
	n := s.url("PUBLIC", "/novary/x")
	expect(t, "novary en", s.get(t, n, "Accept-Language", "en"), 200, "MISS", "/novary/x en v8")
	expect(t, "novary fr", s.get(t, n, "Accept-Language", "fr"), 200, "HIT", "/novary/x en v8")
}

// TestHeaderReplaceDoesNotEditEntry: Caddy's header replace edits values in
// place; on a hit that must not reach the stored entry.
func TestHeaderReplaceDoesNotEditEntry(t *testing.T) {
	b := newFaultyBackend(t)
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Colour", "blue sky")
		io.WriteString(w, "body")
	})
	base := loadCaddyfile(t, `{
	admin off
	persist_config off
	edge_cache {
		zone default 16MiB
	}
}
http://127.0.0.1:{PORT} {
	header {
		X-Colour blue red
		defer
	}
	edge_cache {
		valid 200 1h
	}
	reverse_proxy {BACKEND}
}`, b.URL)
	for i := 0; i < 3; i++ {
		res, err := http.Get(base + "/k")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("X-Colour"); got != "red sky" {
			t.Fatalf("request %d: X-Colour %q, want %q", i, got, "red sky")
		}
	}
	// The fill commits once its readers have the body: on a loaded
	// machine all three requests may be answered before it does.
	testkit.Eventually(t, 5*time.Second, func() string {
		e, ok := activeApp(t).Zone("default").Get("/k")
		if !ok {
			return "the entry to be stored"
		}
		if got := e.Header.Get("X-Colour"); got != "blue sky" {
			t.Fatalf("stored entry's header edited: X-Colour %q, want %q", got, "blue sky")
		}
		return ""
	})
}

// TestEncodingsNeverCrossClients: with a backend that gzips only when
// asked, and Vary ignored as production configures it, no client gets an
// encoding it did not ask for. Fills ask for identity; Caddy's encode,
// before edge_cache, compresses per client. A backend that gzips anyway is
// not stored.
func TestEncodingsNeverCrossClients(t *testing.T) {
	// Over encode's minimum_length (512 bytes).
	text := strings.Repeat("OMERO metadata, which compresses well. ", 50)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") || r.URL.Path == "/always-gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			io.WriteString(gz, text)
			gz.Close()
			return
		}
		io.WriteString(w, text)
	})
	s := startCaddy(t, globalOptions("zone default 16MiB")+`
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		ignore_headers Vary
	}
	reverse_proxy $BACKEND
}
http://127.0.0.1:$ENCODED {
	encode gzip
	edge_cache {
		valid 200 1h
		ignore_headers Vary
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC", "ENCODED")
	// The client's transport must not ask for gzip on its own.
	s.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	check := func(what string, r response, status, wantEncoding string) {
		t.Helper()
		if r.cacheStatus() != status || r.Header.Get("Content-Encoding") != wantEncoding {
			t.Errorf("%s: %s, Content-Encoding %q; want %s, %q", what, r.cacheStatus(), r.Header.Get("Content-Encoding"), status, wantEncoding)
		}
		body := r.Body
		if wantEncoding == "gzip" {
			zr, err := gzip.NewReader(strings.NewReader(r.Body))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			b, _ := io.ReadAll(zr)
			body = string(b)
		}
		if body != text {
			t.Errorf("%s: body %q", what, abbreviate(body))
		}
	}
	u := s.url("PUBLIC", "/m")
	check("gzip client fills", s.get(t, u, "Accept-Encoding", "gzip, br"), "MISS", "")
	check("plain client", s.get(t, u), "HIT", "")
	check("gzip client", s.get(t, u, "Accept-Encoding", "gzip"), "HIT", "")
	for _, req := range be.Seen() {
		if got := req.Header.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("the fill asked for Accept-Encoding %q, want identity", got)
		}
	}
	// With encode before the cache, each client gets what it accepts.
	e := s.url("ENCODED", "/e")
	check("gzip client fills, encoded", s.get(t, e, "Accept-Encoding", "gzip"), "MISS", "gzip")
	check("plain client, encoded site", s.get(t, e), "HIT", "")
	check("gzip client, encoded site", s.get(t, e, "Accept-Encoding", "gzip"), "HIT", "gzip")
	// A backend that gzips though asked for identity: relayed, not stored.
	a := s.url("PUBLIC", "/always-gzip")
	for range 2 {
		check("backend ignoring identity", s.get(t, a, "Accept-Encoding", "gzip"), "MISS", "gzip")
	}
}
