package fleet_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// The operations scenarios: purges and refreshes reaching every proxy, a
// proxy cut off from Redis catching up, the fleet view.

// diskZone is a shared zone with a disk tier, where the position in the
// event log is kept: in each proxy's own folder (startFleet sets HOME to
// it; the Caddyfile reads it with {$HOME} when it is adapted).
const diskZone = `zone default {
			memory 16MiB
			path {$HOME}/cache
		}`

// edgecache runs the edgecache command with args against p's admin API.
func (p *proxy) edgecache(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(edgecacheBin, append(args, "--address", "127.0.0.1:"+strconv.Itoa(p.Admin))...).CombinedOutput()
	if err != nil {
		t.Fatalf("edgecache %s on %s: %v\n%s", strings.Join(args, " "), p.Name, err, out)
	}
	return string(out)
}

// serves waits, within a second, for p to answer path with the origin's
// body now.
func serves(t *testing.T, p *proxy, o *origin, path string) time.Duration {
	t.Helper()
	return testkit.Eventually(t, time.Second, func() string {
		r := p.mustGet(t, path)
		if want := o.body(path); string(r.body) != string(want) {
			return fmt.Sprintf("%s serves %.20q for %s (%s %s), want %.20q", p.Name, r.body, path, r.cache, r.tier, want)
		}
		return ""
	})
}

// TestRefreshReachesFleet: a refresh through proxy A's cache buster, and
// B and C serve the new bytes within a second, from Redis: the origin
// sees the refresh and nothing more.
func TestRefreshReachesFleet(t *testing.T) {
	testRefreshReachesFleet(t, []string{testkit.StartRedis(t).Addr})
}

func TestRefreshReachesFleetOnCluster(t *testing.T) {
	testRefreshReachesFleet(t, testkit.StartRedisCluster(t, 3).Addrs())
}

func testRefreshReachesFleet(t *testing.T, redis []string) {
	o := newOrigin(t, 0)
	ps := startFleet(t, 3, redis, fleetOptions{Origin: o.Addr(), Zones: diskZone})
	const path = "/webclient/render_thumbnail/1/"
	for _, p := range ps {
		p.mustGet(t, path)
	}
	for _, p := range ps {
		if r := p.mustGet(t, path); r.cache != "HIT" {
			t.Fatalf("%s, second request: %s %s", p.Name, r.cache, r.tier)
		}
	}
	o.bump()
	before := o.RequestsFor(path)
	start := time.Now()
	if r, err := ps[0].refresh(path); err != nil || string(r.body) != string(o.body(path)) {
		t.Fatalf("refresh through %s: %.20q %v", ps[0].Name, r.body, err)
	}
	for _, p := range ps[1:] {
		serves(t, p, o, path)
		t.Logf("%s serves the new bytes %s after the refresh", p.Name, time.Since(start))
	}
	if n := o.RequestsFor(path) - before; n != 1 {
		t.Errorf("the origin was asked %d times after the refresh, want 1 (the refresh; the others read Redis)", n)
	}
}

// TestPurgeReachesFleet: a purge by prefix on C, and A and B no longer
// serve what it names (within a second), while other keys stay; the
// fleet view lists the three, caught up.
func TestPurgeReachesFleet(t *testing.T) {
	testPurgeReachesFleet(t, []string{testkit.StartRedis(t).Addr})
}

func TestPurgeReachesFleetOnCluster(t *testing.T) {
	testPurgeReachesFleet(t, testkit.StartRedisCluster(t, 3).Addrs())
}

func testPurgeReachesFleet(t *testing.T, redis []string) {
	o := newOrigin(t, 0)
	ps := startFleet(t, 3, redis, fleetOptions{Origin: o.Addr(), Zones: diskZone})
	paths := []string{"/p/1", "/p/2", "/q/1"}
	for _, p := range ps[:2] {
		for _, path := range paths {
			p.mustGet(t, path)
			if r := p.mustGet(t, path); r.cache != "HIT" {
				t.Fatalf("%s %s: %s", p.Name, path, r.cache)
			}
		}
	}
	old := string(o.body("/q/1"))
	o.bump()
	start := time.Now()
	if out := ps[2].edgecache(t, "purge", "--prefix", "/p/"); !strings.Contains(out, "values from the fleet's Redis") {
		t.Errorf("edgecache purge printed %q", out)
	}
	for _, p := range ps[:2] {
		for _, path := range paths[:2] {
			serves(t, p, o, path)
		}
		if r := p.mustGet(t, "/q/1"); r.cache != "HIT" || string(r.body) != old {
			t.Errorf("%s /q/1 after a purge of /p/: %s %.20q", p.Name, r.cache, r.body)
		}
	}
	t.Logf("A and B no longer serve the purged entries %s after the purge on C", time.Since(start))

	testkit.Eventually(t, 5*time.Second, func() string {
		table := ps[0].edgecache(t, "fleet")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 4 {
			return "fleet table:\n" + table
		}
		for i, p := range ps {
			if f := strings.Fields(lines[i+1]); len(f) < 5 || f[0] != p.Name || f[2] != "default" || f[4] != "0" {
				return "fleet table:\n" + table
			}
		}
		return ""
	})
}

