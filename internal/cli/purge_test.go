package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// fakeAdmin implements the edge_cache admin API contract over zones of keys.
type fakeAdmin struct {
	mu       sync.Mutex
	zones    map[string][]string // sorted keys
	requests []string            // method and URI of each request
	origins  []string
}

func newFakeAdmin() *fakeAdmin {
	f := &fakeAdmin{zones: map[string][]string{}}
	for i := range 2500 {
		f.zones["thumbnails"] = append(f.zones["thumbnails"], fmt.Sprintf("/webclient/render_thumbnail/%04d/", i))
	}
	f.zones["api"] = []string{"/api/v0/m/projects/", "/api/v0/m/screens/", "/webclient/api/annotations/"}
	slices.Sort(f.zones["thumbnails"])
	return f
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.RequestURI)
	f.origins = append(f.origins, r.Header.Get("Origin"))
	switch r.URL.Path {
	case adminapi.PurgePath:
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			apiError(w, http.StatusMethodNotAllowed, "want a JSON POST")
			return
		}
		var req struct {
			Zone, Key, Prefix string
			All               bool
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, "decoding request: %v", err)
			return
		}
		n := 0
		for _, set := range []bool{req.Key != "", req.Prefix != "", req.All} {
			if set {
				n++
			}
		}
		if n != 1 {
			apiError(w, http.StatusBadRequest, "need exactly one of key, prefix or all")
			return
		}
		if _, ok := f.zones[req.Zone]; req.Zone != "" && !ok {
			apiError(w, http.StatusBadRequest, "unknown zone %q", req.Zone)
			return
		}
		purged := 0
		for name, keys := range f.zones {
			if req.Zone != "" && name != req.Zone {
				continue
			}
			kept := keys[:0]
			for _, k := range keys {
				if req.All || k == req.Key || req.Prefix != "" && strings.HasPrefix(k, req.Prefix) {
					purged++
				} else {
					kept = append(kept, k)
				}
			}
			f.zones[name] = kept
		}
		json.NewEncoder(w).Encode(map[string]int{"purged": purged})
	case adminapi.KeysPath:
		q := r.URL.Query()
		keys, ok := f.zones[q.Get("zone")]
		if !ok {
			apiError(w, http.StatusBadRequest, "unknown zone %q", q.Get("zone"))
			return
		}
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit <= 0 {
			apiError(w, http.StatusBadRequest, "bad limit %q", q.Get("limit"))
			return
		}
		start, _ := slices.BinarySearch(keys, q.Get("after"))
		if start < len(keys) && keys[start] == q.Get("after") {
			start++
		}
		page := keys[start:min(start+limit, len(keys))]
		next := ""
		if start+limit < len(keys) {
			next = page[len(page)-1]
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": page, "next": next})
	default:
		http.NotFound(w, r)
	}
}

func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	f := newFakeAdmin()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.Listener.Addr().String()
}

