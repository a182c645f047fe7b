package caddymodule

import (
	"fmt"
	"github.com/edgecache/edgecache/cache"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/edgecache/edgecache/internal/testkit"
)

// faultyBackend is a backend whose behaviour a test switches at will.
type faultyBackend struct {
	*testkit.Backend
	mode    atomic.Value // string: ok, 503, hang, reset, midbody
	version atomic.Int64
	lastINM atomic.Value // If-None-Match of the last request
}

func newFaultyBackend(t *testing.T) *faultyBackend {
	b := &faultyBackend{}
	b.mode.Store("ok")
	b.lastINM.Store("")
	b.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		b.lastINM.Store(r.Header.Get("If-None-Match"))
		body := fmt.Sprintf("version %d of %s", b.version.Load(), r.URL.Path)
		etag := fmt.Sprintf(`"v%d"`, b.version.Load())
		switch b.mode.Load().(string) {
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "backend unavailable")
			return
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		case "reset":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		case "midbody":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, strings.Repeat("x", 300))
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Set-Cookie", "sessionid=anonymous")
		w.Header().Set("Cache-Control", "no-cache")
		io.WriteString(w, body)
	})
	return b
}

// adaptCaddyfile adapts a Caddyfile in which {PORT} and {BACKEND} are
// replaced, and returns its JSON and the site's base URL.
func adaptCaddyfile(t *testing.T, caddyfile, backend string) ([]byte, string) {
	t.Helper()
	port := strconv.Itoa(testkit.FreePort(t))
	caddyfile = strings.ReplaceAll(caddyfile, "{PORT}", port)
	caddyfile = strings.ReplaceAll(caddyfile, "{BACKEND}", backend)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapt: %v (%v)", err, warnings)
	}
	return cfg, "http://127.0.0.1:" + port
}

// loadCaddyfile runs Caddy with a Caddyfile (see adaptCaddyfile) and
// returns the site's base URL.
func loadCaddyfile(t *testing.T, caddyfile, backend string) string {
	t.Helper()
	cfg, base := adaptCaddyfile(t, caddyfile, backend)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return base
}

type answer struct {
	code   int
	status string
	body   string
	err    error
}

func get(url string, hdr ...string) answer {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return answer{code: res.StatusCode, status: res.Header.Get("X-Cache-Status"), body: string(body), err: err}
}

const staleSite = `{
	admin off
	persist_config off
	edge_cache {
		zone default 16MiB
	}
}
http://127.0.0.1:{PORT} {
	edge_cache {
		valid 200 300ms
		ignore_headers Cache-Control Set-Cookie
		%s
	}
	reverse_proxy {BACKEND} {
		transport http {
			response_header_timeout 2s
		}
	}
}`

func TestStaleServedWhileBackendsFail(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "use_stale error timeout http_500 http_502 http_503 http_504"), b.URL)
	keys := []string{"/a", "/b", "/c"}
	for _, k := range keys {
		if a := get(base + k); a.status != "MISS" || a.code != 200 {
			t.Fatalf("%s: first answer %+v", k, a)
		}
	}
	advance(t, 400*time.Millisecond)
	for _, mode := range []string{"reset", "503", "hang"} {
		b.mode.Store(mode)
		for _, k := range keys {
			a := get(base + k)
			if a.err != nil || a.code != 200 || a.status != "STALE" || a.body != "version 0 of "+k {
				t.Fatalf("backend %s, %s: got %+v, want the stale entry", mode, k, a)
			}
		}
	}
	b.Close() // all backends down: connection refused
	for _, k := range keys {
		if a := get(base + k); a.code != 200 || a.status != "STALE" {
			t.Fatalf("backend down, %s: got %+v", k, a)
		}
	}
}

func TestMidBodyResetKeepsOldEntry(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, ""), b.URL)
	if a := get(base + "/k"); a.status != "MISS" {
		t.Fatalf("first: %+v", a)
	}
	advance(t, 400*time.Millisecond)
	b.mode.Store("midbody")
	for i := 0; i < 100; i++ {
		a := get(base + "/k")
		if a.err == nil && a.code == 200 && len(a.body) == 1000 {
			t.Fatalf("broken backend answer %d arrived whole", i)
		}
	}
	b.mode.Store("ok")
	b.version.Add(1)
	a := get(base + "/k")
	if a.status != "EXPIRED" || a.body != "version 1 of /k" {
		t.Fatalf("after resets: %+v, want EXPIRED with the new body (no truncated entry stored)", a)
	}
	if a := get(base + "/k"); a.status != "HIT" || a.body != "version 1 of /k" {
		t.Fatalf("then: %+v", a)
	}
}

