package operations_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// fill requests every path once through the proxy with a few workers and
// checks each answer is a MISS with the right body.
func fill(tb testing.TB, p *proxy, site string, paths []string, want func(path string) []byte) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	next := make(chan string)
	for range 8 {
		wg.Go(func() {
			for path := range next {
				r, err := p.get(site + path)
				switch {
				case err != nil:
					errs <- err
				case r.status != http.StatusOK || r.cache != "MISS":
					errs <- fmt.Errorf("first GET %s: status %d, cache %q; want 200 MISS", path, r.status, r.cache)
				case !bytes.Equal(r.body, want(path)):
					errs <- fmt.Errorf("first GET %s: wrong body (%d bytes)", path, len(r.body))
				}
			}
		})
	}
	for _, path := range paths {
		next <- path
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Error(err)
	}
	if tb.Failed() {
		tb.FailNow()
	}
}

// objectBody is the body objects serves for path, computed once.
func objectBody(path string) []byte {
	if b, ok := objectBodies.Load(path); ok {
		return b.([]byte)
	}
	b, _ := objectBodies.LoadOrStore(path, makeObjectBody(path))
	return b.([]byte)
}

var objectBodies sync.Map

func makeObjectBody(path string) []byte {
	var size int
	var name string
	fmt.Sscanf(strings.ReplaceAll(path, "/", " "), " obj %d %s", &size, &name)
	return content(path, 0, size)
}

// TestRestartKeepsEntries stops the proxy with SIGTERM and starts it again
// on the same zone folder: every entry, small or larger than the memory
// tier's per-entry limit, is a HIT with its body, and the backend sees no
// new request.
func TestRestartKeepsEntries(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")

	var paths []string
	for i, size := range []int{0, 1, 100, 4 << 10, 64 << 10, 300 << 10, 512 << 10, 512<<10 + 1} {
		paths = append(paths, objectPath(fmt.Sprintf("small%d", i), size))
	}
	for i := range 4 {
		// Over the 512 KiB limit of an 8 MiB memory tier: on disk only.
		paths = append(paths, objectPath(fmt.Sprintf("large%d", i), 2<<20+i))
	}
	fill(t, s.proxy, s.site, paths, objectBody)
	for _, path := range paths {
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" || !bytes.Equal(r.body, objectBody(path)) {
			t.Fatalf("second GET %s: cache %q, %d bytes; want a HIT with the body", path, r.cache, len(r.body))
		}
	}
	fetched := b.Requests()

	s.stop()
	s.start()
	for _, path := range paths {
		r := s.mustGet(t, s.site+path)
		if r.cache != "HIT" {
			t.Errorf("after restart, GET %s: cache %q, want HIT", path, r.cache)
		}
		if !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("after restart, GET %s: wrong body (%d bytes, want %d)", path, len(r.body), len(objectBody(path)))
		}
		if got := r.header.Get("Content-Length"); got != fmt.Sprint(len(objectBody(path))) {
			t.Errorf("after restart, GET %s: Content-Length %q, want %d", path, got, len(objectBody(path)))
		}
	}
	if n := b.Requests(); n != fetched {
		t.Errorf("the backend got %d requests after the restart, want none", n-fetched)
	}
	if tmp := tempFiles(t, s.zoneDir); len(tmp) > 0 {
		t.Errorf("temporary files left in the zone folder: %v", tmp)
	}
}

// TestEntryFoundWhileIndexRebuilds restarts on a zone of many entries and
// asks for some at once, while the index rebuild may still run: they are
// HITs. Once it has run, cache-keys lists exactly the stored keys, page
// after page.
func TestEntryFoundWhileIndexRebuilds(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")

	const n = 2000
	paths := make([]string, n)
	for i := range paths {
		paths[i] = objectPath(fmt.Sprintf("k%04d", i), 512)
	}
	fill(t, s.proxy, s.site, paths, objectBody)
	fetched := b.Requests()

	s.stop()
	s.start()
	// The very first requests after the start, before anything else.
	for i := 0; i < n; i += n / 20 {
		path := paths[n-1-i]
		r := s.mustGet(t, s.site+path)
		if r.cache != "HIT" || !bytes.Equal(r.body, objectBody(path)) {
			t.Errorf("right after restart, GET %s: cache %q, %d bytes; want a HIT with the body", path, r.cache, len(r.body))
		}
	}
	loading := s.metric(t, "edgecache_disk_loading", `zone="disk"`)
	t.Logf("index rebuild still running after the first requests: %v", loading == 1)
	if got := b.Requests(); got != fetched {
		t.Errorf("the backend got %d requests after the restart, want none", got-fetched)
	}

	testkit.Eventually(t, 30*time.Second, func() string {
		if s.metric(t, "edgecache_disk_loading", `zone="disk"`) != 0 {
			return "the index rebuild of 2000 entries has not ended"
		}
		return ""
	})
	if got := s.metric(t, "edgecache_entries", `zone="disk"`, `tier="disk"`); got != n {
		t.Errorf("edgecache_entries{tier=disk} = %v after the rebuild, want %d", got, n)
	}

	admin := fmt.Sprintf("127.0.0.1:%d", s.admin)
	code, out, errOut := command(t, context.Background(), "cache-keys", "--address", admin, "--zone", "disk")
	if code != 0 {
		t.Fatalf("cache-keys: exit %d: %s", code, errOut)
	}
	listed := strings.Fields(out)
	slices.Sort(listed)
	if !slices.Equal(listed, paths) { // paths are in key order
		t.Errorf("cache-keys listed %d keys, want the %d stored (first listed: %.80q)", len(listed), n, out)
	}
	code, out, errOut = command(t, context.Background(), "cache-keys", "--address", admin, "--zone", "disk",
		"--prefix", "/obj/512/k19", "--limit", "7")
	// A disk zone lists in the order of the keys' MD5 (docs/configuration.md,
	// "Zones"): 7 distinct keys under the prefix, the first 7 of that order.
	under := slices.Clone(paths[1900:2000])
	slices.SortFunc(under, func(a, b string) int {
		ha, hb := md5.Sum([]byte(a)), md5.Sum([]byte(b))
		return bytes.Compare(ha[:], hb[:])
	})
	if want := strings.Join(under[:7], "\n") + "\n"; code != 0 || out != want {
		t.Errorf("cache-keys --prefix /obj/512/k19 --limit 7: exit %d, output %q (%s); want %q", code, out, errOut, want)
	}
}