// TestCutOffProxyCatchesUp: B is cut off from Redis (not restarted)
// while A purges a key; when B reaches Redis again it applies the purge
// and no longer serves the key.
func TestCutOffProxyCatchesUp(t *testing.T) {
	r := testkit.StartRedis(t)
	cut := testkit.StartTCPProxy(t, r.Addr)
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, nil, fleetOptions{Origin: o.Addr(), Zones: diskZone, RedisFor: func(i int) []string {
		if i == 1 {
			return []string{cut.Addr}
		}
		return []string{r.Addr}
	}})
	a, b := ps[0], ps[1]
	const path = "/c/1"
	for _, p := range ps {
		p.mustGet(t, path)
		if got := p.mustGet(t, path); got.cache != "HIT" {
			t.Fatalf("%s: %s", p.Name, got.cache)
		}
	}
	old := string(o.body(path))
	cut.Cut()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("B to notice it is cut off", func() bool {
		return strings.Contains(b.log.String(), "cannot read the fleet's event log")
	}))
	o.bump()
	a.edgecache(t, "purge", "--key", path)
	serves(t, a, o, path)
	if got := b.mustGet(t, path); string(got.body) != old {
		t.Fatalf("B, cut off, cannot know of the purge yet: %.20q", got.body)
	}
	cut.Restore()
	start := time.Now()
	testkit.Eventually(t, 5*time.Second, func() string {
		if got := b.mustGet(t, path); string(got.body) != string(o.body(path)) {
			return fmt.Sprintf("B still serves %.20q (%s)", got.body, got.cache)
		}
		return ""
	})
	t.Logf("B applied the purge it missed %s after reconnecting", time.Since(start))
	if !strings.Contains(b.log.String(), "reading the fleet's event log again") {
		t.Error("B did not log that it reads the log again")
	}
	if strings.Contains(b.log.String(), "had not applied are lost") {
		t.Error("B dropped its entries: it should have caught up")
	}
}

// TestRestartedProxyCatchesUp: B is stopped while A purges a key; B,
// started again on its disk zone, applies the purge from the position it
// saved there. Stopped again while the log is trimmed past that position,
// B drops its entries at the next start and says so.
func TestRestartedProxyCatchesUp(t *testing.T) {
	r := testkit.StartRedis(t)
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: o.Addr(), Zones: diskZone})
	a, b := ps[0], ps[1]
	paths := []string{"/r/1", "/r/2"}
	for _, path := range paths {
		for _, p := range ps {
			p.mustGet(t, path)
		}
		if got := b.mustGet(t, path); got.cache != "HIT" {
			t.Fatalf("B %s: %s", path, got.cache)
		}
	}
	kept := string(o.body("/r/2"))
	b.stop(t)
	o.bump()
	a.edgecache(t, "purge", "--key", "/r/1")
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	serves(t, b, o, "/r/1")
	if got := b.mustGet(t, "/r/2"); got.cache != "HIT" || string(got.body) != kept {
		t.Errorf("B lost /r/2 on its restart: %s %.20q", got.cache, got.body)
	}
	if !strings.Contains(b.log.String(), "catching up with the fleet's event log") {
		t.Error("B did not start from its saved position")
	}

	// /r/3: B holds it, and Redis loses its value (as an eviction would).
	b.mustGet(t, "/r/3")
	testkit.Eventually(t, 5*time.Second, testkit.Holds("/r/3 to be in Redis", func() bool {
		out, _ := r.CLI("EXISTS", "edgecache:{default:/r/3}")
		return out == "1"
	}))
	b.stop(t)
	o.bump()
	a.edgecache(t, "purge", "--key", "/r/1")
	if out, err := r.CLI("DEL", "edgecache:{default:/r/3}"); err != nil {
		t.Fatalf("DEL: %s %v", out, err)
	}
	if out, err := r.CLI("XTRIM", "edgecache:events", "MAXLEN", "0"); err != nil {
		t.Fatalf("XTRIM: %s %v", out, err)
	}
	files := b.zoneFiles(t)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	// The purge is lost with the log: B drops what Redis does not prove
	// current (/r/1, purged; /r/3, gone from Redis), and keeps /r/2, of
	// which Redis holds the same version, in its own tiers.
	serves(t, b, o, "/r/1")
	if got := b.mustGet(t, "/r/2"); got.cache != "HIT" || got.tier == "shared" || string(got.body) != kept {
		t.Errorf("B /r/2 after the lost events: %s %s %.20q, want a hit from its own tiers", got.cache, got.tier, got.body)
	}
	if got := b.mustGet(t, "/r/3"); got.tier == "disk" || got.tier == "memory" {
		t.Errorf("B kept /r/3, which Redis no longer proves current: %s %s", got.cache, got.tier)
	}
	log := b.log.String()
	if !strings.Contains(log, "was trimmed past this proxy's position") || !strings.Contains(log, "dropped the zone's entries that Redis does not prove current") ||
		!strings.Contains(log, `"kept":1,"dropped":2`) {
		t.Error("B did not log what it kept and dropped")
	}
	t.Logf("B's disk zone held %d files; after the lost events it kept the 1 Redis proves current and dropped 2", files)
}

