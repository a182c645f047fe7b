package operations_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// soakDuration is how long TestSoak runs: EDGECACHE_SOAK (a Go duration,
// e.g. 10m), else a short run that CI can afford.
func soakDuration(tb testing.TB) time.Duration {
	s := os.Getenv("EDGECACHE_SOAK")
	if s == "" {
		return 16 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		tb.Fatalf("EDGECACHE_SOAK=%q: want a duration of 10s or more, e.g. 10m", s)
	}
	return d
}

const (
	soakClients = 8
	// maxRSSRise bounds the proxy's RSS over the second half of the soak,
	// once the zones are full, against the first half's last fifth.
	maxRSSRise = 0.10
)

// The zones of the soak, each smaller than its URLs' bodies: thumbnails
// in a memory zone, tiles and images in memory over disk, the images over
// the memory tier's largest entry (memory/16), so on disk only.
var soakZones = []soakZone{
	{name: "thumbs", urls: 1500, minSize: 1 << 10, maxSize: 8 << 10, weight: 50},
	{name: "tiles", urls: 800, minSize: 8 << 10, maxSize: 64 << 10, weight: 38},
	{name: "images", urls: 60, minSize: 600 << 10, maxSize: 1 << 20, weight: 12},
}

// soakConfig is the production layout (Caddyfile.example) cut down to
// what the soak exercises, with small zones: a public site with the
// maintenance page (serve_cached) over a pool of two read-only nodes, and
// the cache buster over the read-write node.
func soakConfig(admin, public, refresh int, dir, flag, page string, ro []string, rw string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	servers {
		timeouts {
			read_header 10s
			idle 65s
		}
	}
	edge_cache {
		zone thumbs 4MiB
		zone tiles {
			memory 4MiB
			path %[4]s/tiles
			max_size 6MiB
			inactive 1h
		}
		zone images {
			memory 8MiB
			path %[4]s/images
			max_size 16MiB
			inactive 1h
		}
	}
}

(zone_map) {
	map {http.request.orig_uri.path} {cache_zone} {
		~^/thumbs/ thumbs
		~^/tiles/ tiles
		default images
	}
}

(omero_cache) {
	zone {cache_zone}
	key {http.request.uri}
	valid 200 1h
	ignore_headers Set-Cookie Vary Expires
	hide_headers Set-Cookie
	methods GET HEAD
	status_header X-Cache-Status
}

(error_page) {
	handle_errors 500 502 503 504 {
		respond "soak error page {err.status_code}" {err.status_code}
	}
}

http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	import zone_map
	import error_page
	maintenance {
		flag %[5]s
		page %[6]s
		serve_cached
	}
	edge_cache {
		import omero_cache
		lock on
		lock_age 1m
		lock_timeout 1m
		use_stale error timeout invalid_header updating http_500 http_502 http_503 http_504
		background_update on
	}
	reverse_proxy %[7]s {
		# The clients share one address: ip_hash (production's) would send
		# them all to one node.
		lb_policy round_robin
		# Production's 5s and 10s, shortened so that a restart of every
		# node is over within 2 s of it.
		lb_try_duration 2s
		fail_duration 2s
		max_fails 1
		transport http {
			read_timeout 60s
		}
	}
}

