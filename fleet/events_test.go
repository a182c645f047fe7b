package fleet

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// recorder is a Follower's caller: it keeps what it was told.
type recorder struct {
	mu     sync.Mutex
	events []Event
	drops  []string
}

func (r *recorder) apply(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// drop records the loss's reason, with " (values kept)" when Redis kept
// its values.
func (r *recorder) drop(l Loss) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.ValuesKept {
		l.Reason += " (values kept)"
	}
	r.drops = append(r.drops, l.Reason)
}

// keys are the keys of the events applied, as "kind zone key".
func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, ev := range r.events {
		line := fmt.Sprintf("%s %s %s", ev.Kind, ev.Zone, ev.Key)
		if ev.Soft {
			line += " soft"
		}
		s = append(s, line)
	}
	return s
}

func (r *recorder) dropped() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.drops)
}

// waitSeen waits until the recorder has applied want, in order, and
// nothing else.
func (r *recorder) waitSeen(t testing.TB, within time.Duration, want ...string) {
	t.Helper()
	testkit.Eventually(t, within, func() string {
		if got := r.seen(); !slices.Equal(got, want) {
			return fmt.Sprintf("applied %q, want %q", got, want)
		}
		return ""
	})
}

func openFleet(t testing.TB, cfg Config, log *zap.Logger) *Fleet {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second // the machine is shared: no flaky timeouts
	}
	f, err := Open(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func follow(t testing.TB, f *Fleet, from *Position) (*Follower, *recorder) {
	t.Helper()
	rec := new(recorder)
	fo := f.Follow(from, rec.apply, rec.drop)
	t.Cleanup(fo.Stop)
	// Started: it has a position at the log's end.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the follower to reach Redis", func() bool { return fo.Position().ID != "" }))
	return fo, rec
}

// TestEventsReachOthers: what one node publishes the others apply, in
// order and within a second; a node does not apply its own events.
func TestEventsReachOthers(t *testing.T) {
	r := testkit.StartRedis(t)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "b"}, nil)
	_, recA := follow(t, a, nil)
	foB, recB := follow(t, b, nil)

	ctx := context.Background()
	start := time.Now()
	if _, err := a.Purge(ctx, Event{Zone: "thumbs", Kind: KindPurgePrefix, Key: "/webclient/"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Invalidate(ctx, "api", "/api/v0/m/projects/", true); err != nil {
		t.Fatal(err)
	}
	if err := a.Refreshed(ctx, "thumbs", "/render/1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Purge(ctx, Event{Kind: KindPurgeAll}, []string{"thumbs", "api"}); err != nil {
		t.Fatal(err)
	}
	recB.waitSeen(t, time.Second, "purge_prefix thumbs /webclient/", "invalidate api /api/v0/m/projects/", "refresh thumbs /render/1", "purge_all  ")
	t.Logf("4 events applied by the other node %s after the first was published", time.Since(start))
	if got := recA.seen(); len(got) != 0 {
		t.Errorf("node a applied its own events: %q", got)
	}
	if s := a.EventStats(); s.Published != 4 || s.Applied != 0 {
		t.Errorf("a's stats %+v", s)
	}
	if s := b.EventStats(); s.Published != 0 || s.Applied != 4 || s.Lag > time.Second {
		t.Errorf("b's stats %+v", s)
	}
	// Own events move the position too: b is at the end, as a is.
	testkit.Eventually(t, time.Second, func() string {
		if out, _ := r.CLI("XINFO", "STREAM", "edgecache:events"); !strings.Contains(out, foB.Position().ID) {
			return "b's position " + foB.Position().ID + " is not the log's last ID:\n" + out
		}
		return ""
	})
	if _, err := a.Publish(ctx, Event{Kind: "nonsense"}); err == nil {
		t.Error("an unknown kind was published")
	}
}

// TestEventsPrefixIsolation: fleets with different prefixes on one Redis
// never see each other's events.
func TestEventsPrefixIsolation(t *testing.T) {
	r := testkit.StartRedis(t)
	x := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "x", Prefix: "fleet-x:"}, nil)
	y := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "y", Prefix: "fleet-y:"}, nil)
	x2 := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "x2", Prefix: "fleet-x:"}, nil)
	_, recY := follow(t, y, nil)
	_, recX2 := follow(t, x2, nil)
	ctx := context.Background()
	if _, err := x.Invalidate(ctx, "z", "/from-x", true); err != nil {
		t.Fatal(err)
	}
	if _, err := y.Invalidate(ctx, "z", "/from-y", true); err != nil {
		t.Fatal(err)
	}
	recX2.waitSeen(t, 2*time.Second, "invalidate z /from-x")
	recY.waitSeen(t, 2*time.Second)
}