// TestInvalidationReachesFleet: a POST answered 2xx on A changes the
// resource: B no longer serves its old copy (within a second), nor finds
// it in Redis.
func TestInvalidationReachesFleet(t *testing.T) {
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{testkit.StartRedis(t).Addr}, fleetOptions{Origin: o.Addr()})
	a, b := ps[0], ps[1]
	const path = "/api/v0/m/projects/1/"
	a.mustGet(t, path)
	b.mustGet(t, path)
	if r := b.mustGet(t, path); r.cache != "HIT" {
		t.Fatalf("B: %s", r.cache)
	}
	o.bump()
	resp, err := a.client.Post(a.URL+path, "text/plain", strings.NewReader("change"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	start := time.Now()
	serves(t, b, o, path)
	t.Logf("B serves the changed resource %s after the POST on A", time.Since(start))
}

// TestTagPurgeReachesFleet: a purge by tag on proxy C removes the tag's
// entries from Redis (read from the tag's set, no SCAN) and from A and
// B's own tiers through the event log, and nothing of another tag.
func TestTagPurgeReachesFleet(t *testing.T) {
	r := testkit.StartRedis(t)
	o := newOrigin(t, 0)
	ps := startFleet(t, 3, []string{r.Addr}, fleetOptions{Origin: o.Addr(), Zones: diskZone,
		Handler: "tags {\n\t\t\tpath ^/img/(\\d+)/ image:$1\n\t\t}"})
	tagged, other := []string{"/img/1/a", "/img/1/b"}, "/img/2/a"
	for _, p := range ps[:2] {
		for _, path := range append(tagged, other) {
			p.mustGet(t, path)
			if r := p.mustGet(t, path); r.cache != "HIT" {
				t.Fatalf("%s %s: %s", p.Name, path, r.cache)
			}
		}
	}
	for _, path := range tagged {
		if n, _ := r.CLI("EXISTS", "edgecache:{default:"+path+"}"); n != "1" {
			t.Fatalf("%s is not in Redis: EXISTS %s", path, n)
		}
	}
	old := string(o.body(other))
	o.bump()
	out := ps[2].edgecache(t, "purge", "--tag", "image:1")
	if !strings.Contains(out, "and 2 values from the fleet's Redis") {
		t.Errorf("edgecache purge --tag printed %q", out)
	}
	for _, path := range tagged {
		if n, _ := r.CLI("EXISTS", "edgecache:{default:"+path+"}"); n != "0" {
			t.Errorf("%s is still in Redis after the purge of its tag", path)
		}
	}
	for _, p := range ps[:2] {
		for _, path := range tagged {
			serves(t, p, o, path)
		}
		if r := p.mustGet(t, other); r.cache != "HIT" || string(r.body) != old {
			t.Errorf("%s %s after the purge of another tag: %s %.20q", p.Name, other, r.cache, r.body)
		}
	}
}
