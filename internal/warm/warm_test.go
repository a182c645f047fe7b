package warm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// newBackend is a testkit.Backend whose handle is also given the number
// of requests for the request's URI so far (from 1); handle may be nil for
// a plain 200.
func newBackend(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, hit int)) *testkit.Backend {
	t.Helper()
	var b *testkit.Backend
	b = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		if handle != nil {
			handle(w, r, b.RequestsForURI(r.RequestURI))
			return
		}
		fmt.Fprintf(w, "body of %s", r.RequestURI)
	})
	return b
}

// writeList writes a URL list and returns its path.
func writeList(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "urls.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func paths(n int) []string {
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("/webclient/render_thumbnail/%d/", i))
	}
	return lines
}

// testOptions returns options with short waits for tests.
func testOptions(list, via string) Options {
	return Options{URLsFile: list, Via: via, Concurrency: 4, Retries: 3,
		Timeout: 5 * time.Second, RetryWait: time.Millisecond, MaxRetryWait: 5 * time.Millisecond}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestRunAllSucceed(t *testing.T) {
	b := newBackend(t, nil)
	lines := append([]string{"# thumbnails", ""}, paths(40)...)
	lines = append(lines, "  https://idr.openmicroscopy.org/webgateway/render_image/1/0/0/?c=1|0:255$FF0000&m=c  ", "")
	list := writeList(t, lines...)

	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total != 41 || sum.Succeeded != 41 || len(sum.Failed) != 0 || sum.Interrupted || sum.Skipped != 0 {
		t.Fatalf("summary %+v", sum)
	}
	for _, p := range paths(40) {
		if n := b.RequestsForURI(p); n != 1 {
			t.Errorf("%s fetched %d times, want 1", p, n)
		}
	}
	if n := b.RequestsForURI("/webgateway/render_image/1/0/0/?c=1|0:255$FF0000&m=c"); n != 1 {
		t.Errorf("full URL: path and query fetched %d times, want 1; requests %v", n, b.Seen())
	}
	if b.Requests() != 41 {
		t.Errorf("%d requests, want 41", b.Requests())
	}
	hosts := map[string]bool{}
	for _, r := range b.Seen() {
		hosts[r.Host] = true
	}
	if len(hosts) != 1 || !hosts[b.Addr()] {
		t.Errorf("Host headers %v, want the via host only", hosts)
	}
	if sum.Bytes == 0 {
		t.Error("no body bytes counted")
	}
	if exists(list+StateSuffix) || sum.StateFile != "" {
		t.Error("state file kept after a complete run")
	}
	if exists(list+FailedSuffix) || sum.FailedFile != "" {
		t.Error("failure list written without failures")
	}
}

func TestRunFailingURL(t *testing.T) {
	broken := atomic.Bool{}
	broken.Store(true)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		switch {
		case r.URL.Path == "/bad" && broken.Load():
			http.Error(w, "backend down", http.StatusInternalServerError)
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		default:
			w.Write([]byte("ok"))
		}
	})
	list := writeList(t, append(paths(10), "/bad", "/missing", "webclient/no-slash")...)

	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 10 || len(sum.Failed) != 3 {
		t.Fatalf("summary %+v", sum)
	}
	want := []struct {
		line     int
		url      string
		attempts int
		err      string
	}{
		{11, "/bad", 4, "HTTP 500"},
		{12, "/missing", 1, "HTTP 404"},
		{13, "webclient/no-slash", 0, "want a path starting with /"},
	}
	for i, w := range want {
		f := sum.Failed[i]
		if f.Line != w.line || f.URL != w.url || f.Attempts != w.attempts || !strings.Contains(f.Err.Error(), w.err) {
			t.Errorf("failure %d: got line %d %q attempts %d err %v; want %+v", i, f.Line, f.URL, f.Attempts, f.Err, w)
		}
	}
	if n := b.RequestsForURI("/bad"); n != 4 {
		t.Errorf("/bad fetched %d times, want 1 + 3 retries", n)
	}
	if n := b.RequestsForURI("/missing"); n != 1 {
		t.Errorf("/missing fetched %d times, 404 must not be retried", n)
	}
	failed, err := os.ReadFile(list + FailedSuffix)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"# line 11: HTTP 500 Internal Server Error (4 attempts)\n/bad\n", "\n/missing\n", "\nwebclient/no-slash\n"} {
		if !bytes.Contains(failed, []byte(s)) {
			t.Errorf("failure list lacks %q:\n%s", s, failed)
		}
	}
	if sum.StateFile == "" || !exists(sum.StateFile) {
		t.Fatal("state file removed although URLs failed")
	}

	// the next run retries only what failed
	broken.Store(false)
	sum, err = Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 10 || sum.Succeeded != 1 || len(sum.Failed) != 2 {
		t.Fatalf("second run summary %+v", sum)
	}
	if n := b.RequestsForURI("/bad"); n != 5 {
		t.Errorf("/bad fetched %d times in all, want 5", n)
	}
	if n := b.RequestsForURI(paths(1)[0]); n != 1 {
		t.Errorf("a done URL was fetched again (%d times)", n)
	}
}

