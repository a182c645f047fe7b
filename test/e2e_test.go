// Package e2e_test runs the real edgecache binary against test backends.
package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/edgecache/edgecache/internal/testbin"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// binary is the edgecache built once for the whole suite.
var binary string

func TestMain(m *testing.M) { os.Exit(testbin.Run(m, &binary)) }

// backend is a test origin counting its requests.
type backend struct {
	*httptest.Server
	count atomic.Int64
}

func newBackend(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64)) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(w, r, b.count.Add(1))
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) hits() int { return int(b.count.Load()) }

// versioned answers "<path> v<n>" for the n-th request, with a session cookie.
func versioned(w http.ResponseWriter, r *http.Request, n int64) {
	w.Header().Set("Set-Cookie", fmt.Sprintf("sessionid=s%d; Path=/", n))
	fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
}

// instance is a running edgecache process.
type instance struct {
	public, refresh int
	accessLog       string
	client          *http.Client
}

// caddyfileFor is the test configuration: a public site and a refresh site
// in front of be, as in production.
func caddyfileFor(be *backend, public, refresh int, accessLog string) string {
	backend := strings.TrimPrefix(be.URL, "http://")
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	grace_period 1s
	edge_cache {
		zone default 64MiB
		zone api {
			memory 32MiB
			memory_entry_max 1MiB
		}
	}
}
http://127.0.0.1:%[2]d {
	log {
		output file %[4]s
		format json
	}
	log_append cache_status {http.edge_cache.status}
	handle /api/* {
		edge_cache {
			zone api
			valid 200 1h
			strip_query _
			ignore_headers Set-Cookie Cache-Control Expires Vary
			private_cookies logged_in
			lock_timeout 10s
		}
		reverse_proxy %[1]s
	}
	handle {
		edge_cache {
			valid 200 1h
		}
		reverse_proxy %[1]s
	}
}
http://127.0.0.1:%[3]d {
	handle /api/* {
		edge_cache {
			zone api
			refresh
			valid 200 1h
			strip_query _
			ignore_headers Set-Cookie Cache-Control Expires Vary
		}
		reverse_proxy %[1]s
	}
}
`, backend, public, refresh, accessLog)
}

// start runs edgecache with the test configuration and stops it when the
// test ends.
func start(t *testing.T, be *backend) *instance {
	t.Helper()
	return startWith(t, func(public, refresh int, accessLog string) string {
		return caddyfileFor(be, public, refresh, accessLog)
	})
}

// startWith runs edgecache with the configuration caddyfile makes for the
// instance's ports and access log.
func startWith(t *testing.T, caddyfile func(public, refresh int, accessLog string) string) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{public: testbin.FreePort(t), refresh: testbin.FreePort(t), accessLog: filepath.Join(dir, "access.log")}
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile(in.public, in.refresh, in.accessLog)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "run", "--config", config, "--adapter", "caddyfile")
	// Caddy's data and config directories go to the test's own folder.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	transport := &http.Transport{MaxIdleConnsPerHost: 100}
	in.client = &http.Client{Transport: transport, Timeout: 20 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("edgecache did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("edgecache output:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("edgecache exited: %v\n%s", err, stderr.String())
		default:
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(in.public))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgecache did not listen on %d", in.public)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return in
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) cacheStatus() string { return r.header.Get("X-Cache-Status") }

func (in *instance) get(t *testing.T, port int, path string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := in.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

func expect(t *testing.T, what string, r response, cacheStatus, body string) {
	t.Helper()
	if r.status != 200 || r.cacheStatus() != cacheStatus || r.body != body {
		t.Errorf("%s: %d %q %q, want 200 %q %q", what, r.status, r.cacheStatus(), r.body, cacheStatus, body)
	}
}

// loggedStatuses reads the cache statuses of the access log, waiting for n lines.
func (in *instance) loggedStatuses(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		if f, err := os.Open(in.accessLog); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var line struct {
					CacheStatus string `json:"cache_status"`
				}
				if err := json.Unmarshal(sc.Bytes(), &line); err == nil {
					got = append(got, line.CacheStatus)
				}
			}
			f.Close()
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMissThenHit(t *testing.T) {
	be := newBackend(t, versioned)
	in := start(t, be)
	r := in.get(t, in.public, "/api/v0/m/images/?_=1")
	expect(t, "first", r, "MISS", "/api/v0/m/images/ v1")
	if c := r.header.Get("Set-Cookie"); c != "" {
		t.Errorf("Set-Cookie on a cached location's miss: %q", c)
	}
	r = in.get(t, in.public, "/api/v0/m/images/?_=2")
	expect(t, "second", r, "HIT", "/api/v0/m/images/ v1")
	if c := r.header.Get("Set-Cookie"); c != "" {
		t.Errorf("Set-Cookie replayed from the cache: %q", c)
	}
	if be.hits() != 1 {
		t.Errorf("%d backend requests, want 1", be.hits())
	}
	if got := in.loggedStatuses(t, 2); strings.Join(got, " ") != "MISS HIT" {
		t.Errorf("access log statuses %q, want MISS HIT", got)
	}
	// Set-Cookie not ignored: never stored.
	expect(t, "cookie 1", in.get(t, in.public, "/webclient/x"), "MISS", "/webclient/x v2")
	expect(t, "cookie 2", in.get(t, in.public, "/webclient/x"), "MISS", "/webclient/x v3")
}

func TestRefreshSite(t *testing.T) {
	be := newBackend(t, versioned)
	in := start(t, be)
	expect(t, "public", in.get(t, in.public, "/api/r"), "MISS", "/api/r v1")
	expect(t, "public again", in.get(t, in.public, "/api/r"), "HIT", "/api/r v1")
	expect(t, "refresh", in.get(t, in.refresh, "/api/r?_=9"), "BYPASS", "/api/r v2")
	expect(t, "refresh again", in.get(t, in.refresh, "/api/r"), "BYPASS", "/api/r v3")
	expect(t, "public after refresh", in.get(t, in.public, "/api/r"), "HIT", "/api/r v3")
}

func TestPrivateBypass(t *testing.T) {
	be := newBackend(t, versioned)
	in := start(t, be)
	for _, h := range [][]string{{"Authorization", "Basic dTpw"}, {"Cookie", "sessionid=x; logged_in=1"}} {
		r := in.get(t, in.public, "/api/p", h...)
		if r.cacheStatus() != "BYPASS" || r.header.Get("Set-Cookie") == "" {
			t.Errorf("%s: status %q, Set-Cookie %q; want BYPASS with the cookie", h[0], r.cacheStatus(), r.header.Get("Set-Cookie"))
		}
	}
	expect(t, "public", in.get(t, in.public, "/api/p"), "MISS", "/api/p v3")
	expect(t, "anonymous session", in.get(t, in.public, "/api/p", "Cookie", "sessionid=anon"), "HIT", "/api/p v3")
}

func TestLock50Clients(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(300 * time.Millisecond)
		versioned(w, r, n)
	})
	in := start(t, be)
	const n = 50
	statuses := make([]string, n)
	bodies := make([]string, n)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-begin
			r := in.get(t, in.public, "/api/locked")
			statuses[i], bodies[i] = r.cacheStatus(), r.body
		})
	}
	close(begin)
	wg.Wait()
	if be.hits() != 1 {
		t.Errorf("%d clients made %d backend requests, want 1", n, be.hits())
	}
	count := map[string]int{}
	for i := range n {
		count[statuses[i]]++
		if bodies[i] != "/api/locked v1" {
			t.Errorf("client %d got %q", i, bodies[i])
		}
	}
	if count["MISS"] != 1 || count["HIT"] != n-1 {
		t.Errorf("statuses %v", count)
	}
}

func TestValidateAndAdaptErrors(t *testing.T) {
	dir := t.TempDir()
	run := func(caddyfile string, args ...string) (string, error) {
		config := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, append(args, "--config", config, "--adapter", "caddyfile")...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache thumbnails
	reverse_proxy 127.0.0.1:9
}
`, "validate")
	if err == nil || !strings.Contains(out, `zone \"thumbnails\" is not defined`) && !strings.Contains(out, `zone "thumbnails" is not defined`) {
		t.Errorf("validate with an unknown zone: %v\n%s", err, out)
	}
	out, err = run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache {
		zone images
		valid 200 forever
	}
	reverse_proxy 127.0.0.1:9
}
`, "adapt")
	if err == nil || !strings.Contains(out, "Caddyfile:9") || !strings.Contains(out, "bad duration") {
		t.Errorf("adapt with a bad duration: %v\n%s", err, out)
	}
	if out, err := run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache images
	reverse_proxy 127.0.0.1:9
}
`, "validate"); err != nil {
		t.Errorf("validate a good config: %v\n%s", err, out)
	}
}
