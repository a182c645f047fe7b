package operations_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// hammering is readers requesting URLs in a loop.
type hammering struct {
	mu       sync.Mutex
	failures []string
	done     atomic.Bool
	wg       sync.WaitGroup
	answers  atomic.Int64
	urls     int
}

const hammerers = 4

// hammer requests urls in a loop from a few goroutines, each going through
// them in order, until stop. check judges each answer (err is a transport
// error or a body cut short) and returns a failure, or "".
func hammer(p *proxy, urls []string, check func(url string, start time.Time, r result, err error) string) *hammering {
	h := &hammering{urls: len(urls)}
	for g := range hammerers {
		h.wg.Go(func() {
			for i := g; !h.done.Load(); i++ {
				url := urls[i%len(urls)]
				start := time.Now()
				r, err := p.get(url)
				h.answers.Add(1)
				if msg := check(url, start, r, err); msg != "" {
					h.mu.Lock()
					h.failures = append(h.failures, msg)
					h.mu.Unlock()
				}
			}
		})
	}
	return h
}

// checkObject wants a 200 with the body of objects.
func checkObject(site string) func(url string, _ time.Time, r result, err error) string {
	return func(url string, _ time.Time, r result, err error) string {
		path := strings.TrimPrefix(url, site)
		switch {
		case err != nil:
			return err.Error()
		case r.status != http.StatusOK:
			return fmt.Sprintf("GET %s: status %d (%s)", path, r.status, r.cache)
		case !bytes.Equal(r.body, objectBody(path)):
			return fmt.Sprintf("GET %s: wrong body (%s, %d bytes)", path, r.cache, len(r.body))
		}
		return ""
	}
}

// rounds waits until every URL has been requested at least n more times.
func (h *hammering) rounds(tb testing.TB, n int) {
	tb.Helper()
	// Each reader goes through the URLs in order: once hammerers times
	// the URLs are answered, one reader went through all of them.
	target := h.answers.Load() + int64(n*hammerers*h.urls)
	testkit.Eventually(tb, 30*time.Second, func() string {
		if got := h.answers.Load(); got < target {
			return fmt.Sprintf("the readers answered %d of %d requests", got, target)
		}
		return ""
	})
}

// takeFailures returns the failures seen so far and forgets them.
func (h *hammering) takeFailures() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.failures
	h.failures = nil
	return f
}

// stop ends the readers and returns the failures not yet taken.
func (h *hammering) stop() []string {
	h.done.Store(true)
	h.wg.Wait()
	if h.answers.Load() == 0 {
		return []string{"no request was answered"}
	}
	return h.takeFailures()
}

// flushPaths are the objects of the flush tests: some small enough for the
// memory tier, some on disk only.
func flushPaths() (small, large []string) {
	for i := range 6 {
		small = append(small, objectPath(fmt.Sprintf("small%d", i), 10<<10+i))
		large = append(large, objectPath(fmt.Sprintf("large%d", i), 1<<20+i))
	}
	return small, large
}

// removeContents is `rm -rf dir/*`.
func removeContents(tb testing.TB, dir string) {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range names {
		// The proxy may write under it meanwhile ("directory not
		// empty"): do as an operator would, and run rm again.
		for try := 0; ; try++ {
			err := os.RemoveAll(name)
			if err == nil {
				break
			}
			if try == 10 {
				tb.Fatal(err)
			}
		}
	}
}