func TestPurgeCommand(t *testing.T) {
	for _, c := range []struct {
		args    []string
		out     string
		err     string
		zones   map[string]int // keys left per zone
		request bool
	}{
		{args: []string{"--zone", "api", "--key", "/api/v0/m/screens/"}, out: "purged 1 entries from zone api\n",
			zones: map[string]int{"api": 2, "thumbnails": 2500}, request: true},
		{args: []string{"--prefix", "/webclient/"}, out: "purged 2501 entries from every zone\n",
			zones: map[string]int{"api": 2, "thumbnails": 0}, request: true},
		{args: []string{"--zone", "thumbnails", "--all"}, out: "purged 2500 entries from zone thumbnails\n",
			zones: map[string]int{"api": 3, "thumbnails": 0}, request: true},
		{args: []string{"--zone", "nope", "--all"}, err: `purging: unknown zone "nope" (HTTP 400)`,
			zones: map[string]int{"api": 3, "thumbnails": 2500}, request: true},
		{args: []string{"--key", ""}, err: "--key is empty", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--prefix", ""}, err: "use --all", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--zone", "api"}, err: "exactly one of", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--all", "--key", "/a"}, err: "exactly one of", zones: map[string]int{"api": 3, "thumbnails": 2500}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			f, addr := startFakeAdmin(t)
			var out bytes.Buffer
			status, err := runPurge(context.Background(), parseFlags(t, purgeCommand, append(c.args, "--address", addr)...), &out)
			if c.err == "" && (err != nil || status != caddy.ExitCodeSuccess) {
				t.Fatalf("status %d, error %v", status, err)
			}
			if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || status != caddy.ExitCodeFailedStartup) {
				t.Fatalf("status %d, error %v; want %q", status, err, c.err)
			}
			if out.String() != c.out {
				t.Errorf("output %q, want %q", out.String(), c.out)
			}
			for zone, n := range c.zones {
				if got := len(f.zones[zone]); got != n {
					t.Errorf("zone %s has %d keys, want %d", zone, got, n)
				}
			}
			if c.request != (len(f.requests) == 1) {
				t.Errorf("requests %v", f.requests)
			}
			if c.request && f.origins[0] != "http://"+addr {
				t.Errorf("Origin %q, want http://%s", f.origins[0], addr)
			}
		})
	}
}

func TestCacheKeysCommand(t *testing.T) {
	f, addr := startFakeAdmin(t)
	all := slices.Clone(f.zones["thumbnails"])
	for _, c := range []struct {
		args  []string
		want  []string
		pages int
	}{
		{args: []string{"--zone", "thumbnails"}, want: all, pages: 3},
		{args: []string{"--zone", "thumbnails", "--limit", "1500"}, want: all[:1500], pages: 2},
		{args: []string{"--zone", "thumbnails", "--prefix", "/webclient/render_thumbnail/24"}, want: all[2400:2500], pages: 3},
		{args: []string{"--zone", "api", "--prefix", "/api/"}, want: []string{"/api/v0/m/projects/", "/api/v0/m/screens/"}, pages: 1},
	} {
		f.requests = nil
		var out bytes.Buffer
		status, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, append(c.args, "--address", addr)...), &out)
		if err != nil || status != 0 {
			t.Fatalf("%v: status %d, error %v", c.args, status, err)
		}
		if got := strings.Join(c.want, "\n") + "\n"; out.String() != got {
			t.Errorf("%v: %d lines out, want %d", c.args, strings.Count(out.String(), "\n"), len(c.want))
		}
		if len(f.requests) != c.pages {
			t.Errorf("%v: requests %v, want %d pages", c.args, f.requests, c.pages)
		}
	}
	var out bytes.Buffer
	_, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "nope", "--address", addr), &out)
	if err == nil || err.Error() != `listing keys: unknown zone "nope" (HTTP 400)` {
		t.Errorf("unknown zone: error %v", err)
	}
}

func TestCacheKeysStopsOnARepeatedPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":["/a"],"next":"/a"}`))
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	_, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "z", "--address", srv.Listener.Addr().String()), &out)
	if err == nil || !strings.Contains(err.Error(), "same page again") {
		t.Fatalf("error %v", err)
	}
	if out.String() != "/a\n/a\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestAdminClientErrors(t *testing.T) {
	// nothing listening there
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out bytes.Buffer
	_, err = runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", addr), &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the admin API at "+addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: error %v", err)
	}

	// a server without the edge_cache API, and one answering garbage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case adminapi.KeysPath:
			w.Write([]byte("<html>not json</html>"))
		case adminapi.PurgePath:
			http.Error(w, "kaput", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := newAdminClient(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, uri, want string }{
		{http.MethodGet, "/elsewhere?x=1", "has no /elsewhere endpoint (HTTP 404)"},
		{http.MethodGet, adminapi.KeysPath + "?zone=z", "unexpected answer from GET /edge_cache/keys (HTTP 200)"},
		{http.MethodPost, adminapi.PurgePath, "HTTP 500 Internal Server Error: kaput"},
	} {
		var v adminapi.KeysResponse
		if err := c.do(context.Background(), tc.method, tc.uri, nil, &v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: error %v, want %q", tc.method, tc.uri, err, tc.want)
		}
	}

	for _, bad := range []string{"localhost:2019-2020", "fd/3", "udp/localhost:2019", "unix/"} {
		if _, err := newAdminClient(bad); err == nil {
			t.Errorf("address %q: no error", bad)
		}
	}
}

func TestPurgeOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "ec") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAdmin()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: f}}
	srv.Start()
	t.Cleanup(srv.Close)

	var out bytes.Buffer
	status, err := runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", "unix/"+sock+"|0200"), &out)
	if err != nil || status != 0 || out.String() != "purged 2503 entries from every zone\n" {
		t.Fatalf("status %d, error %v, output %q", status, err, out.String())
	}
}

// TestAdminClientWithCaddy checks the client against Caddy's own admin
// endpoint, which enforces the Host and Origin of requests.
func TestAdminClientWithCaddy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`{"admin":{"listen":%q,"enforce_origin":true,"config":{"persist":false}},"apps":{}}`, addr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })

	c, err := newAdminClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]any
	if err := c.do(context.Background(), http.MethodGet, "/config/", nil, &config); err != nil {
		t.Fatalf("GET /config/: %v", err)
	}
	if admin, _ := config["admin"].(map[string]any); admin["listen"] != addr {
		t.Errorf("config %v", config)
	}
	// a Caddy without the edge_cache app: the API says so
	var out bytes.Buffer
	_, err = runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", addr), &out)
	if err == nil || !strings.Contains(err.Error(), "no edge_cache app in the running config") {
		t.Errorf("error %v", err)
	}
}

// TestKeysThatAreNotText stores an entry under a key with a byte that is
// not UTF-8, lists it with cache-keys and purges it with the printed key
// through the real admin API: the entry goes, and a purge of a key that
// matches nothing reports 0.
func TestKeysThatAreNotText(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		fmt.Fprintf(w, "v%d", n)
	})
	addr, ports := startProxy(t, "zone default 16MiB", `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy `+be.Addr()+`
}
`, "PUBLIC")

	// A raw request: a client library would escape the byte.
	rawGet := func() string {
		t.Helper()
		conn, err := net.Dial("tcp", ports["PUBLIC"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(conn, "GET /img\xff1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		return res.Header.Get("X-Cache-Status")
	}
	if got := rawGet(); got != "MISS" {
		t.Fatalf("first request: %s", got)
	}
	if got := rawGet(); got != "HIT" {
		t.Fatalf("second request: %s", got)
	}

	var out bytes.Buffer
	if _, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "default", "--address", addr), &out); err != nil {
		t.Fatal(err)
	}
	printed := strings.TrimSuffix(out.String(), "\n")
	if printed != `"/img\xff1"` {
		t.Fatalf("cache-keys printed %q", printed)
	}
	out.Reset()
	if _, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "default", "--prefix", `"/img\xff"`, "--address", addr), &out); err != nil || out.String() != printed+"\n" {
		t.Fatalf("cache-keys with a quoted prefix printed %q, %v", out.String(), err)
	}

	purge := func(key string) string {
		t.Helper()
		var out bytes.Buffer
		if _, err := runPurge(context.Background(), parseFlags(t, purgeCommand, "--key", key, "--address", addr), &out); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got := purge("/img\uFFFD1"); got != "purged 0 entries from every zone" {
		t.Errorf("purging the key as JSON mangles it: %q", got)
	}
	if got := purge(printed); got != "purged 1 entries from every zone" {
		t.Errorf("purging the printed key: %q", got)
	}
	if got := rawGet(); got != "MISS" {
		t.Errorf("after the purge: %s", got)
	}
}
