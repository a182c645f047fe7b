package fleet_test

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// Invalidations by unsafe requests (RFC 9111 §4.4) in a fleet: only what
// some tier holds is published, anonymous traffic cannot push purges out
// of the log, a proxy that missed events keeps what Redis proves current,
// invalidate_unsafe off, and variants found without a SCAN.

// post sends a POST to the public site and returns its status.
func (p *proxy) post(t *testing.T, path string) int {
	t.Helper()
	resp, err := p.client.Post(p.URL+path, "text/plain", strings.NewReader("change"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// signal sends sig to the proxy's process (SIGSTOP pauses it, as a
// restart or a stall would, SIGCONT lets it run again).
func (p *proxy) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.process.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// zoneFiles counts the entry files in the proxy's disk zone (diskZone),
// dotfiles left out.
func (p *proxy) zoneFiles(t *testing.T) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(p.dir, "cache"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAnonymousPostsKeepFleetCache is the attack at a smaller
// scale: B is paused (as in a restart) while anonymous clients send A
// thousands of POSTs to unique URLs under a cached path, each answered 200
// by the backend, after a real purge. None of those URLs is held by any
// tier: nothing is published, the log does not grow, and B, resumed,
// applies the purge, keeps every other entry of its disk zone and serves
// them as hits. (Before: each POST appended an event; past the log's
// 100,000-entry cap, the trimmed log made B drop its whole zone.)
func TestAnonymousPostsKeepFleetCache(t *testing.T) {
	r := testkit.StartRedis(t)
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: o.Addr(), Zones: diskZone})
	a, b := ps[0], ps[1]
	const hot = 40
	for i := range hot {
		path := "/api/v0/m/images/" + strconv.Itoa(i) + "/"
		a.mustGet(t, path)
		b.mustGet(t, path) // from Redis, or the origin if A's store is not there yet
		if got := b.mustGet(t, path); got.cache != "HIT" {
			t.Fatalf("B %s: %s", path, got.cache)
		}
	}
	files := b.zoneFiles(t)
	if files < hot {
		t.Fatalf("B's zone holds %d files, want at least %d", files, hot)
	}

	b.signal(t, syscall.SIGSTOP)
	// A real purge first: the flood must not push it out of the log.
	o.bump()
	const purged = "/api/v0/m/images/1/"
	a.edgecache(t, "purge", "--key", purged)
	const posts, workers = 3000, 8
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > posts {
					return
				}
				resp, err := a.client.Post(a.URL+"/api/v0/m/images/anon-"+strconv.FormatInt(i, 10)+"/", "text/plain", strings.NewReader("x"))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.signal(t, syscall.SIGCONT)
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d POSTs failed", n)
	}
	xlen, _ := r.CLI("XLEN", "edgecache:events")
	published := a.metric(t, "edgecache_fleet_events_published_total")
	unheld := a.metric(t, "edgecache_fleet_invalidations_unheld_total")
	t.Logf("%d anonymous POSTs in %v (%.0f/s): %v events published, %v unheld, the log holds %s entries",
		posts, elapsed.Round(time.Millisecond), posts/elapsed.Seconds(), published, unheld, xlen)
	if published != 1 || xlen != "1" {
		t.Errorf("POSTs to URLs no tier held published %v events besides the purge (log length %s), want none", published-1, xlen)
	}
	if unheld != posts {
		t.Errorf("edgecache_fleet_invalidations_unheld_total %v, want %d", unheld, posts)
	}

	// B, resumed, applies the purge made while it was paused.
	serves(t, b, o, purged)
	// A real change is still published: a POST to a held URL. B applies
	// it: it has read the log past the POSTs.
	o.bump()
	const held = "/api/v0/m/images/0/"
	if s := a.post(t, held); s != http.StatusOK {
		t.Fatalf("POST: %d", s)
	}
	serves(t, b, o, held)
	if n := a.metric(t, "edgecache_fleet_events_published_total"); n != 2 {
		t.Errorf("%v events published for the purge and the POST to a held URL, want 2", n)
	}
	// B's position reaches the log's end (its heartbeat says so, every
	// 2 s): had events been lost, it would have found out by then.
	testkit.Eventually(t, 10*time.Second, func() string {
		table := a.edgecache(t, "fleet")
		for _, line := range strings.Split(table, "\n") {
			if f := strings.Fields(line); len(f) >= 5 && f[0] == b.Name && f[4] == "0" {
				return ""
			}
		}
		return "B is not at the log's end:\n" + table
	})
	for i := 2; i < hot; i++ {
		path := "/api/v0/m/images/" + strconv.Itoa(i) + "/"
		if got := b.mustGet(t, path); got.cache != "HIT" || got.tier == "shared" {
			t.Errorf("B %s after the POSTs: %s from %q, want a hit from its own tiers", path, got.cache, got.tier)
		}
	}
	if strings.Contains(b.log.String(), "had not applied are lost") {
		t.Error("B found events lost")
	}
	after := b.zoneFiles(t)
	t.Logf("B's disk zone: %d files before the POSTs, %d after (the purged and the invalidated URL fetched again)", files, after)
	if after != files {
		t.Errorf("B's disk zone went from %d files to %d", files, after)
	}
}

// TestInvalidateUnsafeOff: with invalidate_unsafe off (an aggressive zone,
// as nginx, which never invalidates), a POST answered 200 passes through
// and drops nothing, here, in Redis or on another proxy.
func TestInvalidateUnsafeOff(t *testing.T) {
	r := testkit.StartRedis(t)
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: o.Addr(),
		Handler: "ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires\n\t\tinvalidate_unsafe off"})
	a, b := ps[0], ps[1]
	const path = "/webclient/render_thumbnail/7/"
	a.mustGet(t, path)
	b.mustGet(t, path)
	old := string(o.body(path))
	o.bump()
	before := o.RequestsFor(path)
	if s := a.post(t, path); s != http.StatusOK {
		t.Fatalf("POST: %d", s)
	}
	if n := o.RequestsFor(path) - before; n != 1 {
		t.Errorf("the origin got %d requests for the POST, want 1 (passed through)", n)
	}
	for _, p := range ps {
		if got := p.mustGet(t, path); got.cache != "HIT" || string(got.body) != old {
			t.Errorf("%s after a POST with invalidate_unsafe off: %s %.30q", p.Name, got.cache, got.body)
		}
	}
	if out, _ := r.CLI("EXISTS", "edgecache:{default:"+path+"}"); out != "1" {
		t.Error("the POST removed the entry from Redis")
	}
	if n := a.metric(t, "edgecache_fleet_events_published_total"); n != 0 {
		t.Errorf("%v events published", n)
	}
}