http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	import zone_map
	import error_page
	edge_cache {
		import omero_cache
		refresh
	}
	reverse_proxy %[8]s
}
`, admin, public, refresh, dir, flag, page, strings.Join(ro, " "), rw)
}

// rssSample is the proxy's resident set at a time of the soak.
type rssSample struct {
	at  time.Duration
	rss int64
}

// TestSoak runs the real binary under a mixed load for EDGECACHE_SOAK
// (16 s by default): clients asking for a URL set larger than the zones
// (GET, Range, HEAD), while URLs are refreshed through the cache buster,
// keys and prefixes purged, maintenance turned on and off, and backends
// restarted. Every body is checked against the origin's: its version may
// be any from the one raised before the path's last purge to the current
// one. It wants no wrong body, no answer other than the object's except
// the maintenance page during maintenance and backend errors while every
// read-only node is down (a restart of one node must not show), no
// request reaching the read-only nodes during maintenance, and the proxy's
// RSS flat once the zones are full.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	dir := t.TempDir()
	origin := newSoakOrigin()
	var nodes []*soakNode
	var ro []string
	for range 2 {
		addr, err := testkit.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &soakNode{addr: addr, handler: origin.handler(true)})
		ro = append(ro, addr)
	}
	rwAddr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	rw := &soakNode{addr: rwAddr, handler: origin.handler(false)}
	for _, n := range append([]*soakNode{rw}, nodes...) {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.stop(false) })
	}

	flag := filepath.Join(dir, "maintenance.flag")
	page := filepath.Join(dir, "maintenance.html")
	if err := os.WriteFile(page, []byte("<html><body>soak maintenance page</body></html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	admin, public, refresh := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	cfg := soakConfig(admin, public, refresh, filepath.Join(dir, "zones"), flag, page, ro, rwAddr)
	p := newProxy(t, dir, cfg, admin, public, refresh)

	set := newSoakURLs(soakZones)
	for i, z := range soakZones {
		t.Logf("zone %s: %d URLs, %.1f MiB of bodies", z.name, z.urls, float64(set.total(i))/(1<<20))
	}
	// Every URL once, so that the zones are full (and evicting) from the
	// start, however slowly the clients go (the race detector slows them
	// down tenfold).
	var all []string
	for _, paths := range set.paths {
		all = append(all, paths...)
	}
	fill(t, p, fmt.Sprintf("http://127.0.0.1:%d", public), all, func(path string) []byte {
		size, _, _ := soakSize(path)
		b := make([]byte, size)
		soakBytes(b, path, 0, 0)
		return b
	})

	fl := &floors{m: map[string]int64{}}
	client := &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: soakClients + 4},
		Timeout:   30 * time.Second, // a hung request is a failure, not a hung test
	}
	defer client.CloseIdleConnections()
	events := &soakEvents{
		origin: origin, set: set, floors: fl, client: client,
		public:  fmt.Sprintf("http://127.0.0.1:%d", public),
		refresh: fmt.Sprintf("http://127.0.0.1:%d", refresh),
		admin:   fmt.Sprintf("127.0.0.1:%d", admin),
		flag:    flag,
		nodes:   nodes,
		mainten: windows{slack: 2 * time.Second}, // the flag is looked for once a second
		allDown: windows{slack: 3 * time.Second}, // fail_duration 2s
	}
	tally := newSoakTally()

	started := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range soakClients {
		c := &soakClient{client: client, site: events.public, set: set, origin: origin, floors: fl,
			events: events, tally: tally, rnd: rand.New(rand.NewPCG(uint64(i), uint64(started.UnixNano())))}
		wg.Go(func() { c.run(done) })
	}
	events.start()

	// Sample the RSS; at the middle, the zones must be full.
	interval := min(5*time.Second, max(time.Second, duration/60))
	var samples []rssSample
	var midStats string
	ticker := time.NewTicker(interval)
	for mid := false; ; {
		<-ticker.C
		at := time.Since(started)
		n, err := procMemory(p.pid(), "VmRSS")
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, rssSample{at, n})
		if !mid && at >= duration/2 {
			mid = true
			midStats = zoneFill(t, p)
		}
		if at >= duration {
			break
		}
	}
	ticker.Stop()
	close(done)
	wg.Wait()
	events.stop()
	elapsed := time.Since(started)
	endStats := zoneFill(t, p)

	t.Logf("soak of %s, %d clients: %d requests (%.0f/s), %d refreshes, %d purges (%d entries), %d maintenance toggles, %d backend restarts (%d of every node at once); origin: %d requests",
		elapsed.Round(time.Second), soakClients, tally.requests.Load(), float64(tally.requests.Load())/elapsed.Seconds(),
		events.refreshes.Load(), events.purges.Load(), events.purgedEntries.Load(), events.toggles.Load(),
		events.nodeRestarts.Load(), events.allDownRestarts.Load(), origin.requests.Load())
	t.Logf("answers:\n%s", tally.report())
	t.Logf("zones at the middle: %s", midStats)
	t.Logf("zones at the end:    %s", endStats)
	var rssLine strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&rssLine, " %s:%.1f", s.at.Round(time.Second), float64(s.rss)/(1<<20))
	}
	t.Logf("RSS (MiB) by time:%s", rssLine.String())

	if n := tally.kind(answerWrongBody); n != 0 {
		t.Errorf("%d wrong bodies", n)
	}
	if n := tally.kind(answerUnexpected); n != 0 {
		t.Errorf("%d unexpected answers", n)
	}
	if n := tally.kind(answerRight); n == 0 {
		t.Errorf("no right answer")
	}
	if n := origin.duringMaintenance.Load(); n != 0 {
		t.Errorf("%d requests reached a read-only node during maintenance (serve_cached), first %s", n, *origin.firstDuring.Load())
	}
	if n := events.failed.Load(); n != 0 {
		t.Errorf("%d refreshes, purges or restarts failed: %s", n, strings.Join(events.failures, "; "))
	}
	if events.toggles.Load() == 0 || events.allDownRestarts.Load() == 0 || events.purges.Load() == 0 || events.refreshes.Load() == 0 {
		t.Errorf("the soak missed a kind of event")
	}

	before, after, rise := rssRise(samples, duration)
	t.Logf("RSS: %.1f MiB before the middle, at most %.1f MiB after (%+.1f %%)", float64(before)/(1<<20), float64(after)/(1<<20), 100*rise)
	if rise > maxRSSRise {
		t.Errorf("the proxy's RSS rose by %.1f %% over the second half, want at most %.0f %%", 100*rise, 100*maxRSSRise)
	}
}

// rssRise compares the second half's highest RSS with the highest of
// the first half's last fifth (the zones full by then): flat is a small
// rise.
func rssRise(samples []rssSample, duration time.Duration) (before, after int64, rise float64) {
	for _, s := range samples {
		switch {
		case s.at >= duration*3/10 && s.at < duration/2:
			before = max(before, s.rss)
		case s.at >= duration/2:
			after = max(after, s.rss)
		}
	}
	return before, after, float64(after-before) / float64(before)
}

// zoneFill checks that every zone is full (its disk tier has evicted, or
// its memory tier holds more than half of what it may) and says how full.
func zoneFill(t *testing.T, p *proxy) string {
	t.Helper()
	var b strings.Builder
	for _, z := range soakZones {
		mem := p.metric(t, "edgecache_bytes", `zone="`+z.name+`"`, `tier="memory"`)
		fmt.Fprintf(&b, "%s: memory %.1f MiB", z.name, mem/(1<<20))
		if z.name == "thumbs" {
			if mem < 0.5*0.75*(4<<20) {
				t.Errorf("zone thumbs holds %.1f MiB, not full", mem/(1<<20))
			}
		} else {
			disk := p.metric(t, "edgecache_bytes", `zone="`+z.name+`"`, `tier="disk"`)
			evicted := p.metric(t, "edgecache_disk_evictions_total", `zone="`+z.name+`"`, `reason="max_size"`)
			fmt.Fprintf(&b, ", disk %.1f MiB, %v evicted", disk/(1<<20), evicted)
			if evicted == 0 {
				t.Errorf("zone %s has evicted nothing from disk: not full", z.name)
			}
		}
		b.WriteString("; ")
	}
	return b.String()
}