// slowObjects serves like objects, but in 32 KiB chunks with a pause (ns)
// after each, so that a response takes a while to fill. sent, if not nil,
// is told how many chunks of path went out, after each.
func slowObjects(pause *atomic.Int64, sent func(path string, chunks int)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body := objectBody(r.URL.Path)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(body); off += 32 << 10 {
			if _, err := w.Write(body[off:min(off+32<<10, len(body))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if sent != nil {
				sent(r.URL.Path, off/(32<<10)+1)
			}
			time.Sleep(time.Duration(pause.Load()))
		}
	}
}

// TestKillDuringWritesThenRestart kills the proxy (SIGKILL) while many
// responses are being stored, then starts it again: every key is answered
// with its complete body, from the cache (a store that had ended) or the
// backend, never a truncated or mixed one; the crash leaves no temporary
// files behind.
func TestKillDuringWritesThenRestart(t *testing.T) {
	var mu sync.Mutex
	streamed := map[string]int{} // chunks sent, by slow path
	var pause atomic.Int64
	pause.Store(int64(15 * time.Millisecond))
	b := newBackend(t, slowObjects(&pause, func(path string, chunks int) {
		if strings.Contains(path, "/slow") {
			mu.Lock()
			streamed[path] = chunks
			mu.Unlock()
		}
	}))
	s := newDiskSetup(t, b, "64MiB")

	var done, slow []string
	for i := range 8 {
		done = append(done, objectPath(fmt.Sprintf("done%d", i), (i+1)*150<<10)) // ends before the kill
	}
	for i := range 24 {
		slow = append(slow, objectPath(fmt.Sprintf("slow%d", i), (i%6+1)*400<<10)) // 400 KiB to 2.4 MiB: 13 to 75 chunks
	}
	fill(t, s.proxy, s.site, done, objectBody)

	// Two clients per slow key: one fills, one waits for the fill.
	var wg sync.WaitGroup
	for _, path := range slow {
		for range 2 {
			wg.Go(func() {
				resp, err := s.client.Get(s.site + path)
				if err == nil {
					io.Copy(io.Discard, resp.Body) // cut by the kill
					resp.Body.Close()
				}
			})
		}
	}
	// Kill well into the bodies (6 chunks of each sent; the shortest has
	// 13), none finished.
	testkit.Eventually(t, 20*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, chunks := range streamed {
			if chunks >= 6 {
				n++
			}
		}
		if n < len(slow) {
			return fmt.Sprintf("only %d of %d slow responses sent 6 chunks", n, len(slow))
		}
		return ""
	})
	s.kill()
	wg.Wait()
	pause.Store(0) // refetches are quick
	if leftovers := tempFiles(t, s.zoneDir); len(leftovers) == 0 {
		t.Errorf("no temporary file in the zone folder after the kill: the test did not kill during writes")
	}

	s.start()
	before := b.Requests()
	all := append(append([]string(nil), done...), slow...)
	hits := 0
	for _, path := range all {
		r, err := s.get(s.site + path)
		if err != nil {
			t.Errorf("after the crash: %v", err)
			continue
		}
		switch {
		case r.status != http.StatusOK:
			t.Errorf("after the crash, GET %s: status %d", path, r.status)
		case r.cache != "HIT" && r.cache != "MISS":
			t.Errorf("after the crash, GET %s: cache %q, want HIT or MISS", path, r.cache)
		case !bytes.Equal(r.body, objectBody(path)):
			t.Errorf("after the crash, GET %s (%s): wrong body: %d bytes, want %d", path, r.cache, len(r.body), len(objectBody(path)))
		}
		if r.cache == "HIT" {
			hits++
		}
	}
	for _, path := range done {
		if r := s.mustGet(t, s.site+path); r.cache != "HIT" {
			t.Errorf("GET %s, stored before the crash: cache %q, want HIT", path, r.cache)
		}
	}
	t.Logf("after the crash: %d HITs, %d refetched", hits, b.Requests()-before)
	if leftovers := tempFiles(t, s.zoneDir); len(leftovers) > 0 {
		t.Errorf("temporary files of the killed process left after the restart: %v", leftovers)
	}
}
