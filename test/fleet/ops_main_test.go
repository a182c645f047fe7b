// Package fleet_test runs fleets of real edgecache processes sharing a
// real Redis (a single node or a 3-master Cluster): purges and refreshes
// reaching every proxy, a proxy cut off from Redis catching up.
package fleet_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// edgecacheBin is the edgecache command built once by TestMain.
var edgecacheBin string

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, &edgecacheBin)) }

// origin counts requests and answers "<version> <path>": a test changes
// the version to tell a refreshed or purged entry from the old one.
type origin struct {
	*testkit.Backend
	version atomic.Int64
}

func newOrigin(t testing.TB) *origin {
	o := &origin{}
	o.version.Store(1)
	o.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "v%d %s", o.version.Load(), r.URL.Path)
	})
	return o
}

// want is the body the origin answers now for path.
func (o *origin) want(path string) string { return fmt.Sprintf("v%d %s", o.version.Load(), path) }

// lockedBuffer collects a process's output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// member is one edgecache process of a test fleet.
type member struct {
	name                   string
	public, refresh, admin int
	log                    *lockedBuffer
	process                *testkit.Process
	client                 *http.Client
}

// startOpsFleet starts n edgecache processes named proxy-a, proxy-b, …,
// member i reaching Redis at redis(i) (a single node's address, or a
// Cluster's seeds), each with a disk zone of its own (thumbs) and a
// cache-buster listener, all in front of o. They stop when the test ends.
func startOpsFleet(t *testing.T, o *origin, n int, redis func(i int) []string) []*member {
	t.Helper()
	members := make([]*member, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		m := &member{name: "proxy-" + string(rune('a'+i)), public: testkit.FreePort(t), refresh: testkit.FreePort(t), admin: testkit.FreePort(t),
			log: new(lockedBuffer), client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
		members[i] = m
		dir := t.TempDir()
		cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	grace_period 1s
	edge_cache {
		shared {
			redis %s
			node %s
			timeout 1s
		}
		zone thumbs {
			memory 16MiB
			path %s
		}
	}
}
http://127.0.0.1:%d {
	edge_cache {
		zone thumbs
		valid 200 1h
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	edge_cache {
		zone thumbs
		refresh
		valid 200 1h
	}
	reverse_proxy %s
}
`, m.admin, strings.Join(redis(i), " "), m.name, filepath.Join(dir, "thumbs"), m.public, o.Addr(), m.refresh, o.Addr())
		config := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(config, []byte(cf), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var listen []string
			for _, p := range []int{m.admin, m.public, m.refresh} {
				listen = append(listen, "127.0.0.1:"+strconv.Itoa(p))
			}
			m.process, errs[i] = testkit.Start(testkit.Command{
				Args:   []string{"run", "--config", config, "--adapter", "caddyfile"},
				Env:    append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir),
				Output: m.log,
				Listen: listen,
			})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range members {
			if m.process != nil {
				_ = m.process.Stop(syscall.SIGTERM, 10*time.Second)
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", m.name, m.log.String())
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v\n%s", members[i].name, err, members[i].log.String())
		}
	}
	return members
}

// answer is one response of a member.
type answer struct {
	status int
	cache  string
	body   string
}

func (m *member) get(t testing.TB, port int, path string) answer {
	t.Helper()
	resp, err := m.client.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		t.Fatalf("%s GET %s: %v", m.name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s GET %s: %v", m.name, path, err)
	}
	return answer{resp.StatusCode, resp.Header.Get("X-Cache-Status"), string(body)}
}

// edgecache runs the edgecache command with args against m's admin API.
func (m *member) edgecache(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(edgecacheBin, append(args, "--address", "127.0.0.1:"+strconv.Itoa(m.admin))...).CombinedOutput()
	if err != nil {
		t.Fatalf("edgecache %s on %s: %v\n%s", strings.Join(args, " "), m.name, err, out)
	}
	return string(out)
}

// singleRedis is every member's Redis: one node.
func singleRedis(r *testkit.Redis) func(int) []string {
	return func(int) []string { return []string{r.Addr} }
}