func TestStale503NotStored(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "use_stale http_503"), b.URL)
	get(base + "/k")
	advance(t, 400*time.Millisecond)
	b.mode.Store("503")
	if a := get(base + "/k"); a.status != "STALE" || a.body != "version 0 of /k" {
		t.Fatalf("503: %+v", a)
	}
	b.mode.Store("ok")
	b.version.Add(1)
	if a := get(base + "/k"); a.status != "EXPIRED" || a.body != "version 1 of /k" {
		t.Fatalf("recovered: %+v", a)
	}
}

func TestBackgroundUpdate(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "use_stale error updating\n\t\tbackground_update on"), b.URL)
	get(base + "/k")
	advance(t, 400*time.Millisecond)
	b.version.Add(1)
	a := get(base + "/k")
	if a.status != "STALE" || a.body != "version 0 of /k" {
		t.Fatalf("expired with background update: %+v, want the stale body at once", a)
	}
	staleAnswers := int64(1)
	testkit.Eventually(t, 2*time.Second, func() string {
		a = get(base + "/k")
		if a.status == "STALE" {
			staleAnswers++
		}
		if a.status == "HIT" && a.body == "version 1 of /k" {
			return ""
		}
		if a.status != "UPDATING" && a.status != "STALE" {
			t.Fatalf("during update: %+v", a)
		}
		return fmt.Sprintf("background update never landed: %+v", a)
	})
	// The background update answered no client: it counts as no request.
	if got := activeApp(t).Zone("default").Stats.Requests[cache.StatusStale].Load(); got != staleAnswers {
		t.Errorf("STALE requests counted %d, clients got %d", got, staleAnswers)
	}
}

func TestUpdatingServedWhileOneFetches(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "use_stale updating\n\t\tlock_timeout 5s"), b.URL)
	get(base + "/k")
	advance(t, 400*time.Millisecond)
	slow, arrived := make(chan struct{}), make(chan struct{}, 1)
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-slow
		io.WriteString(w, "new")
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); get(base + "/k") }() // the updater, held by the backend
	<-arrived
	if a := get(base + "/k"); a.status != "UPDATING" || a.body != "version 0 of /k" {
		t.Errorf("while another request updates: %+v", a)
	}
	close(slow)
	wg.Wait()
	if a := get(base + "/k"); a.status != "HIT" || a.body != "new" {
		t.Errorf("after the update: %+v", a)
	}
}

func TestRevalidate(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "revalidate on"), b.URL)
	get(base + "/k")
	advance(t, 400*time.Millisecond)
	a := get(base + "/k")
	if a.status != "REVALIDATED" || a.body != "version 0 of /k" || b.lastINM.Load() != `"v0"` {
		t.Fatalf("revalidation: %+v (backend saw If-None-Match %q)", a, b.lastINM.Load())
	}
	if a := get(base + "/k"); a.status != "HIT" {
		t.Fatalf("after revalidation: %+v", a)
	}
}

// TestBackendStaleDirectives: with Cache-Control honoured and no use_stale,
// the backend's stale-if-error and stale-while-revalidate windows decide.
func TestBackendStaleDirectives(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	var version atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case mode.Load() == "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/sie":
			w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
			fmt.Fprintf(w, "v%d", version.Load())
		case r.URL.Path == "/swr":
			w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
			fmt.Fprintf(w, "v%d", version.Load())
		case r.URL.Path == "/plain":
			w.Header().Set("Cache-Control", "max-age=1")
			fmt.Fprintf(w, "v%d", version.Load())
		}
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, `{
	admin off
	persist_config off
	edge_cache {
		zone default 16MiB
	}
}
http://127.0.0.1:{PORT} {
	edge_cache {
		background_update on
	}
	reverse_proxy {BACKEND}
}`, srv.URL)
	for _, p := range []string{"/sie", "/swr", "/plain"} {
		if a := get(base + p); a.status != "MISS" {
			t.Fatalf("%s: %+v", p, a)
		}
	}
	advance(t, 1100*time.Millisecond)
	mode.Store("503")
	if a := get(base + "/sie"); a.status != "STALE" || a.body != "v0" {
		t.Errorf("stale-if-error window, backend 503: %+v", a)
	}
	if a := get(base + "/plain"); a.code != 503 {
		t.Errorf("no stale window, backend 503: %+v, want the 503", a)
	}
	mode.Store("ok")
	version.Add(1)
	if a := get(base + "/swr"); a.status != "STALE" || a.body != "v0" {
		t.Errorf("stale-while-revalidate window with background_update: %+v", a)
	}
	testkit.Eventually(t, 2*time.Second, func() string {
		if a := get(base + "/swr"); a.body != "v1" {
			return fmt.Sprintf("background update never landed: %+v", a)
		}
		return ""
	})
}