// TestPurgeRemovesSharedEntries: a purge removes from Redis exactly the
// entries it names; glob characters in keys match only themselves; fill
// locks, member keys and other prefixes are left alone.
func TestPurgeRemovesSharedEntries(t *testing.T) {
	r := testkit.StartRedis(t)
	testPurgeRemovesSharedEntries(t, []string{r.Addr})
}

func testPurgeRemovesSharedEntries(t *testing.T, addrs []string) {
	f := openFleet(t, Config{Addrs: addrs, Node: "a"}, nil)
	other := openFleet(t, Config{Addrs: addrs, Node: "a", Prefix: "other:"}, nil)
	ctx := context.Background()
	entries := []string{"/a/1", "/a/2", "/a*/x", "/a?/y", "/a[1]", "/ab", `/a\b`, "/b/1", "/b/2"}
	var all []string
	for _, zone := range []string{"z1", "z2"} {
		for _, k := range entries {
			all = append(all, f.keys.entry(zone, k))
		}
	}
	set := func() {
		t.Helper()
		for _, k := range all {
			if err := f.rdb.Set(ctx, k, "v", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	extra := []string{f.keys.lock("z1", "/a/1"), f.keys.member("a"), other.keys.entry("z1", "/a/1"), other.keys.entry("z1", "/a*/x")}
	for _, k := range extra {
		if err := f.rdb.Set(ctx, k, "v", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	left := func() []string {
		t.Helper()
		var keys []string
		for _, k := range all {
			if n, err := f.rdb.Exists(ctx, k).Result(); err != nil {
				t.Fatal(err)
			} else if n == 1 {
				keys = append(keys, strings.TrimPrefix(k, "edgecache:"))
			}
		}
		return keys
	}
	for _, c := range []struct {
		ev      Event
		zones   []string
		removed int
	}{
		{Event{Zone: "z1", Kind: KindPurgeKey, Key: "/a*/x"}, nil, 1},
		{Event{Zone: "z1", Kind: KindPurgePrefix, Key: "/a*"}, nil, 1},
		{Event{Zone: "z1", Kind: KindPurgePrefix, Key: "/a?"}, nil, 1},
		{Event{Zone: "z1", Kind: KindPurgePrefix, Key: "/a["}, nil, 1},
		{Event{Zone: "z1", Kind: KindPurgePrefix, Key: `/a\`}, nil, 1},
		{Event{Zone: "z1", Kind: KindPurgePrefix, Key: "/a/"}, nil, 2},
		{Event{Zone: "z2", Kind: KindPurgePrefix, Key: "/a"}, nil, 7},
		{Event{Kind: KindPurgePrefix, Key: "/b/"}, []string{"z1", "z2"}, 4},
		{Event{Zone: "z1", Kind: KindPurgeAll}, nil, 9},
		{Event{Kind: KindPurgeAll}, []string{"z1", "z2"}, 18},
	} {
		set()
		n, err := f.Purge(ctx, c.ev, c.zones)
		if err != nil {
			t.Fatalf("%+v: %v", c.ev, err)
		}
		if n != c.removed {
			t.Errorf("%+v removed %d keys, want %d; left %q", c.ev, n, c.removed, left())
		}
		if got := len(left()); got != len(all)-c.removed {
			t.Errorf("%+v left %d keys, want %d", c.ev, got, len(all)-c.removed)
		}
	}
	for _, k := range extra {
		if n, _ := f.rdb.Exists(ctx, k).Result(); n != 1 {
			t.Errorf("%s was removed", k)
		}
	}
}

// TestCatchUpAfterCutOff: a proxy cut off from Redis applies the events
// it missed when it can reach Redis again, and says so once each way.
func TestCatchUpAfterCutOff(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartTCPProxy(t, r.Addr)
	core, logs := observer.New(zapcore.InfoLevel)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: []string{proxy.Addr}, Node: "b", Timeout: 200 * time.Millisecond}, zap.New(core))
	_, rec := follow(t, b, nil)
	ctx := context.Background()

	proxy.Cut()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("b to notice the cut", func() bool {
		return logs.FilterMessageSnippet("cannot read the fleet's event log").Len() == 1
	}))
	for i := range 3 {
		if _, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: fmt.Sprint("/k", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.seen(); len(got) != 0 {
		t.Fatalf("applied while cut off: %q", got)
	}
	proxy.Restore()
	rec.waitSeen(t, 3*time.Second, "purge_key z /k0", "purge_key z /k1", "purge_key z /k2")
	testkit.Eventually(t, 2*time.Second, testkit.Holds("b to log that it reads again", func() bool {
		return logs.FilterMessageSnippet("reading the fleet's event log again").Len() == 1
	}))
	if n := logs.FilterMessageSnippet("cannot read the fleet's event log").Len(); n != 1 {
		t.Errorf("the cut was logged %d times, want once", n)
	}
	if d := rec.dropped(); len(d) != 0 {
		t.Errorf("dropped after a catch-up: %q", d)
	}
}

// TestTrimmedLogDrops: a proxy cut off while the log was trimmed past its
// position drops its local entries, logs why, and follows on from the
// log's end; so does a restarted proxy whose saved position was trimmed.
func TestTrimmedLogDrops(t *testing.T) {
	r := testkit.StartRedis(t)
	proxy := testkit.StartTCPProxy(t, r.Addr)
	core, logs := observer.New(zapcore.InfoLevel)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: []string{proxy.Addr}, Node: "b", Timeout: 200 * time.Millisecond}, zap.New(core))
	ctx := context.Background()
	if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindRefresh, Key: "/before"}); err != nil {
		t.Fatal(err)
	}
	foB, rec := follow(t, b, nil)
	saved := foB.Position()

	proxy.Cut()
	for i := range 5 {
		if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: fmt.Sprint("/k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := r.CLI("XTRIM", "edgecache:events", "MAXLEN", "2"); err != nil || out != "4" {
		t.Fatalf("XTRIM: %q %v", out, err)
	}
	proxy.Restore()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("b to drop its entries", func() bool { return len(rec.dropped()) == 1 }))
	if d := rec.dropped()[0]; !strings.Contains(d, "trimmed") || !strings.Contains(d, "(values kept)") {
		t.Errorf("drop reason %q", d)
	}
	if logs.FilterMessageSnippet("had not applied are lost").FilterField(zap.String("position", saved.ID)).Len() != 1 {
		t.Errorf("the drop was not logged with the position: %v", logs.All())
	}
	// The events left in the log were lost with the others: not applied
	// one by one after the drop, which covered them.
	if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/after"}); err != nil {
		t.Fatal(err)
	}
	rec.waitSeen(t, 2*time.Second, "purge_key z /after")
	if s := b.EventStats(); s.Drops != 1 {
		t.Errorf("b's stats %+v", s)
	}

	// A proxy restarted with the position it saved before the trim.
	c := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "c"}, nil)
	_, recC := follow(t, c, &saved)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("c to drop its entries", func() bool { return len(recC.dropped()) == 1 }))
	// And one restarted at a position the log still holds catches up.
	d := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "d"}, nil)
	late := foB.Position()
	if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/later"}); err != nil {
		t.Fatal(err)
	}
	_, recD := follow(t, d, &late)
	recD.waitSeen(t, 2*time.Second, "purge_key z /later")
	if len(recD.dropped()) != 0 {
		t.Errorf("d dropped: %q", recD.dropped())
	}
}

// TestLostLogDrops: Redis restarted without its data: the log began
// again, and a proxy that had read the old one drops its entries, even
// when new events came before it could look.
func TestLostLogDrops(t *testing.T) {
	r := testkit.StartRedis(t)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "b"}, nil)
	ctx := context.Background()
	_, rec := follow(t, b, nil)
	for i := range 3 {
		if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: fmt.Sprint("/k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitSeen(t, 2*time.Second, "purge_key z /k0", "purge_key z /k1", "purge_key z /k2")
	r.Restart()
	testkit.Eventually(t, 5*time.Second, func() string {
		if _, err := a.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/new"}); err != nil {
			return err.Error()
		}
		return ""
	})
	testkit.Eventually(t, 5*time.Second, testkit.Holds("b to drop its entries", func() bool { return len(rec.dropped()) == 1 }))
	if d := rec.dropped()[0]; !strings.Contains(d, "began again") || strings.Contains(d, "(values kept)") {
		t.Errorf("drop reason %q", d)
	}
}

// TestEventsOnCluster: events and purges by prefix on a Redis Cluster of
// 3 masters, whose entries are spread over all of them.
func TestEventsOnCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	a := openFleet(t, Config{Addrs: c.Addrs(), Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: c.Addrs(), Node: "b"}, nil)
	_, rec := follow(t, b, nil)
	ctx := context.Background()
	if _, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgePrefix, Key: "/p/"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Refreshed(ctx, "z", "/r", false); err != nil {
		t.Fatal(err)
	}
	rec.waitSeen(t, time.Second, "purge_prefix z /p/", "refresh z /r")
	// The entries of a zone are on every master: the purge finds them all.
	masters := map[string]bool{}
	for i := range 30 {
		k := a.keys.entry("z", fmt.Sprint("/spread/", i))
		if err := a.rdb.Set(ctx, k, "v", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			if out, _ := n.CLI("EXISTS", k); out == "1" {
				masters[n.Addr] = true
			}
		}
	}
	if len(masters) != 3 {
		t.Fatalf("30 entries on %d masters, want 3", len(masters))
	}
	n, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgePrefix, Key: "/spread/"}, nil)
	if err != nil || n != 30 {
		t.Fatalf("purge by prefix on a cluster removed %d, %v; want 30", n, err)
	}
	testPurgeRemovesSharedEntries(t, c.Addrs())
	testPurgeRemovesVariants(t, c.Addrs())
}

// TestEventsWithACLUser: the ACL docs/fleet.md gives a fleet's user is
// enough for the event log, purges by prefix, the member list and the
// fill lock's wake-ups (a pattern subscription, which Redis allows only
// when an ACL channel pattern is that very pattern), and keeps the user
// to its prefix.
func TestEventsWithACLUser(t *testing.T) {
	r := testkit.StartRedis(t)
	acl := []string{"ACL", "SETUSER", "edgecache", "on", ">secret", "~edgecache:*", "&edgecache:filled:*",
		"+@read", "+@write", "+@stream", "+@pubsub", "+@scripting", "+@connection", "+@keyspace", "-@dangerous"}
	if out, err := r.CLI(acl...); err != nil || out != "OK" {
		t.Fatalf("ACL SETUSER: %s %v", out, err)
	}
	cfg := Config{Addrs: []string{r.Addr}, Username: "edgecache", Password: "secret"}
	cfg.Node = "a"
	a := openFleet(t, cfg, nil)
	cfg.Node = "b"
	b := openFleet(t, cfg, nil)
	_, rec := follow(t, b, nil)
	ctx := context.Background()
	if err := a.rdb.Set(ctx, a.keys.entry("z", "/p/1"), "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgePrefix, Key: "/p/"}, nil); err != nil || n != 1 {
		t.Fatalf("purge by prefix: %d %v", n, err)
	}
	rec.waitSeen(t, 2*time.Second, "purge_prefix z /p/")
	if err := a.Announce(ctx, Member{}); err != nil {
		t.Fatal(err)
	}
	if err := a.subs.subscribe(ctx); err != nil {
		t.Errorf("the wake-ups' subscription: %v", err)
	}
	if m, err := a.Members(ctx); err != nil || len(m) != 1 {
		t.Fatalf("members: %v %v", m, err)
	}
	if err := a.rdb.Set(ctx, "other:key", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("a key outside the prefix: %v", err)
	}
	if err := a.rdb.FlushAll(ctx).Err(); err == nil {
		t.Error("FLUSHALL allowed")
	}
}

// TestPurgeRemovesVariants: a purge or an invalidation of a key whose
// response varies removes its variants from Redis too: a new index,
// written by the next fill, must not lead to a variant from before.
func TestPurgeRemovesVariants(t *testing.T) {
	r := testkit.StartRedis(t)
	testPurgeRemovesVariants(t, []string{r.Addr})
}

func testPurgeRemovesVariants(t *testing.T, addrs []string) {
	f := openFleet(t, Config{Addrs: addrs, Node: "a"}, nil)
	ctx := context.Background()
	storeVariants := func(key string) {
		t.Helper()
		for _, lang := range []string{"en", "fr"} {
			e := entry(key, []byte(key+" in "+lang))
			e.Header["Vary"] = []string{"Accept-Language"}
			e.VaryNames, e.Variant = []string{"Accept-Language"}, cache.VariantOf([]string{"Accept-Language"}, http.Header{"Accept-Language": {lang}})
			store(t, f, "z", key, e)
		}
		store(t, f, "z", key+"x", entry(key+"x", []byte("another key, same start")))
	}
	has := func(key, lang string) bool {
		_, ok := f.Get(ctx, "z", key, http.Header{"Accept-Language": {lang}})
		return ok
	}
	variantsLeft := func(key string) int64 {
		t.Helper()
		n := int64(0)
		for _, lang := range []string{"en", "fr"} {
			k := f.keys.variant("z", key, cache.VariantOf([]string{"Accept-Language"}, http.Header{"Accept-Language": {lang}}))
			c, err := f.rdb.Exists(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += c
		}
		return n
	}
	storeVariants("/v")
	if !has("/v", "en") || !has("/v", "fr") || variantsLeft("/v") != 2 {
		t.Fatal("variants not stored")
	}
	n, err := f.Purge(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/v"}, nil)
	if err != nil || n != 3 {
		t.Errorf("purge of a varying key removed %d values, %v; want 3 (the index and 2 variants)", n, err)
	}
	if left := variantsLeft("/v"); left != 0 {
		t.Errorf("%d variants left after the purge", left)
	}
	if !has("/vx", "en") {
		t.Error("the purge removed another key that starts alike")
	}
	storeVariants("/w")
	if published, err := f.Invalidate(ctx, "z", "/w", false); err != nil || !published {
		t.Fatalf("invalidation of a key Redis held: published %v, %v", published, err)
	}
	if left := variantsLeft("/w"); left != 0 || has("/w", "en") {
		t.Errorf("%d variants left after an invalidation", left)
	}
	if n, _ := f.rdb.Exists(ctx, f.keys.variants("z", "/w")).Result(); n != 0 {
		t.Error("the set of variants is left after an invalidation")
	}
}

// TestInvalidateOnlyHeld: an invalidation is published only when some
// tier held the key: this proxy's (the caller says), Redis's value, or a
// fill under way (the fleet lock). Others are counted as unheld, and a
// second invalidation of a key between two fills publishes nothing.
func TestInvalidateOnlyHeld(t *testing.T) {
	r := testkit.StartRedis(t)
	f := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	ctx := context.Background()
	invalidate := func(key string, heldHere bool) bool {
		t.Helper()
		published, err := f.Invalidate(ctx, "z", key, heldHere)
		if err != nil {
			t.Fatal(err)
		}
		return published
	}
	for i := range 50 {
		if invalidate("/nobody/"+strconv.Itoa(i), false) {
			t.Fatalf("published an invalidation of a key no tier held")
		}
	}
	store(t, f, "z", "/held", entry("/held", []byte("v1")))
	if !invalidate("/held", false) {
		t.Error("an invalidation of a key Redis held was not published")
	}
	if invalidate("/held", false) {
		t.Error("a second invalidation, with no fill between, was published")
	}
	if !invalidate("/here", true) {
		t.Error("an invalidation of a key this proxy held was not published")
	}
	if err := f.rdb.Set(ctx, f.keys.lock("z", "/filling"), "token", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if !invalidate("/filling", false) {
		t.Error("an invalidation of a key being filled was not published")
	}
	if s := f.EventStats(); s.Published != 3 || s.Unheld != 51 {
		t.Errorf("stats %+v, want 3 published and 51 unheld", s)
	}
	if n, _ := f.rdb.XLen(ctx, f.keys.events()).Result(); n != 3 {
		t.Errorf("the log holds %d events, want 3", n)
	}
}

// TestEventRetention: the log keeps events for the retention's time,
// however many there are: an event older than it is trimmed when the
// next is added, a younger one stays.
func TestEventRetention(t *testing.T) {
	// Small stream nodes: approximate trimming removes whole nodes.
	r := testkit.StartRedis(t, testkit.RedisArgs("--stream-node-max-entries", "2"))
	f := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a", EventRetention: time.Hour}, nil)
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := range 4 {
		if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: f.keys.events(), ID: fmt.Sprintf("%d-%d", old, i),
			Values: []string{fieldNode, "b", fieldKind, string(KindPurgeKey), fieldKey, "/old"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2000 {
		if _, err := f.Publish(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/k"}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.rdb.XLen(ctx, f.keys.events()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000 {
		t.Errorf("the log holds %d events, want the 2000 of the last hour (and none of 2 hours ago)", n)
	}
}

// TestFollowerSettles: a reader that cannot reach Redis settles at its
// first failure (a starting proxy stops waiting for a catch-up); one that
// can settles when it has caught up.
func TestFollowerSettles(t *testing.T) {
	f := openFleet(t, Config{Addrs: []string{"127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))}, Node: "a"}, nil)
	fo := f.Follow(&Position{ID: "5-0", Added: 1}, func(Event) {}, func(Loss) {})
	defer fo.Stop()
	select {
	case <-fo.Settled():
	case <-time.After(5 * time.Second):
		t.Fatal("a reader that cannot reach Redis did not settle")
	}
	select {
	case <-fo.CaughtUp():
		t.Error("caught up without Redis")
	default:
	}
	r := testkit.StartRedis(t)
	g := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "b"}, nil)
	for range 3 {
		if _, err := g.Publish(context.Background(), Event{Zone: "z", Kind: KindPurgeKey, Key: "/k"}); err != nil {
			t.Fatal(err)
		}
	}
	h := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "c"}, nil)
	rec := new(recorder)
	fo2 := h.Follow(&start, rec.apply, rec.drop)
	defer fo2.Stop()
	select {
	case <-fo2.CaughtUp():
	case <-time.After(5 * time.Second):
		t.Fatal("not caught up")
	}
	if got := rec.seen(); len(got) != 3 {
		t.Errorf("caught up having applied %q, want the 3 events", got)
	}
	<-fo2.Settled()
}
