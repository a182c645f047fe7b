// Package operations_test runs the real edgecache binary against test
// backends to check what operators rely on: the disk tier surviving restarts
// and crashes, flushing and losing the zone folder while running, memory use
// with huge bodies, purges under load, and warming.
package operations_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/edgecache/edgecache/internal/testkit"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// edgecacheBin is the edgecache command built once by TestMain.
var edgecacheBin string

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, &edgecacheBin)) }

// proxy is an edgecache process run from a Caddyfile, restartable on the
// same configuration (same ports, same zone folders).
type proxy struct {
	tb      testing.TB
	dir     string // XDG folders and the Caddyfile
	config  string // Caddyfile path
	admin   int    // admin port
	ports   []int  // site ports to wait for
	log     *testkit.LockedBuffer
	client  *http.Client
	runs    int
	process *testkit.Process
}

// newProxy writes the Caddyfile and starts edgecache on it. The process is
// killed when the test ends; its output is shown if the test failed.
func newProxy(tb testing.TB, dir, caddyfile string, admin int, sitePorts ...int) *proxy {
	tb.Helper()
	p := &proxy{tb: tb, dir: dir, config: filepath.Join(dir, "Caddyfile"), admin: admin, ports: sitePorts,
		log:    new(testkit.LockedBuffer),
		client: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}},
	}
	if err := os.WriteFile(p.config, []byte(caddyfile), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Logf("edgecache output:\n%s", p.log.String())
		}
	})
	p.start()
	return p
}

// start runs the process and waits until the admin endpoint and every site
// accept connections.
func (p *proxy) start() {
	p.tb.Helper()
	p.runs++
	fmt.Fprintf(p.log, "----- start %d -----\n", p.runs)
	var listen []string
	for _, port := range append([]int{p.admin}, p.ports...) {
		listen = append(listen, "127.0.0.1:"+strconv.Itoa(port))
	}
	process, err := testkit.Start(testkit.Command{
		Args: []string{"run", "--config", p.config, "--adapter", "caddyfile"},
		Env: append(os.Environ(),
			"XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
			"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"),
			"HOME="+p.dir,
		),
		Output: p.log,
		Listen: listen,
	})
	if err != nil {
		p.tb.Fatalf("%v\n%s", err, p.log.String())
	}
	p.process = process
}

// stop ends the process as an operator would (SIGTERM) and waits for it.
func (p *proxy) stop() {
	p.tb.Helper()
	err := p.process.Stop(syscall.SIGTERM, 20*time.Second)
	p.client.CloseIdleConnections()
	if err != nil {
		p.tb.Fatal(err)
	}
}

// kill ends the process at once (SIGKILL), as a crash or an OOM kill does.
func (p *proxy) kill() {
	if p.process == nil {
		return
	}
	p.process.Kill()
	p.client.CloseIdleConnections()
}

// pid returns the running process's id.
func (p *proxy) pid() int { return p.process.Cmd.Process.Pid }

// result is one answer of the proxy.
type result struct {
	status int
	cache  string // X-Cache-Status
	body   []byte
	header http.Header
}

// get requests url and reads the whole body; a transport error or a body
// cut short is an error.
func (p *proxy) get(url string) (result, error) {
	return getWith(p.client, url)
}

func getWith(client *http.Client, url string) (result, error) {
	resp, err := client.Get(url)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("GET %s: %s, body cut after %d bytes: %v", url, resp.Status, len(body), err)
	}
	return result{status: resp.StatusCode, cache: resp.Header.Get("X-Cache-Status"), body: body, header: resp.Header}, nil
}

// mustGet is get, failing the test on an error or a status other than 200.
func (p *proxy) mustGet(tb testing.TB, url string) result {
	tb.Helper()
	r, err := p.get(url)
	if err != nil {
		tb.Fatal(err)
	}
	if r.status != http.StatusOK {
		tb.Fatalf("GET %s: status %d, body %.200q", url, r.status, r.body)
	}
	return r
}

