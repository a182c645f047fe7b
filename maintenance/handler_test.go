package maintenance

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/internal/testkit"
)

// provisionMaintenance provisions m as Caddy would and cleans it up after
// the test.
func provisionMaintenance(t testing.TB, m *Handler) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Cleanup() })
	return m
}

// countingNext is a next handler standing for reverse_proxy: it counts calls and
// answers with a session cookie, like OMERO.
type countingNext struct{ calls atomic.Int32 }

func (b *countingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.calls.Add(1)
	w.Header().Set("Set-Cookie", "sessionid=abc")
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "from backend "+r.URL.Path)
	return nil
}

type result struct {
	status int
	header http.Header
	body   string
	err    error
}

func serve(m *Handler, method, path string, next caddyhttp.Handler) result {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, path, nil)
	err := m.ServeHTTP(w, r, next)
	return result{w.Code, w.Result().Header, w.Body.String(), err}
}

var titleRE = regexp.MustCompile(`<title>([^<]*)</title>`)

func title(body string) string {
	if m := titleRE.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const testPage = `<!DOCTYPE html><html><head><title>OMERO maintenance</title></head><body>Back soon</body></html>`

// The handler reacts within 2 s by design (it polls every
// pollInterval, checked below); the waits here are longer so
// that a loaded CI machine does not fail them.

func TestMaintenanceFlagOnOff(t *testing.T) {
	dir := t.TempDir()
	flag, page := filepath.Join(dir, "maintenance.flag"), filepath.Join(dir, "page.html")
	writeFile(t, page, testPage)
	m := provisionMaintenance(t, &Handler{FlagFile: flag, PageFile: page})
	b := new(countingNext)

	if res := serve(m, "GET", "/webclient/", b); res.status != 200 || res.body != "from backend /webclient/" {
		t.Fatalf("without flag: %d %q", res.status, res.body)
	}

	writeFile(t, flag, "")
	testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance starts after the flag appears", func() bool {
		return serve(m, "GET", "/webclient/", b).status == http.StatusServiceUnavailable
	}))
	res := serve(m, "GET", "/webclient/", b)
	if got := title(res.body); got != "OMERO maintenance" {
		t.Errorf("page title %q", got)
	}
	if res.header.Get("Set-Cookie") != "" {
		t.Error("maintenance page carries the backend's cookie")
	}
	calls := b.calls.Load()
	serve(m, "GET", "/webclient/", b)
	if b.calls.Load() != calls {
		t.Error("backend reached during maintenance")
	}

	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance ends after the flag is removed", func() bool {
		return serve(m, "GET", "/webclient/", b).status == http.StatusOK
	}))
}

func TestMaintenanceFlagAtStart(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "flag")
	writeFile(t, flag, "")
	m := provisionMaintenance(t, &Handler{FlagFile: flag})
	if !m.Active() {
		t.Fatal("flag present at provisioning but maintenance not active")
	}
	if res := serve(m, "GET", "/", new(countingNext)); res.status != 503 {
		t.Errorf("status %d", res.status)
	}
}

func TestMaintenancePageReload(t *testing.T) {
	dir := t.TempDir()
	flag, page := filepath.Join(dir, "flag"), filepath.Join(dir, "page.html")
	writeFile(t, flag, "")
	writeFile(t, page, testPage)
	m := provisionMaintenance(t, &Handler{FlagFile: flag, PageFile: page})
	if got := title(serve(m, "GET", "/", nil).body); got != "OMERO maintenance" {
		t.Fatalf("title %q", got)
	}
	writeFile(t, page, "<html><head><title>Upgrade to OMERO 6</title></head></html>")
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the changed page is served", func() bool {
		return title(serve(m, "GET", "/", nil).body) == "Upgrade to OMERO 6"
	}))
	os.Remove(page)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the built-in page replaces a removed page", func() bool {
		return title(serve(m, "GET", "/", nil).body) == "Maintenance"
	}))
}

