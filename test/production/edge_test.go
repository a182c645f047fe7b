package production_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/omerodemo"

	"github.com/edgecache/edgecache/internal/testkit"
)

// edgeConfig says how to run one instance.
type edgeConfig struct {
	// ReadOnly is the number of read-only OMERO nodes (default 2).
	ReadOnly int
	// Dir is the instance's folder: cache, flag file, Caddy's data and the
	// log. Created if missing.
	Dir string
	// Caddyfile is the config to run; default the repository's
	// Caddyfile.example.
	Caddyfile string
	// Env adds or overrides environment variables of the process.
	Env map[string]string
	// Cluster, when set, is the OMERO backends to use (left running when
	// the instance stops); by default the instance starts its own.
	Cluster *omerodemo.Cluster
}

// edge is a running edgecache process with its OMERO nodes.
type edge struct {
	Cluster *omerodemo.Cluster
	// Public, Refresh, Long, Status and Admin are the host:port of the
	// public site, the cache buster, the long-timeout port, the status
	// page and Caddy's admin endpoint.
	Public, Refresh, Long, Status, Admin string
	// Flag is the maintenance flag file (absent at start).
	Flag string

	process *testkit.Process
	logPath string
	logFile *os.File

	mu      sync.Mutex
	clients map[string]*http.Client // by local address ("" for the default)

	stopOnce    sync.Once
	stopErr     error
	ownsCluster bool
}

// The environment variables Caddyfile.example reads; the test sets every
// one of them (or removes it) so that the caller's environment cannot leak
// into the instance.
var caddyfileEnv = []string{
	"EDGECACHE_PUBLIC", "EDGECACHE_PUBLIC_BIND", "EDGECACHE_PRIVATE_BIND",
	"EDGECACHE_REFRESH_PORT", "EDGECACHE_LONG_PORT", "EDGECACHE_STATUS_PORT", "EDGECACHE_ADMIN",
	"OMERO_READONLY", "OMERO_READONLY_TIMEOUT", "OMERO_READWRITE",
	"OMERO_WEBSOCKETS", "GRAFANA", "PROMETHEUS", "SEARCHENGINE",
	"EDGECACHE_WWW", "EDGECACHE_MAINTENANCE_FLAG", "EDGECACHE_CACHE_DIR",
	"XDG_DATA_HOME", "XDG_CONFIG_HOME",
}

// newEdge starts an instance for one test and stops it when the test ends,
// showing its log if the test failed.
func newEdge(t *testing.T, cfg edgeConfig) *edge {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	e, err := startEdge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("edgecache log (last lines):\n%s", e.logTail(0, 80))
		}
	})
	return e
}

// startEdge starts the OMERO nodes and `edgecache run` with the Caddyfile,
// and waits until every listener answers.
func startEdge(cfg edgeConfig) (_ *edge, err error) {
	if cfg.ReadOnly == 0 {
		cfg.ReadOnly = 2
	}
	listen := func(e *edge) []string { return []string{e.Public, e.Refresh, e.Long, e.Admin} }
	if cfg.Caddyfile == "" {
		cfg.Caddyfile = filepath.Join(repoRoot, "Caddyfile.example")
		listen = func(e *edge) []string { return []string{e.Public, e.Refresh, e.Long, e.Status, e.Admin} }
	}
	for _, sub := range []string{"cache", "data", "config"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o755); err != nil {
			return nil, err
		}
	}

	e := &edge{
		Flag:    filepath.Join(cfg.Dir, "omero-maintenance.flag"),
		logPath: filepath.Join(cfg.Dir, "edgecache.log"),
		clients: make(map[string]*http.Client),
	}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	if e.Cluster = cfg.Cluster; e.Cluster == nil {
		if e.Cluster, err = omerodemo.StartCluster(cfg.ReadOnly, omerodemo.Options{}); err != nil {
			return nil, err
		}
		e.ownsCluster = true
	}
	for _, addr := range []*string{&e.Public, &e.Refresh, &e.Long, &e.Status, &e.Admin} {
		if *addr, err = testkit.FreeAddr(); err != nil {
			return nil, err
		}
	}
	// Nothing listens there: the websocket pool, the monitoring servers
	// and the search engine answer 502 unless a test provides them.
	unused, err := testkit.FreeAddr()
	if err != nil {
		return nil, err
	}

	env := map[string]string{
		"EDGECACHE_PUBLIC":           "http://" + e.Public,
		"EDGECACHE_PUBLIC_BIND":      "127.0.0.1",
		"EDGECACHE_REFRESH_PORT":     port(e.Refresh),
		"EDGECACHE_LONG_PORT":        port(e.Long),
		"EDGECACHE_STATUS_PORT":      port(e.Status),
		"EDGECACHE_ADMIN":            e.Admin,
		"OMERO_READONLY":             strings.Join(e.Cluster.ReadOnlyAddrs(), " "),
		"OMERO_READWRITE":            e.Cluster.ReadWrite.Addr,
		"OMERO_WEBSOCKETS":           unused,
		"GRAFANA":                    unused,
		"PROMETHEUS":                 unused,
		"SEARCHENGINE":               unused,
		"EDGECACHE_WWW":              filepath.Join(repoRoot, "www"),
		"EDGECACHE_MAINTENANCE_FLAG": e.Flag,
		"EDGECACHE_CACHE_DIR":        filepath.Join(cfg.Dir, "cache"),
		// Caddy's autosaved config and certificate storage stay here.
		"XDG_DATA_HOME":   filepath.Join(cfg.Dir, "data"),
		"XDG_CONFIG_HOME": filepath.Join(cfg.Dir, "config"),
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	e.Flag = env["EDGECACHE_MAINTENANCE_FLAG"]

	if e.logFile, err = os.Create(e.logPath); err != nil {
		return nil, err
	}
	e.process, err = testkit.Start(testkit.Command{
		Args:   []string{"run", "--config", cfg.Caddyfile, "--adapter", "caddyfile"},
		Dir:    cfg.Dir,
		Env:    processEnv(env),
		Output: e.logFile,
		Listen: listen(e),
	})
	if err != nil {
		return nil, fmt.Errorf("%v\n%s", err, e.logTail(0, 40))
	}
	return e, nil
}