// metric returns the sum of the samples of a metric on the admin
// endpoint's /metrics whose labels include every given label="value".
func (p *proxy) metric(tb testing.TB, name string, labels ...string) float64 {
	tb.Helper()
	r, err := getWith(p.client, fmt.Sprintf("http://127.0.0.1:%d/metrics", p.admin))
	if err != nil {
		tb.Fatal(err)
	}
	if r.status != http.StatusOK {
		tb.Fatalf("GET /metrics: status %d: %s", r.status, r.body)
	}
	sum, found, err := testkit.SumMetric(string(r.body), name, labels...)
	if err != nil {
		tb.Fatal(err)
	}
	if !found {
		tb.Fatalf("no metric %s%v in /metrics", name, labels)
	}
	return sum
}

// command runs an edgecache subcommand (purge, cache-keys, warm) and
// returns its exit code and output.
func command(tb testing.TB, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	tb.Helper()
	cmd := exec.CommandContext(ctx, edgecacheBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	case err != nil:
		tb.Fatalf("edgecache %s: %v", strings.Join(args, " "), err)
	}
	return 0, out.String(), errOut.String()
}

// newBackend starts a test backend serving with serve.
func newBackend(tb testing.TB, serve http.HandlerFunc) *testkit.Backend {
	return testkit.NewBackend(tb, func(w http.ResponseWriter, r *http.Request, _ int64) { serve(w, r) })
}

// objectPath is the path of an object of the given size: objects serves it.
func objectPath(name string, size int) string { return fmt.Sprintf("/obj/%d/%s", size, name) }

// objects serves /obj/<size>/<name> with content(path, 0, size) and its
// Content-Length.
func objects(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/obj/"), "/", 2)
	size, err := strconv.Atoi(parts[0])
	if err != nil || len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.Header().Set("Cache-Control", "no-store")
	w.Write(content(r.URL.Path, 0, size))
}

// content is the deterministic body of a key: size pseudo-random bytes
// seeded by the key and a version, so that a body of another key, another
// version, or bytes in the wrong place are told apart.
func content(key string, version, size int) []byte {
	seed := sha256.Sum256([]byte(key + "\x00" + strconv.Itoa(version)))
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	if size >= 8 {
		binary.BigEndian.PutUint64(b, uint64(version))
	}
	return b
}

// diskZoneGlobal is the global options block with one disk zone.
func diskZoneGlobal(admin int, zoneDir, maxSize string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		zone disk {
			memory 8MiB
			path %s
			max_size %s
			inactive 1h
		}
	}
}
`, admin, zoneDir, maxSize)
}

// cachedSite is a site caching in zone with the production settings.
func cachedSite(port int, zone, backendAddr string, extra string) string {
	return fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	edge_cache {
		zone %s
		valid 200 1h
		ignore_headers Cache-Control Set-Cookie
		%s
	}
	reverse_proxy %s
}
`, port, zone, extra, backendAddr)
}

// diskSetup is a proxy with one disk zone (8 MiB memory tier, so bodies over
// 512 KiB are on disk only) and one public site.
type diskSetup struct {
	*proxy
	zoneDir string
	site    string // http://127.0.0.1:port
}

func newDiskSetup(tb testing.TB, b *testkit.Backend, maxSize string) *diskSetup {
	tb.Helper()
	dir := tb.TempDir()
	zoneDir := filepath.Join(dir, "zone")
	admin, port := testkit.FreePort(tb), testkit.FreePort(tb)
	cfg := diskZoneGlobal(admin, zoneDir, maxSize) + cachedSite(port, "disk", b.Addr(), "")
	p := newProxy(tb, dir, cfg, admin, port)
	return &diskSetup{proxy: p, zoneDir: zoneDir, site: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// tempFiles lists the temporary files in the zone folder's root.
func tempFiles(tb testing.TB, zoneDir string) []string {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(zoneDir, ".tmp-*"))
	if err != nil {
		tb.Fatal(err)
	}
	return names
}

// entryFiles counts the entry files under the zone folder.
func entryFiles(tb testing.TB, zoneDir string) int {
	tb.Helper()
	n := 0
	err := filepath.WalkDir(zoneDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && len(d.Name()) == 32 {
			n++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
