// Package nginximport_test fills a cache with the real nginx (Debian's
// nginx-light) under production's cache rules, imports it with the real
// edgecache binary (`edgecache import-nginx`), stopped and running, and
// checks what edgecache then serves.
package nginximport_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

var edgecacheBin string

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, &edgecacheBin)) }

// nginxProcess is nginx run by the test, in its own process group so that
// stopping it reaches its workers, and killed when the test ends.
type nginxProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    bytes.Buffer // read once the process has exited
	exited chan struct{}
}

func startNginx(t *testing.T, nginx, prefix string, port int) *nginxProcess {
	t.Helper()
	p := &nginxProcess{t: t, exited: make(chan struct{})}
	p.cmd = exec.Command(nginx, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-g", "daemon off;")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", p.out.String(), errLog)
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	testkit.Eventually(t, 30*time.Second, func() string {
		select {
		case <-p.exited:
			return "" // reported below
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return ""
		}
		return "nginx does not listen on " + addr
	})
	select {
	case <-p.exited:
		t.Fatalf("nginx exited at start:\n%s", p.out.String())
	default:
	}
	return p
}

// signal signals the whole process group.
func (p *nginxProcess) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// stop sends sig and waits until nginx and its workers have ended.
func (p *nginxProcess) stop(sig syscall.Signal) {
	p.t.Helper()
	p.signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.signal(syscall.SIGKILL)
		p.t.Fatalf("nginx did not stop within 20s")
	}
	// The workers may outlive their master for a moment.
	testkit.Eventually(p.t, 10*time.Second, testkit.Holds("nginx's workers have exited", func() bool {
		return syscall.Kill(-p.cmd.Process.Pid, 0) != nil
	}))
}

// startEdgecache runs `edgecache run` on a Caddyfile until the test ends.
func startEdgecache(t *testing.T, dir string, args []string, addrs ...string) *testkit.Process {
	t.Helper()
	out := new(bytes.Buffer) // read once the process has exited
	p, err := testkit.Start(testkit.Command{Args: append([]string{"run"}, args...), Env: edgecacheEnv(dir), Output: out, Listen: addrs})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("edgecache output:\n%s", out)
		}
	})
	return p
}

func edgecacheEnv(dir string) []string {
	return append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
}

// answer is one response, whole.
type answer struct {
	status int
	cache  string
	header http.Header
	body   []byte
}

var client = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func get(t *testing.T, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return answer{status: resp.StatusCode, cache: resp.Header.Get("X-Cache-Status"), header: resp.Header, body: body}
}

// runImport runs `edgecache import-nginx` and returns its output.
func runImport(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(edgecacheBin, append([]string{"import-nginx", "--no-progress"}, args...)...)
	cmd.Env = edgecacheEnv(dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// skippedCount reads "skipped <reason>: N" from a summary.
func skippedCount(summary, reasonPrefix string) int {
	for _, line := range strings.Split(summary, "\n") {
		rest, ok := strings.CutPrefix(line, "skipped "+reasonPrefix)
		if !ok {
			continue
		}
		if i := strings.LastIndex(rest, ": "); i >= 0 {
			n, _ := strconv.Atoi(rest[i+2:])
			return n
		}
	}
	return 0
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fill(s string, args ...any) string {
	r := s
	for i := 0; i+1 < len(args); i += 2 {
		r = strings.ReplaceAll(r, fmt.Sprint(args[i]), fmt.Sprint(args[i+1]))
	}
	return r
}