func TestMaintenanceBuiltinPage(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "flag")
	writeFile(t, flag, "")
	for name, page := range map[string]string{
		"missing page file": filepath.Join(dir, "nothing.html"),
		"page is a folder":  dir,
		"no page":           "",
	} {
		t.Run(name, func(t *testing.T) {
			m := provisionMaintenance(t, &Handler{FlagFile: flag, PageFile: page})
			res := serve(m, "GET", "/webclient/", new(countingNext))
			if res.err != nil || res.status != 503 {
				t.Fatalf("status %d, error %v", res.status, res.err)
			}
			if got := title(res.body); got != "Maintenance" {
				t.Errorf("title %q, want the built-in page", got)
			}
			if ct := res.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestMaintenanceHeaders(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "flag")
	writeFile(t, flag, "")

	m := provisionMaintenance(t, &Handler{FlagFile: flag})
	res := serve(m, "GET", "/", nil)
	if res.header.Get("Retry-After") != "300" {
		t.Errorf("default Retry-After %q, want 300", res.header.Get("Retry-After"))
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", res.header.Get("Cache-Control"))
	}

	m = provisionMaintenance(t, &Handler{FlagFile: flag, StatusCode: 502, RetryAfter: caddy.Duration(90 * time.Second)})
	res = serve(m, "GET", "/", nil)
	if res.status != 502 || res.header.Get("Retry-After") != "90" {
		t.Errorf("status %d Retry-After %q", res.status, res.header.Get("Retry-After"))
	}
	res = serve(m, "HEAD", "/", nil)
	if res.status != 502 || res.body != "" {
		t.Errorf("HEAD: status %d body %q", res.status, res.body)
	}
}

func TestMaintenanceValidate(t *testing.T) {
	for name, m := range map[string]*Handler{
		"no flag":      {},
		"status 100":   {FlagFile: "f", StatusCode: 100},
		"status 600":   {FlagFile: "f", StatusCode: 600},
		"negative":     {FlagFile: "f", StatusCode: 503, RetryAfter: -1},
		"no flag, 503": {StatusCode: 503},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := (&Handler{FlagFile: "f", StatusCode: 503}).Validate(); err != nil {
		t.Error(err)
	}
}

// fakeEdgeCache follows the gate contract as the edge_cache handler must:
// it claims a request it answers from its cache, and serves the page
// instead of going to the backend.
type fakeEdgeCache struct {
	cached map[string]string
	// writeHeaderBeforeClaim sets a header before claiming, as a handler
	// between maintenance and the cache (encode, header) could.
	setHeaderBeforeClaim bool
}

func (c *fakeEdgeCache) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	gate := GateFrom(r.Context())
	if c.setHeaderBeforeClaim {
		w.Header().Set("X-Before-Claim", "yes")
	}
	if body, ok := c.cached[r.URL.Path]; ok {
		if gate != nil {
			gate.Claim()
		}
		w.Header().Set("X-Cache", "HIT")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, body)
		return nil
	}
	if gate != nil {
		return gate.ServePage(w, r)
	}
	return next.ServeHTTP(w, r)
}

// route sends paths under /cached/ through the fake cache to the backend
// and the others straight to the backend, as a Caddyfile with edge_cache
// on some paths only would.
func route(c *fakeEdgeCache, b caddyhttp.Handler) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if strings.HasPrefix(r.URL.Path, "/cached/") {
			return c.ServeHTTP(w, r, b)
		}
		return b.ServeHTTP(w, r)
	})
}