// TestFailedFillWakesItsWaitersAtOnce: when the fill fails with a 5xx no
// client shaped, its waiters share that answer at once (hit-for-miss),
// rather than take the lock one at a time; the key then passes requests
// straight through, and an answer that is stored ends that.
func TestFailedFillWakesItsWaitersAtOnce(t *testing.T) {
	var requests, maxInFlight atomic.Int64
	srv := httptest.NewServer(countInFlight(&requests, &maxInFlight, func(w http.ResponseWriter, r *http.Request, n int64) {
		untilWaiting(9)
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, "fine")
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, fmt.Sprintf(lockSite, ""), srv.URL)
	answers := together(10, base+"/k")
	if n := requests.Load(); n != 1 {
		t.Errorf("backend requests %d, want 1 (the failed fill, its answer shared)", n)
	}
	for _, a := range answers {
		if a.code != http.StatusBadGateway || a.status != "MISS" {
			t.Errorf("%+v, want the fill's 502, MISS", a)
		}
	}
	if n := activeApp(t).Zone("default").Stats.CollapsedErrors.Load(); n != 9 {
		t.Errorf("collapsed errors %d, want 9", n)
	}
	// Uncacheable for now: no wait, and a stored answer ends it.
	if a := get(base + "/k"); a.status != "MISS" || a.body != "fine" {
		t.Errorf("after the failure: %+v, want MISS fine", a)
	}
	if a := get(base + "/k"); a.status != "HIT" || a.body != "fine" {
		t.Errorf("after the stored answer: %+v, want HIT fine", a)
	}
}

// TestUncacheableFillWakesItsWaitersTogether: the waiters of a fill whose
// answer is not stored (no-store), and not theirs to share, go to the
// backend together, at once; the next request goes straight through.
func TestUncacheableFillWakesItsWaitersTogether(t *testing.T) {
	var requests, maxInFlight atomic.Int64
	srv := httptest.NewServer(countInFlight(&requests, &maxInFlight, func(w http.ResponseWriter, r *http.Request, n int64) {
		heldTogether(n, &requests)
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "yours")
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, fmt.Sprintf(lockSite, "uncacheable_ttl 1h"), srv.URL)
	answers := together(10, base+"/k")
	for _, a := range answers {
		if a.code != http.StatusOK || a.body != "yours" || a.status != "MISS" {
			t.Errorf("%+v, want 200 yours, MISS", a)
		}
	}
	if n, m := requests.Load(), maxInFlight.Load(); n != 10 || m != 9 {
		t.Errorf("%d backend requests, %d at most at once; want 10, the 9 waiters together", n, m)
	}
	zone := activeApp(t).Zone("default")
	waits := zone.Stats.LockWaits.Load()
	maxInFlight.Store(0)
	together(10, base+"/k")
	if n := zone.Stats.LockWaits.Load(); n != waits {
		t.Errorf("%d requests waited for a fill of an uncacheable key, want none", n-waits)
	}
}

// TestLargeFailureIsNotShared: a 5xx page larger than the waiters may
// share (64 KiB), of unknown length: the waiters go to the backend
// together as soon as it outgrows it, each for its own whole answer.
func TestLargeFailureIsNotShared(t *testing.T) {
	page := strings.Repeat("e", 100<<10)
	var requests, maxInFlight atomic.Int64
	srv := httptest.NewServer(countInFlight(&requests, &maxInFlight, func(w http.ResponseWriter, r *http.Request, n int64) {
		heldTogether(n, &requests)
		w.WriteHeader(http.StatusInternalServerError)
		for i := 0; i < len(page); i += 4 << 10 {
			io.WriteString(w, page[i:i+4<<10])
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, fmt.Sprintf(lockSite, ""), srv.URL)
	for _, a := range together(10, base+"/k") {
		if a.err != nil || a.code != http.StatusInternalServerError || a.body != page {
			t.Errorf("%d, %d bytes, %v; want the whole 500", a.code, len(a.body), a.err)
		}
	}
	if n, m := requests.Load(), maxInFlight.Load(); n != 10 || m < 9 {
		t.Errorf("%d backend requests, %d at most at once; want 10, the 9 waiters together", n, m)
	}
	if n := activeApp(t).Zone("default").Stats.CollapsedErrors.Load(); n != 0 {
		t.Errorf("collapsed errors %d, want 0", n)
	}
}

// TestFailedBackgroundUpdateCountsNothing: a background update that meets a
// failing backend serves no one, so it adds no STALE request or bytes.
func TestFailedBackgroundUpdateCountsNothing(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "use_stale updating http_503\n\t\tbackground_update on"), b.URL)
	get(base + "/k")
	advance(t, 400*time.Millisecond)
	b.mode.Store("503")
	if a := get(base + "/k"); a.status != "STALE" {
		t.Fatalf("expired, backend 503: %+v", a)
	}
	zone := activeApp(t).Zone("default")
	// The background fetch has had the backend's answer once its latency
	// is observed (the first fetch is the other); after that it counts
	// nothing, whatever it does.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the background fetch to end", func() bool {
		_, fetches, _ := zone.Stats.FetchLatency.Snapshot()
		return fetches == 2
	}))
	if got := zone.Stats.Requests[cache.StatusStale].Load(); got != 1 {
		t.Errorf("STALE requests %d, want 1 (the client's)", got)
	}
	if got := zone.Stats.BytesServed.Load(); got != int64(len("version 0 of /k")) {
		t.Errorf("bytes served %d, want only the client's", got)
	}
}