// varyingOrigin answers with Vary: Accept-Language and a body naming the
// language and the version, fresh for an hour (standards mode).
type varyingOrigin struct {
	*testkit.Backend
	version atomic.Int64
}

func newVaryingOrigin(t *testing.T) *varyingOrigin {
	o := &varyingOrigin{}
	o.version.Store(1)
	o.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprint(w, o.body(r.URL.Path, r.Header.Get("Accept-Language")))
	})
	return o
}

func (o *varyingOrigin) body(path, lang string) string {
	return fmt.Sprintf("%s in %s v%d", path, lang, o.version.Load())
}

// getLang requests path with an Accept-Language.
func (p *proxy) getLang(t *testing.T, path, lang string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL+path, nil)
	req.Header.Set("Accept-Language", lang)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s GET %s (%s): %d %v", p.Name, path, lang, resp.StatusCode, err)
	}
	return response{status: resp.StatusCode, cache: resp.Header.Get("X-Cache-Status"), tier: resp.Header.Get("X-Edge-Tier"), body: body}
}

// TestVariantInvalidationWithoutScan: in standards mode, a POST to a URL
// whose answers vary, with many other keys in Redis, removes its variants
// from Redis, and every proxy serves the new ones, without a SCAN: the
// variants are found through their set, under the key's hash slot.
// (Before: each such invalidation SCANned the whole keyspace.)
func TestVariantInvalidationWithoutScan(t *testing.T) {
	r := testkit.StartRedis(t)
	testVariantInvalidationWithoutScan(t, []*testkit.Redis{r}, []string{r.Addr})
}

func TestVariantInvalidationWithoutScanOnCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	testVariantInvalidationWithoutScan(t, c.Nodes, c.Addrs())
}

func testVariantInvalidationWithoutScan(t *testing.T, nodes []*testkit.Redis, addrs []string) {
	o := newVaryingOrigin(t)
	ps := startFleet(t, 2, addrs, fleetOptions{Origin: o.Addr()})
	a, b := ps[0], ps[1]
	const path = "/api/v0/m/datasets/3/"
	langs := []string{"en", "fr", "de"}
	for _, lang := range langs {
		a.getLang(t, path, lang)
	}
	for _, lang := range langs {
		testkit.Eventually(t, 5*time.Second, func() string {
			if got := b.getLang(t, path, lang); got.tier != "shared" && got.tier != "memory" {
				return fmt.Sprintf("B %s: %s from %q, want a hit from Redis", lang, got.cache, got.tier)
			}
			return ""
		})
	}
	// Other keys, so that a pass over the keyspace would be seen.
	const others = 20000
	for _, n := range nodes {
		// A Cluster node takes only keys of its own slots: the first hash
		// tag that is its own holds them all.
		var out string
		var err error
		for tag := 0; tag < 100; tag++ {
			out, err = n.CLI("EVAL", `for i = 1, tonumber(ARGV[1]) do redis.call("SET", "other:{" .. ARGV[2] .. "}:" .. i, "x") end return 1`,
				"0", strconv.Itoa(others/len(nodes)), "t"+strconv.Itoa(tag))
			if err == nil && out == "1" {
				break
			}
		}
		if err != nil || out != "1" {
			t.Fatalf("filling Redis: %s %v", out, err)
		}
		if out, err := n.CLI("CONFIG", "RESETSTAT"); err != nil {
			t.Fatalf("CONFIG RESETSTAT: %s %v", out, err)
		}
	}
	o.version.Add(1)
	start := time.Now()
	if s := a.post(t, path); s != http.StatusOK {
		t.Fatalf("POST: %d", s)
	}
	postTook := time.Since(start)
	for _, p := range ps {
		for _, lang := range langs {
			testkit.Eventually(t, time.Second, func() string {
				if got := p.getLang(t, path, lang); string(got.body) != o.body(path, lang) {
					return fmt.Sprintf("%s serves %q for %s, want %q", p.Name, got.body, lang, o.body(path, lang))
				}
				return ""
			})
		}
	}
	scans := 0
	for _, n := range nodes {
		out, err := n.CLI("INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "cmdstat_scan:") {
				t.Logf("%s: %s", n.Addr, strings.TrimSpace(line))
				scans++
			}
		}
	}
	t.Logf("the POST's answer took %v with %d other keys in Redis", postTook.Round(time.Microsecond), others)
	if scans != 0 {
		t.Errorf("the invalidation SCANned the keyspace on %d Redis nodes", scans)
	}
}
