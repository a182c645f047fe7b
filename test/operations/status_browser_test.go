package operations_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgecache/edgecache/internal/testkit"
)

// chromium finds a headless Chromium: Debian's chromium-headless-shell
// (which .ci/run installs), else a full Chromium. Without one the test is
// skipped, or fails with CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no headless Chromium: install chromium-headless-shell (apt-get install chromium-headless-shell)")
	}
	t.Skip("no headless Chromium (apt-get install chromium-headless-shell)")
	return ""
}

// artifactDir is where tests keep what a person looks at afterwards:
// $EDGECACHE_ARTIFACTS, else edgecache-artifacts in the temp folder.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("EDGECACHE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "edgecache-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hitsOnPage reads the page's "since start" count of HIT, as shown.
const hitsOnPage = `(() => {
  const t = [...document.querySelectorAll("table")].find(t => t.caption && t.caption.textContent.startsWith("Requests by cache status"));
  const r = t && [...t.tBodies[0].rows].find(r => r.cells[0].textContent === "HIT");
  return r ? r.cells[2].textContent : "";
})()`

// TestStatusPageInBrowser loads the status page in headless Chromium: it
// renders with no console error, its counts follow requests, and the
// maintenance flag shows within the page's 2 s. The screenshot is kept
// (status-page.png in artifactDir).
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	s := newStatusSetup(t)
	s.request(t, objectPath("a", 2000), 3, false)
	s.request(t, objectPath("b", 500), 1, false)
	s.request(t, objectPath("c", 10), 2, true)
	s.counted(t, 6)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	// Every warning, error and exception of the page, as the DevTools
	// console shows them.
	var (
		mu       sync.Mutex
		problems []string
	)
	if _, err := chromedp.Run(ctx, chromedp.Title()); err != nil { // starts the browser
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				mu.Unlock()
			}
		}
	}()
	url := s.page + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("caption"))); err != nil {
		t.Fatal(err)
	}
	hits := func() string {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](hitsOnPage))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if before := hits(); before != "2" {
		t.Errorf("HIT since start on the page: %q, want 2", before)
	}
	state := func() string {
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#state")))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	if st := state(); !strings.Contains(st, "Maintenance: off") {
		t.Errorf("state line: %q", st)
	}

	// The counts follow requests, at the next refresh.
	s.request(t, objectPath("a", 2000), 5, false)
	took := testkit.Eventually(t, 5*time.Second, func() string {
		if h := hits(); h != "7" {
			return fmt.Sprintf("HIT since start on the page: %q, want 7", h)
		}
		return ""
	})
	t.Logf("the page showed 5 more hits after %v", took.Round(time.Millisecond))

	// The maintenance flag, within the page's 2 s cadence (plus a second
	// for a loaded machine: the time is logged).
	if err := os.WriteFile(s.flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	took = testkit.Eventually(t, 3*time.Second, func() string {
		if st := state(); !strings.Contains(st, "Maintenance: ON") {
			return fmt.Sprintf("state line %q, want maintenance on", st)
		}
		return ""
	})
	t.Logf("the page showed the maintenance flag %v after it was set", took.Round(time.Millisecond))
	if title, err := chromedp.Run(ctx, chromedp.Title()); err != nil || !strings.Contains(title, "MAINTENANCE") {
		t.Errorf("title %q (%v), want it to say maintenance", title, err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifactDir(t), "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the browser: %s", p)
	}
}