// TestFailedRefillOfExpiredWakesItsWaiters: the same for an expired entry
// without use_stale: the failed refill's waiters share its 502.
func TestFailedRefillOfExpiredWakesItsWaiters(t *testing.T) {
	var requests, maxInFlight atomic.Int64
	srv := httptest.NewServer(countInFlight(&requests, &maxInFlight, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 2 {
			untilWaiting(9)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "lock_timeout 10s"), srv.URL)
	if a := get(base + "/k"); a.status != "MISS" {
		t.Fatalf("first: %+v", a)
	}
	advance(t, 400*time.Millisecond)
	maxInFlight.Store(0)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); get(base + "/k") }()
	}
	wg.Wait()
	if n := requests.Load(); n != 2 {
		t.Errorf("backend requests %d, want 2 (the first fill, the failed refill)", n)
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Errorf("%d backend requests at once, want 1", m)
	}
}

// TestFailedRefillServesItsWaitersStale: the waiters of a refill that
// failed and answered from the stale entry (use_stale, without updating)
// answer from it too, at once, without a backend request each.
func TestFailedRefillServesItsWaitersStale(t *testing.T) {
	var requests, maxInFlight atomic.Int64
	srv := httptest.NewServer(countInFlight(&requests, &maxInFlight, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			io.WriteString(w, "v1")
			return
		}
		untilWaiting(9) // the refill fails once its waiters wait
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	base := loadCaddyfile(t, fmt.Sprintf(staleSite, "lock_timeout 10s\n\t\tuse_stale http_502"), srv.URL)
	if a := get(base + "/k"); a.status != "MISS" {
		t.Fatalf("first: %+v", a)
	}
	advance(t, 400*time.Millisecond)
	for _, a := range together(10, base+"/k") {
		if a.code != http.StatusOK || a.status != "STALE" || a.body != "v1" {
			t.Errorf("%+v, want 200 STALE v1", a)
		}
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("backend requests %d, want 2 (the first fill, the failed refill)", n)
	}
}

// lockSite is a site with the lock on (lock_timeout 10s) and the lines
// given (%s) in its edge_cache block.
const lockSite = `{
	admin off
	persist_config off
	edge_cache {
		zone default 16MiB
	}
}
http://127.0.0.1:{PORT} {
	edge_cache {
		valid 200 1h
		lock_timeout 10s
		%s
	}
	reverse_proxy {BACKEND}
}`

// together sends n requests for url at once and returns their answers.
func together(n int, url string) []answer {
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { answers[i] = get(url) })
	}
	wg.Wait()
	return answers
}

// untilWaiting holds a fill's backend request until n requests wait for
// it (the zone's lock waits), so that they are its waiters however loaded
// the machine, rather than after a fixed time; after 10 s it gives up and
// the test's own checks say what happened.
func untilWaiting(n int64) {
	testkit.Wait(10*time.Second, func() string {
		if a, err := caddy.ActiveContext().App("edge_cache"); err == nil {
			if z := a.(*App).Zone("default"); z != nil && z.Stats.LockWaits.Load() >= n {
				return ""
			}
		}
		return fmt.Sprintf("%d requests waiting for the fill", n)
	})
}

// heldTogether holds backend request n: the first, a fill, until its 9
// waiters wait; the next 9, the waiters sent on together, until all 9
// have arrived, so that they run at once. Later ones pass.
func heldTogether(n int64, requests *atomic.Int64) {
	if n == 1 {
		untilWaiting(9)
		return
	}
	testkit.Wait(10*time.Second, func() string {
		if requests.Load() >= 10 {
			return ""
		}
		return "the waiters' 9 requests"
	})
}

// countInFlight is a backend handler that numbers its requests (from 1)
// and keeps the most that ran at once.
func countInFlight(requests, maxInFlight *atomic.Int64, handle func(w http.ResponseWriter, r *http.Request, n int64)) http.HandlerFunc {
	var inFlight atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); cur > m && !maxInFlight.CompareAndSwap(m, cur); m = maxInFlight.Load() {
		}
		handle(w, r, n)
	}
}