// TestFullFlushWhileRunning deletes the zone folder's contents, then the
// folder itself, under the running proxy: requests keep being answered
// correctly, and what is on disk only is fetched again and stored again.
func TestFullFlushWhileRunning(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	small, large := flushPaths()
	all := append(append([]string(nil), small...), large...)
	fill(t, s.proxy, s.site, all, objectBody)

	// rm -rf <zone>/*, a few times, with readers hammering every key.
	urls := make([]string, len(all))
	for i, path := range all {
		urls[i] = s.site + path
	}
	readers := hammer(s.proxy, urls, checkObject(s.site))
	readers.rounds(t, 1)
	const flushes = 10
	for range flushes {
		removeContents(t, s.zoneDir)
		readers.rounds(t, 1) // every key asked for again before the next flush
	}
	waitFlushSeen(t, s.zoneDir)
	readers.rounds(t, 2)
	for _, f := range readers.stop() {
		t.Errorf("during the flush: %s", f)
	}
	for _, path := range large {
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s after the flush: cache %q, %d bytes; want a HIT with the body", path, r.cache, len(r.body))
		}
		// A removal takes the file; the flush being seen (once a second)
		// drops what was stored since the removal began: two at most each.
		if n := b.RequestsFor(path); n < 2 || n > 1+2*flushes {
			t.Errorf("%s: %d backend requests, want the fill and two per flush at most (%d)", path, n, flushes)
		}
	}
	if n := entryFiles(t, s.zoneDir); n < len(large) {
		t.Errorf("%d entry files on disk after the flush and the requests, want at least %d", n, len(large))
	}

	// rm -rf <zone>: the folder itself goes. (The proxy may re-create it
	// while rm is at work, and rm then fails: the operator runs it again.)
	testkit.Eventually(t, 10*time.Second, testkit.Holds("rm -rf zone to succeed", func() bool { return os.RemoveAll(s.zoneDir) == nil }))
	waitFlushSeen(t, s.zoneDir)
	for _, path := range large {
		before := b.RequestsFor(path)
		if r := s.mustGet(t, s.site+path); r.cache != "MISS" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s, folder removed: cache %q, %d bytes; want a MISS with the body", path, r.cache, len(r.body))
		}
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s again, folder removed: cache %q, %d bytes; want a HIT with the body", path, r.cache, len(r.body))
		}
		if n := b.RequestsFor(path) - before; n != 1 {
			t.Errorf("%s: %d backend requests after the folder was removed, want 1", path, n)
		}
	}
	for _, path := range small {
		if r := s.mustGet(t, s.site+path); !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s, folder removed: wrong body (%s)", path, r.cache)
		}
	}
	if n := entryFiles(t, s.zoneDir); n < len(large) {
		t.Errorf("%d entry files in the re-created zone folder, want at least %d", n, len(large))
	}
}

// TestFullFlushReachesMemory: after `rm -rf <zone>/*`, the zone serves no
// entry from before, from memory or from disk, within 2 s, with no restart.
func TestFullFlushReachesMemory(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	small, large := flushPaths()
	all := append(append([]string(nil), small...), large...)
	fill(t, s.proxy, s.site, all, objectBody)
	for _, path := range all {
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" {
			t.Fatalf("GET %s before the flush: %s, want a HIT", path, r.cache)
		}
	}
	before := make(map[string]int)
	for _, path := range all {
		before[path] = b.RequestsFor(path)
	}
	removeContents(t, s.zoneDir)
	flushed := time.Now()
	// One small path (a memory hit until the flush is seen) is asked until
	// the backend is asked again.
	probe := small[0]
	for {
		r := s.mustGet(t, s.site+probe)
		if r.cache == "MISS" {
			break
		}
		if r.cache != "HIT" || !bytes.Equal(r.body, objectBody(probe)) {
			t.Fatalf("GET %s during the flush: %s, %d bytes", probe, r.cache, len(r.body))
		}
		if time.Since(flushed) > 2*time.Second {
			t.Fatalf("GET %s still a HIT %v after rm -rf zone/*", probe, time.Since(flushed))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the flush reached memory after %v", time.Since(flushed).Round(time.Millisecond))
	// Every other entry is gone too: each is fetched once, then cached again.
	for _, path := range all {
		if path == probe {
			continue
		}
		if r := s.mustGet(t, s.site+path); r.cache != "MISS" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s after the flush: %s; want a MISS with the body", path, r.cache)
		}
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" {
			t.Errorf("GET %s again after the flush: %s; want a HIT", path, r.cache)
		}
		if n := b.RequestsFor(path) - before[path]; n != 1 {
			t.Errorf("%s: %d backend requests after the flush, want 1", path, n)
		}
	}
	// What the proxy needs is back: the marker, and the lock file (a
	// dotfile, which rm -rf zone/* leaves).
	for _, name := range []string{"CACHEDIR.TAG", ".edgecache.lock"} {
		if _, err := os.Stat(filepath.Join(s.zoneDir, name)); err != nil {
			t.Errorf("%s after the flush: %v", name, err)
		}
	}
}

