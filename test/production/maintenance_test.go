package production_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

const maintenanceTitle = "<title>OMERO maintenance</title>"

// isMaintenance describes how r differs from the maintenance page, or
// returns "" if it is the page.
func isMaintenance(r response) string {
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, maintenanceTitle) {
		return fmt.Sprintf("status %d, body %.80q; want 503 with %s", r.Status, r.Body, maintenanceTitle)
	}
	if ra := r.Header.Get("Retry-After"); ra != "300" {
		return fmt.Sprintf("Retry-After %q, want 300 (5m)", ra)
	}
	return ""
}

func touch(t *testing.T, file string) {
	t.Helper()
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, file string) {
	t.Helper()
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
}

// touch starts maintenance, rm ends it, both within 2 s and without a
// reload; static files and the about pages stay up, and (as with nginx)
// even cached OMERO URLs get the page.
func TestMaintenanceFlag(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeConfig{})
	const cached = "/api/v0/m/images/201/"

	if r := e.get(t, e.Public, "/webclient/"); r.Status != http.StatusOK || strings.Contains(r.Body, maintenanceTitle) {
		t.Fatalf("flag off: GET /webclient/: status %d, want the web client", r.Status)
	}
	if r := e.get(t, e.Public, cached); r.Status != http.StatusOK {
		t.Fatalf("flag off: GET %s: status %d", cached, r.Status)
	}

	touch(t, e.Flag)
	took := testkit.Eventually(t, 2*time.Second, func() string {
		return isMaintenance(e.get(t, e.Public, "/webclient/"))
	})
	t.Logf("maintenance on after %s", took)

	for _, uri := range []string{"/webclient/", "/", cached, "/webgateway/render_thumbnail/201/"} {
		if msg := isMaintenance(e.get(t, e.Public, uri)); msg != "" {
			t.Errorf("flag on: GET %s: %s", uri, msg)
		}
	}
	if r := e.get(t, e.Public, "/static/webgateway/css/ome.body.css"); r.Status != http.StatusOK || !strings.Contains(r.Body, "body {") {
		t.Errorf("flag on: GET /static/...: status %d, body %.80q; want the style sheet", r.Status, r.Body)
	}
	if r := e.get(t, e.Public, "/about/"); r.Status != http.StatusOK || strings.Contains(r.Body, maintenanceTitle) {
		t.Errorf("flag on: GET /about/: status %d, body %.80q; want the about page", r.Status, r.Body)
	}
	if r := e.get(t, e.Public, "/about/omero-maintenance.html"); r.Status != http.StatusOK {
		t.Errorf("flag on: GET /about/omero-maintenance.html: status %d, want 200", r.Status)
	}
	// The private ports are for operators and are not affected.
	if r := e.get(t, e.Refresh, "/webclient/"); r.Status != http.StatusOK || r.Header.Get("X-Omero-Node") != "rw" {
		t.Errorf("flag on: GET /webclient/ on the cache buster: status %d, node %q; want 200 from rw", r.Status, r.Header.Get("X-Omero-Node"))
	}

	remove(t, e.Flag)
	took = testkit.Eventually(t, 2*time.Second, func() string {
		if r := e.get(t, e.Public, "/webclient/"); r.Status != http.StatusOK {
			return fmt.Sprintf("GET /webclient/: status %d, want 200", r.Status)
		}
		return ""
	})
	t.Logf("maintenance off after %s", took)
	if r := e.get(t, e.Public, cached); r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("flag off again: GET %s: status %d, X-Cache-Status %q; want 200 HIT", cached, r.Status, r.Header.Get("X-Cache-Status"))
	}
}

// With serve_cached in the maintenance block, cached entries are still
// served during maintenance and a miss gets the page without reaching a
// backend.
func TestMaintenanceServeCached(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "\t\t\tretry_after 5m\n"
	if n := strings.Count(string(example), anchor); n != 1 {
		t.Fatalf("Caddyfile.example has %d lines %q, want 1: update this test", n, anchor)
	}
	modified := strings.Replace(string(example), anchor, anchor+"\t\t\tserve_cached\n", 1)
	// The copy lives elsewhere: the www folder must not be relative.
	modified = strings.ReplaceAll(modified, "{$EDGECACHE_WWW:www}", "{$EDGECACHE_WWW:"+filepath.Join(repoRoot, "www")+"}")
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(modified), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEdge(t, edgeConfig{Dir: dir, Caddyfile: caddyfile})

	const cached, missing = "/webgateway/render_thumbnail/202/", "/webgateway/render_thumbnail/203/"
	stored := e.get(t, e.Public, cached)
	if stored.Status != http.StatusOK || stored.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("flag off: GET %s: status %d, X-Cache-Status %q; want 200 MISS", cached, stored.Status, stored.Header.Get("X-Cache-Status"))
	}

	touch(t, e.Flag)
	testkit.Eventually(t, 2*time.Second, func() string {
		return isMaintenance(e.get(t, e.Public, "/webclient/"))
	})

	hits := e.Cluster.Hits(cached)
	r := e.get(t, e.Public, cached)
	if r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != "HIT" || r.Body != stored.Body {
		t.Errorf("flag on: cached GET %s: status %d, X-Cache-Status %q; want 200 HIT with the stored body", cached, r.Status, r.Header.Get("X-Cache-Status"))
	}
	if e.Cluster.Hits(cached) != hits {
		t.Errorf("flag on: the cached GET reached a backend")
	}
	if msg := isMaintenance(e.get(t, e.Public, missing)); msg != "" {
		t.Errorf("flag on: uncached GET %s: %s", missing, msg)
	}
	if n := e.Cluster.Hits(missing); n != 0 {
		t.Errorf("flag on: the miss reached a backend %d times", n)
	}

	remove(t, e.Flag)
	testkit.Eventually(t, 2*time.Second, func() string {
		if r := e.get(t, e.Public, missing); r.Status != http.StatusOK {
			return fmt.Sprintf("GET %s: status %d, want 200", missing, r.Status)
		}
		return ""
	})
}