func TestRunFlakyURLSucceeds(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		if r.URL.Path == "/flaky" && hit <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Write([]byte("ok"))
	})
	list := writeList(t, "/flaky", "/steady")
	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 2 || len(sum.Failed) != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if n := b.RequestsForURI("/flaky"); n != 3 {
		t.Errorf("/flaky fetched %d times, want 3", n)
	}
}

func TestRunRetriesTooManyRequests(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		if hit == 1 {
			// capped by MaxRetryWait, or the test would wait an hour
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte("ok"))
	})
	list := writeList(t, "/busy")
	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 1 || b.RequestsForURI("/busy") != 2 {
		t.Fatalf("summary %+v, hits %d", sum, b.RequestsForURI("/busy"))
	}
}

func TestRunTimeoutAndConnectionErrors(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	list := writeList(t, "/slow")
	opts := testOptions(list, b.URL)
	opts.Timeout = 50 * time.Millisecond
	opts.Retries = 1
	sum, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 1 || sum.Failed[0].Attempts != 2 || !strings.Contains(sum.Failed[0].Err.Error(), "no complete response within 50ms") {
		t.Fatalf("summary %+v", sum)
	}
	// Attempts counts the tries; the backend may not have seen a try whose
	// 50 ms ran out before it arrived (a loaded machine), but never more.
	if n := b.RequestsForURI("/slow"); n > 2 {
		t.Errorf("/slow fetched %d times, want at most 2", n)
	}

	// nothing listening
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts = testOptions(list, "http://"+addr)
	opts.Retries = 2
	sum, err = Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 1 || sum.Failed[0].Attempts != 3 || !strings.Contains(sum.Failed[0].Err.Error(), "connection refused") {
		t.Fatalf("summary %+v, err %v", sum, sum.Failed[0].Err)
	}
}

func TestRunInterruptAndResume(t *testing.T) {
	const concurrency, total, completeFirst = 4, 40, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var (
		firstRun atomic.Bool
		served   atomic.Int64
		mu       sync.Mutex
		inFlight = map[string]bool{} // blocked when the run was cancelled
	)
	firstRun.Store(true)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		if firstRun.Load() && served.Add(1) > completeFirst {
			mu.Lock()
			inFlight[r.RequestURI] = true
			if len(inFlight) == concurrency {
				cancel() // like Ctrl-C while every worker waits
			}
			mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Write([]byte("ok"))
	})
	list := writeList(t, paths(total)...)
	opts := testOptions(list, b.URL)
	opts.Concurrency = concurrency

	sum, err := Run(ctx, opts)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Interrupted || sum.Succeeded != completeFirst || len(sum.Failed) != 0 {
		t.Fatalf("first run summary %+v", sum)
	}
	if !exists(sum.StateFile) {
		t.Fatal("no state file after an interruption")
	}

	firstRun.Store(false)
	sum, err = Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Interrupted || sum.Skipped != completeFirst || sum.Succeeded != total-completeFirst {
		t.Fatalf("resumed run summary %+v", sum)
	}
	for _, p := range paths(total) {
		want := 1
		if inFlight[p] {
			want = 2
		}
		if n := b.RequestsForURI(p); n != want {
			t.Errorf("%s fetched %d times, want %d (in flight at cancel: %v)", p, n, want, inFlight[p])
		}
	}
	if n := b.Requests(); n != total+concurrency {
		t.Errorf("%d requests in all, want %d", n, total+concurrency)
	}
}

