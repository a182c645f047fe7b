package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/internal/testkit"
)

const metricsSite = `{
	admin off
	persist_config off
	edge_cache {
		zone default 16MiB
	}
}
http://127.0.0.1:{PORT} {
	metrics /metrics
	edge_cache {
		valid 200 1h
		ignore_headers Cache-Control Set-Cookie
		private_cookies login
	}
	reverse_proxy {BACKEND}
}`

// scrape returns the value of every sample of the edgecache metrics, keyed
// by name and labels as Prometheus prints them.
func scrape(t *testing.T, base string) map[string]string {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	samples := make(map[string]string)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "edgecache_") {
			i := strings.LastIndexByte(line, ' ')
			samples[line[:i]] = line[i+1:]
		}
	}
	return samples
}

func TestMetricsAfterScriptedRequests(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, metricsSite, b.URL)
	get(base + "/a")                              // MISS
	get(base + "/a")                              // HIT
	get(base + "/a")                              // HIT
	get(base + "/b")                              // MISS
	get(base+"/a", "Cookie", "login=1")           // BYPASS
	get(base+"/c", "Authorization", "Basic eDp5") // BYPASS
	b.mode.Store("503")
	get(base + "/d") // MISS, 503 not stored (no valid line for it)

	m := scrape(t, base)
	want := map[string]string{
		`edgecache_requests_total{cache_status="HIT",zone="default"}`:      "2",
		`edgecache_requests_total{cache_status="MISS",zone="default"}`:     "3",
		`edgecache_requests_total{cache_status="BYPASS",zone="default"}`:   "2",
		`edgecache_stored_total{zone="default"}`:                           "2",
		`edgecache_not_stored_total{reason="status",zone="default"}`:       "1",
		`edgecache_served_bytes_total{zone="default"}`:                     fmt.Sprint(2 * len("version 0 of /a")),
		`edgecache_entries{tier="memory",zone="default"}`:                  "2",
		`edgecache_backend_fetch_seconds_count{zone="default"}`:            "3",
		`edgecache_backend_errors_total{reason="http_5xx",zone="default"}`: "1",
		// Present at 0 from the start, for alerts (rate() of a series that
		// appears only at its first event misses that event).
		`edgecache_backend_errors_total{reason="error",zone="default"}`:     "0",
		`edgecache_backend_errors_total{reason="timeout",zone="default"}`:   "0",
		`edgecache_not_stored_total{reason="set_cookie",zone="default"}`:    "0",
		`edgecache_not_stored_total{reason="too_large",zone="default"}`:     "0",
		`edgecache_lock_timeouts_total{zone="default"}`:                     "0",
		`edgecache_bypassed_total{reason="private",zone="default"}`:         "2",
		`edgecache_bypassed_total{reason="request_body",zone="default"}`:    "0",
		`edgecache_bypassed_total{reason="method_override",zone="default"}`: "0",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if v, err := strconv.ParseFloat(m["edgecache_memory_limit_bytes"], 64); err != nil || v <= 0 {
		t.Errorf("edgecache_memory_limit_bytes = %q, want a positive number", m["edgecache_memory_limit_bytes"])
	}
	for k := range m {
		if strings.Contains(k, "-") {
			t.Errorf("%s: label values are snake_case", k)
		}
	}
	if t.Failed() {
		t.Logf("scraped: %v", m)
	}
}

// TestBackendErrorsByKind: a backend that cannot be reached counts as an
// error, one that answers 5xx as http_5xx.
func TestBackendErrorsByKind(t *testing.T) {
	b := newFaultyBackend(t)
	base := loadCaddyfile(t, metricsSite, b.URL)
	b.mode.Store("503")
	get(base + "/x")
	b.mode.Store("reset")
	get(base + "/y")
	m := scrape(t, base)
	for k, v := range map[string]string{
		`edgecache_backend_errors_total{reason="http_5xx",zone="default"}`: "1",
		`edgecache_backend_errors_total{reason="error",zone="default"}`:    "1",
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
}

// TestMetricsSurviveReload loads the same config twice, as a reload does:
// no duplicate-registration error, and the counters carry on.
func TestMetricsSurviveReload(t *testing.T) {
	b := newFaultyBackend(t)
	cfg, base := adaptCaddyfile(t, metricsSite, b.URL)
	for range 2 {
		if err := caddy.Load(cfg, true); err != nil {
			t.Fatalf("load: %v", err)
		}
		t.Cleanup(func() { _ = caddy.Stop() })
		// A connection the old config's server accepted as it shut down
		// ends with EOF and no answer, uncounted (seen on the code before
		// this test was made strict too): the client tries again, as a
		// browser does for a GET.
		http.DefaultClient.CloseIdleConnections()
		for range 2 {
			a := get(base + "/a")
			if a.err != nil {
				a = get(base + "/a")
			}
			if a.err != nil || a.code != http.StatusOK {
				t.Fatalf("GET /a: %d %v", a.code, a.err)
			}
		}
	}
	// A request is counted once its answer is written: the client may
	// have the last byte a moment before.
	testkit.Eventually(t, 5*time.Second, func() string {
		m := scrape(t, base)
		if got := m[`edgecache_requests_total{cache_status="HIT",zone="default"}`]; got != "3" {
			var all []string
			for k, v := range m {
				if strings.HasPrefix(k, "edgecache_requests_total") && v != "0" {
					all = append(all, k+" "+v)
				}
			}
			return fmt.Sprintf("HIT count after reload 3, carried on (have %q; %v)", got, all)
		}
		return ""
	})
}
