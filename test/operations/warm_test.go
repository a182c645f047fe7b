package operations_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestWarm fills a disk zone with `edgecache warm` through a refresh site,
// and checks the public site on the same zone then answers from the cache;
// a failing URL makes the run exit 1 and is listed; an interrupted run
// (SIGINT, exit 130) is resumed by the same command without fetching any
// URL more than twice.
func TestWarm(t *testing.T) {
	var delay atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(delay.Load()))
		if strings.HasPrefix(r.URL.Path, "/fail") {
			http.Error(w, "backend failure", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "body of %s", r.URL.RequestURI())
	})
	dir := t.TempDir()
	admin, public, refresh := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	cfg := diskZoneGlobal(admin, filepath.Join(dir, "zone"), "64MiB") +
		cachedSite(public, "disk", b.Addr(), "") + cachedSite(refresh, "disk", b.Addr(), "refresh")
	p := newProxy(t, dir, cfg, admin, public, refresh)
	publicSite := fmt.Sprintf("http://127.0.0.1:%d", public)
	via := fmt.Sprintf("http://127.0.0.1:%d", refresh)

	writeList := func(name string, lines []string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// warmed checks each URI is a HIT on the public site with its body.
	warmed := func(uris []string) {
		t.Helper()
		for _, uri := range uris {
			r := p.mustGet(t, publicSite+uri)
			if r.cache != "HIT" || string(r.body) != "body of "+uri {
				t.Errorf("GET %s on the public site after warming: %s %q, want a HIT with its body", uri, r.cache, r.body)
			}
		}
	}

	// A complete run: paths and full URLs (only their path and query count).
	var uris, lines []string
	for i := range 10 {
		uri := fmt.Sprintf("/webclient/render_thumbnail/%d/?size=96", i)
		uris = append(uris, uri)
		if i%2 == 0 {
			lines = append(lines, uri)
		} else {
			lines = append(lines, "https://idr.example.org"+uri)
		}
	}
	list := writeList("urls.txt", append([]string{"# thumbnails", ""}, lines...))
	code, out, errOut := command(t, context.Background(), "warm", "--from", list, "--via", via, "--concurrency", "4", "--no-progress")
	if code != 0 {
		t.Fatalf("warm: exit %d, want 0:\n%s%s", code, out, errOut)
	}
	warmed(uris)
	for _, uri := range uris {
		if n := b.RequestsFor(strings.SplitN(uri, "?", 2)[0]); n != 1 {
			t.Errorf("%s: %d backend requests, want 1 (the warm, then HITs)", uri, n)
		}
	}
	if _, err := os.Stat(list + ".warm-state"); !os.IsNotExist(err) {
		t.Errorf("the state file is left after a complete run: %v", err)
	}

	// One URL fails: exit 1, listed on stderr and in the failure list.
	failing := writeList("failing.txt", []string{"/fail/1", "/ok/1", "/ok/2"})
	code, out, errOut = command(t, context.Background(), "warm", "--from", failing, "--via", via, "--concurrency", "4", "--retries", "0", "--no-progress")
	if code != 1 {
		t.Errorf("warm with a failing URL: exit %d, want 1:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "line 1 /fail/1: HTTP 500") {
		t.Errorf("warm does not list the failed URL with its error:\n%s", errOut)
	}
	if failed, err := os.ReadFile(failing + ".warm-failed"); err != nil || !bytes.Contains(failed, []byte("\n/fail/1\n")) {
		t.Errorf("failure list: %q, %v; want it to hold /fail/1", failed, err)
	}
	warmed([]string{"/ok/1", "/ok/2"})

	// A slow run interrupted with SIGINT, then resumed.
	var slow []string
	for i := range 24 {
		slow = append(slow, fmt.Sprintf("/slow/%d", i))
	}
	slowList := writeList("slow.txt", slow)
	delay.Store(int64(150 * time.Millisecond))
	args := []string{"warm", "--from", slowList, "--via", via, "--concurrency", "4", "--no-progress"}
	cmd := exec.Command(edgecacheBin, args...)
	var interrupted testkit.LockedBuffer // read by the wait below while the process writes
	cmd.Stdout, cmd.Stderr = &interrupted, &interrupted
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	fetched := func() int {
		n := 0
		for _, uri := range slow {
			n += b.RequestsFor(uri)
		}
		return n
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if n := fetched(); n < 8 {
			return fmt.Sprintf("the slow warm fetched %d URLs:\n%s", n, interrupted.String())
		}
		return ""
	})
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("interrupted warm: %v, exit %d, want 130:\n%s", err, code, interrupted.String())
	}
	if got := fetched(); got >= len(slow) {
		t.Fatalf("the interrupted warm had fetched all %d URLs: interrupt it sooner", got)
	}
	delay.Store(0)
	code, out, errOut = command(t, context.Background(), args...)
	if code != 0 {
		t.Fatalf("resumed warm: exit %d, want 0:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "were done by an earlier run") {
		t.Errorf("the second run did not resume:\n%s", errOut)
	}
	warmed(slow)
	for _, uri := range slow {
		if n := b.RequestsFor(uri); n < 1 || n > 2 {
			t.Errorf("%s: %d backend requests over the two runs, want 1 or 2", uri, n)
		}
	}
}