// processEnv is this process's environment without the variables of
// Caddyfile.example, plus env.
func processEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, v := range caddyfileEnv {
			if name == v {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// stop stops the process (SIGTERM, then SIGKILL after 10 s) and the OMERO
// nodes. It reports a process that did not exit cleanly on SIGTERM. Calls
// after the first return the first's result.
func (e *edge) stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.doStop() })
	return e.stopErr
}

func (e *edge) doStop() error {
	var errs []error
	if e.process != nil {
		e.mu.Lock()
		for _, c := range e.clients {
			c.CloseIdleConnections()
		}
		e.mu.Unlock()
		errs = append(errs, e.process.Stop(syscall.SIGTERM, 10*time.Second))
	}
	if e.logFile != nil {
		e.logFile.Close()
	}
	if e.Cluster != nil && e.ownsCluster {
		e.Cluster.Close()
	}
	return errors.Join(errs...)
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// logSize returns the current size of the log, for logTail.
func (e *edge) logSize() int64 {
	fi, err := os.Stat(e.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last n lines the process logged after offset from.
func (e *edge) logTail(from int64, n int) string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return err.Error()
	}
	if from < int64(len(b)) {
		b = b[from:]
	} else {
		b = nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// response is a finished request.
type response struct {
	Status int
	Header http.Header
	Body   string
	// ID is the X-Test-Request header sent, to find the access log line.
	ID string
}

var requestSeq atomic.Int64

// headerTestID tags each request so that its access log line can be found.
const headerTestID = "X-Test-Request"

// get sends a GET to addr (host:port) for uri, from the default client
// address 127.0.0.1, with the extra headers given as name, value pairs.
// Redirects are not followed.
func (e *edge) get(t *testing.T, addr, uri string, header ...string) response {
	t.Helper()
	return e.getFrom(t, "", addr, uri, header...)
}

// getFrom is get from the local address localIP (any 127.x.y.z: Linux
// routes all of 127/8 to the loopback interface), so that the proxy sees a
// different client address.
func (e *edge) getFrom(t *testing.T, localIP, addr, uri string, header ...string) response {
	t.Helper()
	resp, err := e.do(localIP, addr, uri, header...)
	if err != nil {
		t.Fatalf("GET http://%s%s: %v", addr, uri, err)
	}
	return resp
}

func (e *edge) do(localIP, addr, uri string, header ...string) (response, error) {
	return e.send(localIP, http.MethodGet, addr, uri, "", header...)
}

// request sends a request with any method and a form body (none when
// form is empty) from 127.0.0.1.
func (e *edge) request(t *testing.T, method, addr, uri, form string, header ...string) response {
	t.Helper()
	r, err := e.send("", method, addr, uri, form, header...)
	if err != nil {
		t.Fatalf("%s http://%s%s: %v", method, addr, uri, err)
	}
	return r
}

func (e *edge) send(localIP, method, addr, uri, form string, header ...string) (response, error) {
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, err := http.NewRequest(method, "http://"+addr+uri, body)
	if err != nil {
		return response{}, err
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Host" {
			req.Host = header[i+1]
		}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	id := strconv.FormatInt(requestSeq.Add(1), 10)
	req.Header.Set(headerTestID, id)
	res, err := e.client(localIP).Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading the body: %w", err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: string(data), ID: id}, nil
}

// client returns the instance's HTTP client from localIP ("" for the
// system's choice).
func (e *edge) client(localIP string) *http.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.clients[localIP]; c != nil {
		return c
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c := &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, DisableCompression: true},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	e.clients[localIP] = c
	return c
}

// nodeAddr returns the host:port of the OMERO node named name.
func (e *edge) nodeAddr(name string) string {
	for _, n := range e.Cluster.Nodes() {
		if n.Node() == name {
			return n.Addr
		}
	}
	return ""
}

// accessEntry is the part of a Caddy access log line the tests read.
type accessEntry struct {
	Logger  string `json:"logger"`
	Request struct {
		URI     string      `json:"uri"`
		Host    string      `json:"host"`
		Headers http.Header `json:"headers"`
	} `json:"request"`
	Status int `json:"status"`
	// Appended by Caddyfile.example's access_log snippet; null when the
	// placeholder has no value.
	CacheStatus *string `json:"cache_status"`
	Upstream    *string `json:"upstream"`
}

// accessLog returns the access log line of the request, waiting for it
// briefly: Caddy writes it after the response.
func (e *edge) accessLog(t *testing.T, r response) accessEntry {
	t.Helper()
	var entry accessEntry
	testkit.Eventually(t, 3*time.Second, func() string {
		var ok bool
		if entry, ok = e.findAccess(r.ID); !ok {
			return "no access log line for request " + r.ID
		}
		return ""
	})
	return entry
}

func (e *edge) findAccess(id string) (accessEntry, bool) {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return accessEntry{}, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"http.log.access`)) {
			continue
		}
		var entry accessEntry
		if json.Unmarshal(line, &entry) != nil {
			continue
		}
		if entry.Request.Headers.Get(headerTestID) == id {
			return entry, true
		}
	}
	return accessEntry{}, false
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}