func TestRunHonoursConcurrency(t *testing.T) {
	const concurrency = 3
	var current, peak atomic.Int64
	var arrived atomic.Int64
	all := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		n := current.Add(1)
		defer current.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		// the first requests wait for each other, so that full
		// concurrency is reached; the others overlap by sleeping
		if a := arrived.Add(1); a <= concurrency {
			if a == concurrency {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(5 * time.Second):
			}
		}
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	list := writeList(t, paths(30)...)
	opts := testOptions(list, b.URL)
	opts.Concurrency = concurrency
	sum, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 30 {
		t.Fatalf("summary %+v", sum)
	}
	if p := peak.Load(); p != concurrency {
		t.Errorf("at most %d requests in flight, want %d", p, concurrency)
	}
}

func TestRunIgnoresPartialStateLine(t *testing.T) {
	// one URL fails, so that the state is kept afterwards
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		if r.RequestURI == paths(5)[4] {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	list := writeList(t, paths(5)...)
	info, err := scanList(list)
	if err != nil {
		t.Fatal(err)
	}
	// lines 1 and 2 done; the record of line 3 was cut by a crash
	state := stateHeaderPrefix + info.fingerprint + "\n1\n2\n3"
	if err := os.WriteFile(list+StateSuffix, []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 2 || sum.Succeeded != 2 || len(sum.Failed) != 1 {
		t.Fatalf("summary %+v", sum)
	}
	for i, p := range paths(5) {
		want := 1
		if i < 2 {
			want = 0
		}
		if n := b.RequestsForURI(p); n != want {
			t.Errorf("line %d fetched %d times, want %d", i+1, n, want)
		}
	}
	// the cut line was dropped, not glued to the next number
	data, err := os.ReadFile(list + StateSuffix)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if lines[0] != stateHeaderPrefix+info.fingerprint || lines[len(lines)-1] != "" {
		t.Fatalf("state file %q", data)
	}
	entries := lines[1 : len(lines)-1]
	slices.Sort(entries)
	if got := strings.Join(entries, ","); got != "1,2,3,4" {
		t.Errorf("state entries %q, want 1,2,3,4 each on a line", got)
	}
}

func TestRunStateOfAnotherList(t *testing.T) {
	b := newBackend(t, nil)
	list := writeList(t, paths(3)...)
	stateFile := list + StateSuffix
	if err := os.WriteFile(stateFile, []byte(stateHeaderPrefix+"sha256:0000\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), testOptions(list, b.URL)); err == nil || !strings.Contains(err.Error(), "--restart") {
		t.Fatalf("error %v, want one about the list having changed", err)
	}
	if b.Requests() != 0 {
		t.Error("requests sent despite the error")
	}

	opts := testOptions(list, b.URL)
	opts.Restart = true
	sum, err := Run(context.Background(), opts)
	if err != nil || sum.Succeeded != 3 || sum.Skipped != 0 {
		t.Fatalf("restart: summary %+v, error %v", sum, err)
	}
}

func TestRunKeepsAFileThatIsNotState(t *testing.T) {
	b := newBackend(t, nil)
	list := writeList(t, paths(3)...)
	for _, content := range []string{"precious notes\nmore\n", "precious"} {
		other := filepath.Join(t.TempDir(), "notes.txt")
		if err := os.WriteFile(other, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(list, b.URL)
		opts.StateFile = other
		if _, err := Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "not a warm state file") {
			t.Fatalf("error %v, want not a warm state file", err)
		}
		if data, _ := os.ReadFile(other); string(data) != content {
			t.Errorf("file changed to %q", data)
		}
	}
}

func TestRunBadOptions(t *testing.T) {
	list := writeList(t, "/a")
	for _, o := range []Options{
		{URLsFile: list},
		{URLsFile: list, Via: "127.0.0.1:9000"},
		{URLsFile: list, Via: "ftp://host"},
		{URLsFile: list, Via: "http://h", Retries: -1},
		{URLsFile: list, Via: "http://h", Concurrency: -2},
		{URLsFile: list + ".missing", Via: "http://h"},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("options %+v: no error", o)
		}
	}
}

func TestTarget(t *testing.T) {
	via := func(s string) Options { return Options{URLsFile: "x", Via: s} }
	for _, c := range []struct{ via, entry, want string }{
		{"http://127.0.0.1:9000", "/webclient/?a=1", "http://127.0.0.1:9000/webclient/?a=1"},
		{"http://127.0.0.1:9000/", "/a%2Fb/c", "http://127.0.0.1:9000/a%2Fb/c"},
		{"http://127.0.0.1:9000/prefix/", "https://idr.example/api/v0/?x=1#frag", "http://127.0.0.1:9000/prefix/api/v0/?x=1"},
		{"https://[::1]:8009", "http://idr.example", "https://[::1]:8009/"},
	} {
		_, u, err := via(c.via).withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		got, err := target(u, c.entry)
		if err != nil || got != c.want {
			t.Errorf("target(%s, %s) = %q, %v; want %q", c.via, c.entry, got, err, c.want)
		}
	}
	_, u, _ := via("http://h").withDefaults()
	for _, bad := range []string{"webclient/x", "ftp://h/x", "/a\x7f"} {
		if _, err := target(u, bad); err == nil {
			t.Errorf("target(%q): no error", bad)
		}
	}
}

func TestRunStoresRedirectsWithoutFollowing(t *testing.T) {
	var encodings sync.Map
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, hit int) {
		encodings.Store(r.RequestURI, r.Header.Get("Accept-Encoding"))
		if r.URL.Path == "/webclient/login" {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
			return
		}
		w.Write([]byte("ok"))
	})
	list := writeList(t, "/webclient/login", "/api/v0/")
	sum, err := Run(context.Background(), testOptions(list, b.URL))
	if err != nil || sum.Succeeded != 2 {
		t.Fatalf("summary %+v, error %v", sum, err)
	}
	if b.Requests() != 2 {
		t.Errorf("requests %v: the redirect was followed", b.Seen())
	}
	encodings.Range(func(uri, enc any) bool {
		if enc != "" {
			t.Errorf("%s sent with Accept-Encoding %q; the identity encoding is wanted", uri, enc)
		}
		return true
	})
}

// Rate spaces the requests: 11 at 50 per second are released over 200
// ms; the backend sees them over at least 150 ms (the first one's
// connection set-up may delay it; unbounded, they take a few ms).
func TestRunHonoursRate(t *testing.T) {
	b := newBackend(t, nil)
	opts := testOptions(writeList(t, paths(11)...), b.URL)
	opts.Rate = 50
	sum, err := Run(context.Background(), opts)
	if err != nil || sum.Succeeded != 11 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	seen := b.Seen()
	first, last := seen[0].At, seen[0].At
	for _, r := range seen {
		if r.At.Before(first) {
			first = r.At
		}
		if r.At.After(last) {
			last = r.At
		}
	}
	if d := last.Sub(first); d < 150*time.Millisecond {
		t.Errorf("11 requests at 50/s took %s from first to last, want at least 200ms", d)
	}
	opts.Rate = -1
	if _, err := Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Errorf("a negative rate: %v", err)
	}
}
