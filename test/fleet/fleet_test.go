// Package fleet_test runs fleets of real edgecache processes sharing one
// cache through a real Redis (a single node or a 3-master Cluster), in
// front of an origin that counts requests: one backend request for the
// whole fleet, wake-ups, Redis failures, damaged values.
//
// This file is the shared setup (startFleet, the origin, requests and
// metrics); each scenario has its own file.
package fleet_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// edgecacheBin is the edgecache command built once by TestMain.
var edgecacheBin string

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, &edgecacheBin)) }

// fleetOptions shape each proxy's Caddyfile (see caddyfile).
type fleetOptions struct {
	// Origin is the backend's host:port.
	Origin string
	// Zones are the zone lines of the edge_cache global block; default a
	// 64 MiB memory zone named default.
	Zones string
	// Shared adds lines to the shared block (redis and node are set);
	// default "timeout 1s": generous, as a loaded test machine may take
	// longer than the default 100 ms, and a slow answer opens the breaker.
	Shared string
	// Handler adds lines to the edge_cache handler of the public site and
	// the cache buster (valid 200 1h is set).
	Handler string
	// RedisFor, when set, gives proxy i (from 0) its own Redis addresses
	// instead of startFleet's: e.g. one that reaches Redis through a
	// testkit.TCPProxy, to be cut off.
	RedisFor func(i int) []string
	// Env is added to every proxy's environment (e.g. SSL_CERT_FILE, a
	// password for {env.X}).
	Env []string
}

// proxy is one edgecache process of a fleet.
type proxy struct {
	Name    string
	Admin   int    // admin API port
	Port    int    // the public site
	Refresh int    // the cache buster (refresh on)
	URL     string // http://127.0.0.1:Port
	dir     string
	env     []string
	log     *testkit.LockedBuffer
	client  *http.Client
	process *testkit.Process
}

// startFleet starts n proxies, named p1..pn, sharing the Redis at
// redisAddrs (several: Cluster seeds). They are killed when the test
// ends; their output is shown if it failed.
func startFleet(t *testing.T, n int, redisAddrs []string, o fleetOptions) []*proxy {
	t.Helper()
	ps := make([]*proxy, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range ps {
		p := &proxy{
			Name: "p" + strconv.Itoa(i+1), Admin: testkit.FreePort(t), Port: testkit.FreePort(t), Refresh: testkit.FreePort(t),
			dir: t.TempDir(), env: o.Env, log: new(testkit.LockedBuffer),
			client: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 128}},
		}
		p.URL = "http://127.0.0.1:" + strconv.Itoa(p.Port)
		ps[i] = p
		t.Cleanup(func() {
			if p.process != nil {
				p.process.Kill()
			}
			p.client.CloseIdleConnections()
			if t.Failed() {
				t.Logf("%s output:\n%s", p.Name, p.log.String())
			}
		})
		addrs := redisAddrs
		if o.RedisFor != nil {
			addrs = o.RedisFor(i)
		}
		if err := os.WriteFile(filepath.Join(p.dir, "Caddyfile"), []byte(caddyfile(p, addrs, o)), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.start()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v\n%s", ps[i].Name, err, ps[i].log.String())
		}
	}
	return ps
}

// caddyfile is a proxy's configuration: a public site and a cache
// buster on one zone, in the fleet.
func caddyfile(p *proxy, redisAddrs []string, o fleetOptions) string {
	if o.Shared == "" {
		o.Shared = "timeout 1s"
	}
	zones := o.Zones
	if zones == "" {
		zones = "zone default 64MiB"
	}
	site := func(port int, extra string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	header {
		defer
		X-Edge-Tier {http.edge_cache.tier}
	}
	edge_cache {
		valid 200 1h
		%s
		%s
	}
	reverse_proxy %s
}
`, port, extra, o.Handler, o.Origin)
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		shared {
			redis %s
			node %s
			%s
		}
		%s
	}
}
`, p.Admin, strings.Join(redisAddrs, " "), p.Name, o.Shared, zones) + site(p.Port, "") + site(p.Refresh, "refresh")
}

func (p *proxy) start() error {
	process, err := testkit.Start(testkit.Command{
		Program: edgecacheBin,
		Args:    []string{"run", "--config", filepath.Join(p.dir, "Caddyfile"), "--adapter", "caddyfile"},
		Env: append(append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
			"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"), "HOME="+p.dir), p.env...),
		Output: p.log,
		Listen: []string{"127.0.0.1:" + strconv.Itoa(p.Admin), "127.0.0.1:" + strconv.Itoa(p.Port), "127.0.0.1:" + strconv.Itoa(p.Refresh)},
	})
	p.process = process
	return err
}

// stop ends the proxy as an operator would (SIGTERM).
func (p *proxy) stop(t *testing.T) {
	t.Helper()
	if err := p.process.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Error(err)
	}
	p.process = nil
	p.client.CloseIdleConnections()
}

// response is one answer of a proxy.
type response struct {
	status int
	cache  string // X-Cache-Status
	tier   string // X-Edge-Tier: {http.edge_cache.tier}
	body   []byte
	header http.Header
	done   time.Time // when the whole body was read
}

// get requests path (and query) from the public site; a transport error
// or a body cut short is an error.
func (p *proxy) get(path string) (response, error) { return p.fetch(p.URL + path) }

// refresh requests path through the cache buster.
func (p *proxy) refresh(path string) (response, error) {
	return p.fetch("http://127.0.0.1:" + strconv.Itoa(p.Refresh) + path)
}

func (p *proxy) fetch(url string) (response, error) {
	resp, err := p.client.Get(url)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("GET %s: %s, body cut after %d bytes: %v", url, resp.Status, len(body), err)
	}
	return response{status: resp.StatusCode, cache: resp.Header.Get("X-Cache-Status"), tier: resp.Header.Get("X-Edge-Tier"),
		body: body, header: resp.Header, done: time.Now()}, nil
}

// mustGet is get, failing the test on an error or a status other than 200.
func (p *proxy) mustGet(t *testing.T, path string) response {
	t.Helper()
	r, err := p.get(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("%s GET %s: status %d, body %.200q", p.Name, path, r.status, r.body)
	}
	return r
}

// metric is the sum of the samples of a metric on the proxy's admin
// /metrics whose labels include every given label="value".
func (p *proxy) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return testkit.Metric(t, p.client, "http://127.0.0.1:"+strconv.Itoa(p.Admin)+"/metrics", name, labels...)
}

// origin is a backend that counts requests, answers each path with a body
// naming the path and the origin's version (bumped by the test to tell a
// refreshed body), after delay, and notes when it finished each answer.
type origin struct {
	*testkit.Backend
	mu      sync.Mutex
	version int
	done    map[string]time.Time // by path: the end of the last answer
}

func newOrigin(t *testing.T, delay time.Duration) *origin {
	o := &origin{version: 1, done: make(map[string]time.Time)}
	o.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		time.Sleep(delay) // a slow render
		body := o.body(r.URL.Path)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		o.mu.Lock()
		o.done[r.URL.Path] = time.Now()
		o.mu.Unlock()
	})
	return o
}

// body is what the origin answers for path now.
func (o *origin) body(path string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Appendf(nil, "%s v%d %s", path, o.version, bytes.Repeat([]byte("."), 2000))
}

// bump changes every body the origin answers from now on.
func (o *origin) bump() {
	o.mu.Lock()
	o.version++
	o.mu.Unlock()
}

// doneAt is when the origin finished its last answer for path.
func (o *origin) doneAt(path string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.done[path]
}