// waitFlushSeen waits until the proxy has seen the zone folder emptied:
// it writes the flush marker again.
func waitFlushSeen(tb testing.TB, zoneDir string) {
	tb.Helper()
	testkit.Eventually(tb, 10*time.Second, testkit.Holds("the flush to be seen", func() bool {
		_, err := os.Stat(filepath.Join(zoneDir, "CACHEDIR.TAG"))
		return err == nil
	}))
}

// entryDir is the level folder (levels 1:2) holding key's entry file.
func entryDir(zoneDir, key string) string {
	sum := md5.Sum([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(zoneDir, h[31:], h[29:31])
}

// TestZoneFolderUnwritable makes the zone folder, then one level folder, a
// regular file while the proxy runs (tests run as root: permissions would
// not stop writes): requests are still proxied, and
// edgecache_disk_write_errors_total counts the failed stores. When the
// folder comes back, stores resume.
func TestZoneFolderUnwritable(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	writeErrors := func() float64 { return s.metric(t, "edgecache_disk_write_errors_total", `zone="disk"`) }
	if n := writeErrors(); n != 0 {
		t.Fatalf("%v disk write errors at start", n)
	}

	if err := os.RemoveAll(s.zoneDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.zoneDir, []byte("not a folder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	smallPath, largePath := objectPath("small", 20<<10), objectPath("large", 1<<20)
	attempts := 0
	for _, path := range []string{smallPath, largePath, largePath} {
		r := s.mustGet(t, s.site+path)
		attempts++
		if r.cache != "MISS" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("GET %s, zone folder a file: cache %q, %d bytes; want a MISS with the body", path, r.cache, len(r.body))
		}
	}
	// The memory tier still works.
	if r := s.mustGet(t, s.site+smallPath); r.cache != "HIT" || !bytes.Equal(r.body, objectBody(smallPath)) {
		t.Errorf("GET %s again: cache %q; want a HIT from memory", smallPath, r.cache)
	}
	if n := writeErrors(); n < float64(attempts) {
		t.Errorf("edgecache_disk_write_errors_total = %v after %d failed stores", n, attempts)
	}

	// The folder comes back (empty): stores resume.
	if err := os.Remove(s.zoneDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.zoneDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MISS", "HIT"} {
		if r := s.mustGet(t, s.site+largePath); r.cache != want || !bytes.Equal(r.body, objectBody(largePath)) {
			t.Errorf("GET %s, folder back: cache %q, %d bytes; want a %s with the body", largePath, r.cache, len(r.body), want)
		}
	}

	// One level folder is a file: only the keys under it fail to store.
	blocked := objectPath("blocked", 1<<20)
	levelDir := entryDir(s.zoneDir, blocked)
	if err := os.MkdirAll(filepath.Dir(levelDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(levelDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := writeErrors()
	for range 2 {
		if r := s.mustGet(t, s.site+blocked); r.cache != "MISS" || !bytes.Equal(r.body, objectBody(blocked)) {
			t.Errorf("GET %s, level folder a file: cache %q, %d bytes; want a MISS with the body", blocked, r.cache, len(r.body))
		}
	}
	if n := writeErrors() - before; n < 2 {
		t.Errorf("edgecache_disk_write_errors_total grew by %v after 2 failed stores", n)
	}
	if tmp := tempFiles(t, s.zoneDir); len(tmp) > 0 {
		t.Errorf("failed stores left temporary files: %v", tmp)
	}
	if !strings.Contains(s.log.String(), "disk cache: cannot store an entry") {
		t.Errorf("the failed stores were not logged")
	}
}
