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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

var edgecacheBin string

func TestMain(m *testing.M) { os.Exit(testkit.Run(m, &edgecacheBin)) }

// nginxBinary returns nginx's path. Without it the test is skipped, except
// under CI=true, where it fails: .ci/run installs nginx-light.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed (apt-get install nginx-light); CI needs it")
	}
	t.Skip("nginx is not installed (apt-get install nginx-light)")
	return ""
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// process is a server started by the test, in its own process group so
// that stopping it reaches its children (nginx's workers), and killed when
// the test ends.
type process struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
}

func start(t *testing.T, name string, cmd *exec.Cmd, ports ...int) *process {
	t.Helper()
	p := &process{t: t, name: name, cmd: cmd, log: new(lockedBuffer), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.log.String())
		}
	})
	waitPorts(t, p, ports...)
	return p
}

func waitPorts(t *testing.T, p *process, ports ...int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range ports {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-p.exited:
				t.Fatalf("%s exited at start:\n%s", p.name, p.log.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not listen on %d after 30s:\n%s", p.name, port, p.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// signal signals the whole process group.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// stop sends sig and waits for the process to end.
func (p *process) stop(sig syscall.Signal) {
	p.t.Helper()
	p.signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.signal(syscall.SIGKILL)
		p.t.Fatalf("%s did not stop within 20s", p.name)
	}
	// nginx's workers may outlive their master for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-p.cmd.Process.Pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
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