func TestMaintenanceServeCached(t *testing.T) {
	dir := t.TempDir()
	flag, page := filepath.Join(dir, "flag"), filepath.Join(dir, "page.html")
	writeFile(t, flag, "")
	writeFile(t, page, testPage)
	m := provisionMaintenance(t, &Handler{FlagFile: flag, PageFile: page, ServeCached: true})
	b := new(countingNext)
	cache := &fakeEdgeCache{cached: map[string]string{"/cached/hit": "cached body"}, setHeaderBeforeClaim: true}
	next := route(cache, b)

	t.Run("hit is served", func(t *testing.T) {
		res := serve(m, "GET", "/cached/hit", next)
		if res.status != 200 || res.body != "cached body" || res.header.Get("X-Cache") != "HIT" {
			t.Errorf("got %d %q %v", res.status, res.body, res.header)
		}
		if res.header.Get("X-Before-Claim") != "yes" {
			t.Error("header set before Claim was lost")
		}
		if b.calls.Load() != 0 {
			t.Error("backend reached")
		}
	})
	t.Run("miss gets the page without reaching the backend", func(t *testing.T) {
		res := serve(m, "GET", "/cached/miss", next)
		if res.status != 503 || title(res.body) != "OMERO maintenance" || res.header.Get("Retry-After") == "" {
			t.Errorf("got %d %q", res.status, res.body)
		}
		if b.calls.Load() != 0 {
			t.Error("backend reached")
		}
	})
	t.Run("unclaimed request gets the page", func(t *testing.T) {
		res := serve(m, "GET", "/webclient/", next)
		if res.status != 503 || title(res.body) != "OMERO maintenance" || res.err != nil {
			t.Errorf("got %d %q %v", res.status, res.body, res.err)
		}
		if res.header.Get("Set-Cookie") != "" || res.header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("backend headers leaked into the page: %v", res.header)
		}
		// The documented limitation: the backend was reached.
		if b.calls.Load() != 1 {
			t.Errorf("backend calls %d, want 1", b.calls.Load())
		}
	})
	t.Run("other methods never reach the backend", func(t *testing.T) {
		calls := b.calls.Load()
		res := serve(m, "POST", "/webclient/login/", next)
		if res.status != 503 || b.calls.Load() != calls {
			t.Errorf("status %d, backend calls +%d", res.status, b.calls.Load()-calls)
		}
	})
	t.Run("unclaimed error becomes the page", func(t *testing.T) {
		failing := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp: refused"))
		})
		res := serve(m, "GET", "/webclient/", failing)
		if res.err != nil || res.status != 503 || title(res.body) != "OMERO maintenance" {
			t.Errorf("got %d %v", res.status, res.err)
		}
	})
	t.Run("unclaimed flush does not commit the response", func(t *testing.T) {
		flushing := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusOK)
			if err := http.NewResponseController(w).Flush(); err != nil {
				return err
			}
			io.WriteString(w, "streamed")
			return nil
		})
		w := httptest.NewRecorder()
		if err := m.ServeHTTP(w, httptest.NewRequest("GET", "/stream", nil), flushing); err != nil {
			t.Fatal(err)
		}
		if w.Code != 503 || w.Flushed || strings.Contains(w.Body.String(), "streamed") {
			t.Errorf("status %d flushed %v body %q", w.Code, w.Flushed, w.Body.String())
		}
	})
	t.Run("headers set before maintenance stay on the page", func(t *testing.T) {
		w := httptest.NewRecorder()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		m.ServeHTTP(w, httptest.NewRequest("GET", "/webclient/", nil), next)
		if w.Header().Get("Access-Control-Allow-Origin") != "*" || w.Code != 503 {
			t.Errorf("status %d header %v", w.Code, w.Header())
		}
	})
}

func TestMaintenanceWithoutServeCached(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "flag")
	writeFile(t, flag, "")
	m := provisionMaintenance(t, &Handler{FlagFile: flag})
	b := new(countingNext)
	cache := &fakeEdgeCache{cached: map[string]string{"/cached/hit": "cached body"}}
	// As in nginx: even cache hits get the page.
	if res := serve(m, "GET", "/cached/hit", route(cache, b)); res.status != 503 {
		t.Errorf("hit during maintenance: status %d", res.status)
	}
}

func TestMaintenanceNoGateWhenOff(t *testing.T) {
	dir := t.TempDir()
	m := provisionMaintenance(t, &Handler{FlagFile: filepath.Join(dir, "flag"), ServeCached: true})
	var sawGate bool
	var sawWriter http.ResponseWriter
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/", nil), caddyhttp.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) error {
		sawGate = GateFrom(r.Context()) != nil
		sawWriter = rw
		return nil
	}))
	if sawGate || sawWriter != w {
		t.Errorf("normal operation: gate %v, writer wrapped %v", sawGate, sawWriter != w)
	}
}

func BenchmarkMaintenanceOff(b *testing.B) {
	m := provisionMaintenance(b, &Handler{FlagFile: filepath.Join(b.TempDir(), "flag"), ServeCached: true})
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/webgateway/render_thumbnail/1/", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ServeHTTP(w, r, next)
		}
	})
}

func TestMaintenancePollsWithinTwoSeconds(t *testing.T) {
	if pollInterval > time.Second {
		t.Errorf("poll interval %v: a flag change must be seen within 2 s", pollInterval)
	}
}
