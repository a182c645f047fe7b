package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestRefreshReachesFleet: a refresh through proxy A's cache buster, and
// B and C serve the new bytes within a second, from Redis: the origin
// sees the refresh and nothing more.
func TestRefreshReachesFleet(t *testing.T) {
	testRefreshReachesFleet(t, singleRedis(testkit.StartRedis(t)))
}

func TestRefreshReachesFleetOnCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	testRefreshReachesFleet(t, func(int) []string { return c.Addrs() })
}

func testRefreshReachesFleet(t *testing.T, redis func(int) []string) {
	o := newOrigin(t)
	ms := startOpsFleet(t, o, 3, redis)
	const path = "/webclient/render_thumbnail/1/"
	for _, m := range ms {
		if a := m.get(t, m.public, path); a.status != 200 || a.body != o.want(path) {
			t.Fatalf("%s: %+v", m.name, a)
		}
	}
	for _, m := range ms {
		if a := m.get(t, m.public, path); a.cache != "HIT" {
			t.Fatalf("%s, second request: %+v", m.name, a)
		}
	}
	o.version.Store(2)
	before := o.RequestsFor(path)
	start := time.Now()
	if a := ms[0].get(t, ms[0].refresh, path); a.body != o.want(path) {
		t.Fatalf("refresh through %s: %+v", ms[0].name, a)
	}
	for _, m := range ms[1:] {
		took := testkit.Eventually(t, time.Second, func() string {
			if a := m.get(t, m.public, path); a.body != o.want(path) {
				return fmt.Sprintf("%s serves %q (%s)", m.name, a.body, a.cache)
			}
			return ""
		})
		t.Logf("%s serves the new bytes %s after the refresh (%s of waiting)", m.name, time.Since(start), took)
	}
	if n := o.RequestsFor(path) - before; n != 1 {
		t.Errorf("the origin was asked %d times after the refresh, want 1 (the refresh; the others read Redis)", n)
	}
}

// TestPurgeReachesFleet: a purge by prefix on C, and A and B no longer
// serve what it names (within a second), while other keys stay; the
// fleet view lists the three, caught up.
func TestPurgeReachesFleet(t *testing.T) {
	testPurgeReachesFleet(t, singleRedis(testkit.StartRedis(t)))
}

func TestPurgeReachesFleetOnCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	testPurgeReachesFleet(t, func(int) []string { return c.Addrs() })
}

func testPurgeReachesFleet(t *testing.T, redis func(int) []string) {
	o := newOrigin(t)
	ms := startOpsFleet(t, o, 3, redis)
	paths := []string{"/p/1", "/p/2", "/q/1"}
	for _, m := range ms[:2] {
		for _, p := range paths {
			m.get(t, m.public, p)
			if a := m.get(t, m.public, p); a.cache != "HIT" || a.body != o.want(p) {
				t.Fatalf("%s %s: %+v", m.name, p, a)
			}
		}
	}
	old := o.want("/q/1")
	o.version.Store(2)
	start := time.Now()
	out := ms[2].edgecache(t, "purge", "--prefix", "/p/")
	if !strings.Contains(out, "values from the fleet's Redis") {
		t.Errorf("edgecache purge printed %q", out)
	}
	for _, m := range ms[:2] {
		for _, p := range paths[:2] {
			testkit.Eventually(t, time.Second, func() string {
				if a := m.get(t, m.public, p); a.body != o.want(p) {
					return fmt.Sprintf("%s still serves %q for %s (%s)", m.name, a.body, p, a.cache)
				}
				return ""
			})
		}
		if a := m.get(t, m.public, "/q/1"); a.cache != "HIT" || a.body != old {
			t.Errorf("%s /q/1 after a purge of /p/: %+v", m.name, a)
		}
	}
	t.Logf("A and B no longer serve the purged entries %s after the purge on C", time.Since(start))

	testkit.Eventually(t, 5*time.Second, func() string {
		table := ms[0].edgecache(t, "fleet")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 4 {
			return "fleet table:\n" + table
		}
		for i, m := range ms {
			if f := strings.Fields(lines[i+1]); len(f) < 5 || f[0] != m.name || f[2] != "thumbs" || f[4] != "0" {
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
	o := newOrigin(t)
	ms := startOpsFleet(t, o, 2, func(i int) []string {
		if i == 1 {
			return []string{cut.Addr}
		}
		return []string{r.Addr}
	})
	a, b := ms[0], ms[1]
	const path = "/c/1"
	for _, m := range ms {
		m.get(t, m.public, path)
		if got := m.get(t, m.public, path); got.cache != "HIT" {
			t.Fatalf("%s: %+v", m.name, got)
		}
	}
	old := o.want(path)
	cut.Cut()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("B to notice it is cut off", func() bool {
		return strings.Contains(b.log.String(), "cannot read the fleet's event log")
	}))
	o.version.Store(2)
	a.edgecache(t, "purge", "--key", path)
	if got := a.get(t, a.public, path); got.body != o.want(path) {
		t.Errorf("A after its purge: %+v", got)
	}
	if got := b.get(t, b.public, path); got.body != old {
		t.Fatalf("B, cut off, cannot know of the purge yet: %+v", got)
	}
	cut.Restore()
	start := time.Now()
	testkit.Eventually(t, 5*time.Second, func() string {
		if got := b.get(t, b.public, path); got.body != o.want(path) {
			return fmt.Sprintf("B still serves %q (%s)", got.body, got.cache)
		}
		return ""
	})
	t.Logf("B applied the purge it missed %s after reconnecting", time.Since(start))
	if !strings.Contains(b.log.String(), "reading the fleet's event log again") {
		t.Error("B did not log that it reads the log again")
	}
	if strings.Contains(b.log.String(), "dropping its local entries") {
		t.Error("B dropped its entries: it should have caught up")
	}
}
