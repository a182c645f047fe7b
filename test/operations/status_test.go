package operations_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// statusSetup is a proxy with one memory zone, a site caching objects
// behind a maintenance flag (serve_cached), and the status page's site.
type statusSetup struct {
	*proxy
	site string
	page string // the edge_cache_status site
	flag string // the maintenance flag file (absent)
}

func newStatusSetup(tb testing.TB) *statusSetup {
	tb.Helper()
	dir := tb.TempDir()
	b := newBackend(tb, objects)
	admin, port, page := testkit.FreePort(tb), testkit.FreePort(tb), testkit.FreePort(tb)
	flag := filepath.Join(dir, "maintenance.on")
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		zone objects {
			memory 16MiB
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	maintenance {
		flag %s
		serve_cached
	}
	edge_cache {
		zone objects
		valid 200 1h
		ignore_headers Cache-Control
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	edge_cache_status
}
`, admin, port, flag, b.Addr(), page)
	p := newProxy(tb, dir, cfg, admin, port, page)
	return &statusSetup{proxy: p, site: fmt.Sprintf("http://127.0.0.1:%d", port), page: fmt.Sprintf("http://127.0.0.1:%d", page), flag: flag}
}

func (s *statusSetup) status(tb testing.TB) adminapi.Status {
	tb.Helper()
	r, err := s.get(fmt.Sprintf("http://127.0.0.1:%d%s", s.admin, adminapi.StatusJSONPath))
	if err != nil || r.status != http.StatusOK {
		tb.Fatalf("GET status.json: %v, %d %s", err, r.status, r.body)
	}
	var st adminapi.Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		tb.Fatal(err)
	}
	return st
}

// counted waits until the zone has counted n requests: a request is
// counted once its handler returns, which may be after its client has
// read the whole answer.
func (s *statusSetup) counted(tb testing.TB, n int64) adminapi.Status {
	tb.Helper()
	var st adminapi.Status
	testkit.Eventually(tb, 10*time.Second, func() string {
		st = s.status(tb)
		var sum int64
		for _, c := range st.Zones[0].SinceStart.Requests {
			sum += c
		}
		if sum != n {
			return fmt.Sprintf("%d requests counted, want %d: %v", sum, n, st.Zones[0].SinceStart.Requests)
		}
		return ""
	})
	return st
}

// request makes n requests of path, with Authorization when private.
func (s *statusSetup) request(tb testing.TB, path string, n int, private bool) {
	tb.Helper()
	for range n {
		req, _ := http.NewRequest(http.MethodGet, s.site+path, nil)
		if private {
			req.Header.Set("Authorization", "Bearer x")
		}
		resp, err := s.client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		// Read to the end: a client that hangs up before the body is not
		// counted (its handler aborts).
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
}

// TestStatusAgreesWithMetrics makes N requests of each kind and reads the
// same counts from /metrics, status.json (since start and last minute)
// and `edgecache status`.
func TestStatusAgreesWithMetrics(t *testing.T) {
	s := newStatusSetup(t)
	const keys, hitsPerKey = 7, 4
	for i := range keys {
		s.request(t, objectPath(fmt.Sprint("k", i), 1000+i), 1+hitsPerKey, false)
	}
	s.request(t, objectPath("cold", 10), 3, true) // BYPASS
	s.request(t, objectPath("k0", 1000), 1, true) // BYPASS too
	want := map[string]int64{"MISS": keys, "HIT": keys * hitsPerKey, "BYPASS": 4, "EXPIRED": 0}

	st := s.counted(t, keys*(1+hitsPerKey)+4)
	if len(st.Zones) != 1 || st.Zones[0].Name != "objects" {
		t.Fatalf("zones: %+v", st.Zones)
	}
	z := st.Zones[0]
	for _, status := range []string{"HIT", "MISS", "BYPASS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED"} {
		m := int64(s.metric(t, "edgecache_requests_total", `zone="objects"`, `cache_status="`+status+`"`))
		if m != z.SinceStart.Requests[status] || m != z.LastMinute.Requests[status] {
			t.Errorf("%s: /metrics %d, status.json since start %d, last minute %d", status, m, z.SinceStart.Requests[status], z.LastMinute.Requests[status])
		}
		if w, ok := want[status]; ok && m != w {
			t.Errorf("%s: %d counted, %d made", status, m, w)
		}
	}
	if served := int64(s.metric(t, "edgecache_served_bytes_total", `zone="objects"`)); served != z.SinceStart.ServedBytes || served == 0 {
		t.Errorf("served bytes: /metrics %d, status.json %d", served, z.SinceStart.ServedBytes)
	}
	if entries := int64(s.metric(t, "edgecache_entries", `zone="objects"`, `tier="memory"`)); entries != keys || z.Tiers[0].Entries != keys {
		t.Errorf("entries: /metrics %d, status.json %d, want %d", entries, z.Tiers[0].Entries, keys)
	}
	if r := z.SinceStart.HitRatio; r == nil || *r != float64(keys*hitsPerKey)/float64(keys*(hitsPerKey+1)) {
		t.Errorf("hit ratio %v, want HITs over every request but BYPASS", r)
	}
	if len(z.TopMisses) != keys {
		t.Errorf("top misses: %+v, want the %d keys", z.TopMisses, keys)
	}
	if len(st.Backends) != 1 || !st.Backends[0].Healthy {
		t.Errorf("backends: %+v", st.Backends)
	}
	if len(st.Maintenance) != 1 || st.Maintenance[0].On {
		t.Errorf("maintenance: %+v, want one flag file, off", st.Maintenance)
	}
	if st.Process.Goroutines == 0 || st.Process.MemoryBytes == 0 || st.Process.OpenFiles <= 0 {
		t.Errorf("process: %+v", st.Process)
	}

	// A purge by the CLI is listed, by the CLI.
	if code, out, errOut := command(t, context.Background(), "purge", "--address", fmt.Sprintf("127.0.0.1:%d", s.admin), "--prefix", "/obj/1000/"); code != 0 {
		t.Fatalf("purge: %d %s %s", code, out, errOut)
	}
	ev := s.status(t).Events
	if len(ev) != 1 || ev[0].Kind != "purge prefix" || ev[0].Count != 1 || ev[0].By != "cli" || ev[0].Target != "/obj/1000/" {
		t.Errorf("events after a purge: %+v", ev)
	}

	// The terminal table: the same counts, at most 80 columns.
	code, out, errOut := command(t, context.Background(), "status", "--address", fmt.Sprintf("127.0.0.1:%d", s.admin))
	if code != 0 {
		t.Fatalf("edgecache status: %d %s", code, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("line of %d columns: %q", n, line)
		}
	}
	hits := fmt.Sprint(keys * hitsPerKey)
	if !strings.Contains(out, "ZONE objects") || !containsRow(out, "HIT", hits, hits) || !containsRow(out, "BYPASS", "4", "4") ||
		!strings.Contains(out, "purge prefix") || !strings.Contains(out, "maintenance off") {
		t.Errorf("edgecache status:\n%s", out)
	}
}

// containsRow reports whether text has a line of exactly these fields.
func containsRow(text string, fields ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

// TestStatusPageWithoutScripts: the page carries the tables as text, and
// reloads itself.
func TestStatusPageWithoutScripts(t *testing.T) {
	s := newStatusSetup(t)
	s.request(t, objectPath("a", 10), 2, false)
	s.counted(t, 2)
	r := s.mustGet(t, fmt.Sprintf("http://127.0.0.1:%d%s", s.admin, adminapi.StatusPath))
	page := string(r.body)
	for _, want := range []string{`<meta http-equiv="refresh" content="2">`, "ZONE objects", "/obj/10/a"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, external := range []string{"http://", "https://", "//cdn"} {
		if i := strings.Index(page, external); i >= 0 && !strings.Contains(page[i:i+40], "www.w3.org/2000/svg") {
			t.Errorf("page refers to something outside: %q", page[i:min(len(page), i+60)])
		}
	}
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}
