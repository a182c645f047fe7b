package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// globalOptions makes every test Caddy quiet, local and stateless; zones is
// the body of the edge_cache global option.
func globalOptions(zones string) string {
	return `{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	grace_period 1s
	log {
		output discard
	}
	edge_cache {
` + zones + `
	}
}
`
}

// adapt turns a Caddyfile into JSON config.
func adapt(t testing.TB, caddyfile string) []byte {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "fmt") {
			t.Logf("adapter warning: %s:%d %s", w.File, w.Line, w.Message)
		}
	}
	return cfg
}

// site is a loaded test Caddy: the ports of its listeners by name.
type site struct {
	ports  map[string]int
	client *http.Client
}

// startCaddy loads a Caddyfile in which $BACKEND is replaced by the
// backend's address and each $NAME in names by a free port, and stops
// Caddy at the end of the test.
func startCaddy(t testing.TB, caddyfile string, be *testkit.Backend, names ...string) *site {
	t.Helper()
	s := &site{ports: make(map[string]int)}
	var pairs []string
	if be != nil {
		pairs = append(pairs, "$BACKEND", be.Addr())
	}
	for _, n := range names {
		s.ports[n] = testkit.FreePort(t)
		pairs = append(pairs, "$"+n, strconv.Itoa(s.ports[n]))
	}
	cfg := adapt(t, strings.NewReplacer(pairs...).Replace(caddyfile))
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 100, DisableCompression: true}
	s.client = &http.Client{Transport: transport, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return s
}

func (s *site) url(listener, path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.ports[listener]) + path
}

// response is what a client got.
type response struct {
	Status int
	Header http.Header
	Body   string
	Err    error // reading the body
}

func (r response) cacheStatus() string { return r.Header.Get("X-Cache-Status") }

// do sends a request and reads the whole response; header is pairs of
// name, value.
func (s *site) do(t testing.TB, method, url string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: string(body), Err: err}
}

func (s *site) get(t testing.TB, url string, header ...string) response {
	t.Helper()
	return s.do(t, http.MethodGet, url, header...)
}

// expect checks a response's status code, cache status and body.
func expect(t testing.TB, what string, r response, code int, cacheStatus, body string) {
	t.Helper()
	if r.Err != nil {
		t.Errorf("%s: reading body: %v", what, r.Err)
	}
	if r.Status != code {
		t.Errorf("%s: status %d, want %d", what, r.Status, code)
	}
	if got := r.cacheStatus(); got != cacheStatus {
		t.Errorf("%s: X-Cache-Status %q, want %q", what, got, cacheStatus)
	}
	if r.Body != body {
		t.Errorf("%s: body %q, want %q", what, abbreviate(r.Body), abbreviate(body))
	}
}

func abbreviate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// activeApp returns the running edge_cache app.
func activeApp(t testing.TB) *App {
	t.Helper()
	a, err := caddy.ActiveContext().App("edge_cache")
	if err != nil {
		t.Fatal(err)
	}
	return a.(*App)
}

// handlerJSON finds the first edge_cache handler in an adapted config.
func handlerJSON(t testing.TB, cfg []byte) map[string]any {
	t.Helper()
	var found map[string]any
	var walk func(v any)
	walk = func(v any) {
		if found != nil {
			return
		}
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "edge_cache" {
				found = v
				return
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var root any
	if err := json.Unmarshal(cfg, &root); err != nil {
		t.Fatal(err)
	}
	walk(root)
	if found == nil {
		t.Fatalf("no edge_cache handler in %s", cfg)
	}
	return found
}

// advance moves the default zone's clock forward, as if d had passed: the
// zone and its handlers read their time from it.
func advance(t testing.TB, d time.Duration) {
	t.Helper()
	activeApp(t).Zone("default").Clock().Advance(d)
}

// adminCall sends a request to the admin API at addr, with body (if not
// nil) as JSON, and decodes the answer into out. An error answer is the
// error, with its status and message.
func adminCall(t testing.TB, addr, method, uri string, body, out any) error {
	t.Helper()
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+uri, reqBody)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	if res.StatusCode != http.StatusOK {
		var e adminapi.Error
		json.Unmarshal(data, &e)
		return fmt.Errorf("HTTP %d: %s", res.StatusCode, e.Error)
	}
	return json.Unmarshal(data, out)
}

// hitAllocations starts Caddy with the Caddyfile cf (its site on $PUBLIC),
// requests path twice (a miss, then a hit, whose whole read verifies a
// disk body), and returns the allocations per hit of the server's handler,
// called as net/http's server calls it. It stops Caddy.
func hitAllocations(t *testing.T, cf string, be *testkit.Backend, path string) float64 {
	t.Helper()
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", path)
	s.get(t, u)
	if r := s.get(t, u); r.cacheStatus() != "HIT" {
		t.Fatalf("not a hit: %s", r.cacheStatus())
	}
	srv := activeServer(t)
	req := serverRequest(u)
	w := &countingWriter{}
	n := testing.AllocsPerRun(200, func() {
		w.header = make(http.Header)
		srv.ServeHTTP(w, req)
	})
	if w.header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("X-Cache-Status %q", w.header.Get("X-Cache-Status"))
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	return n
}
