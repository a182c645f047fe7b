package fleet

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

func open(t *testing.T, cfg Config) *Fleet {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "test"
	}
	if cfg.Timeout == 0 {
		// Generous: a loaded test machine may take longer than the
		// default 100 ms to dial, and a slow answer opens the breaker.
		cfg.Timeout = time.Second
	}
	f, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// entry is a committed-looking entry of key with body.
func entry(key string, body []byte) *cache.Entry {
	now := time.Now()
	return &cache.Entry{Meta: cache.Meta{Key: key, Status: 200, StoredAt: now, ValidUntil: now.Add(time.Hour),
		Date: now.UTC().Format(http.TimeFormat), BodySize: int64(len(body)),
		Header: http.Header{"Content-Length": {"x"}, "Content-Type": {"text/plain"}}}, Body: body}
}

func store(t *testing.T, f *Fleet, zone, key string, e *cache.Entry) {
	t.Helper()
	if !f.store(cache.SharedStore{Zone: zone, Key: key, Entry: e, TTL: time.Minute}) {
		t.Fatalf("store of %s failed", key)
	}
}

func TestSharedGetStore(t *testing.T) {
	r := testkit.StartRedis(t)
	f := open(t, Config{Addrs: []string{r.Addr}})
	ctx := context.Background()
	if _, ok := f.Get(ctx, "z", "/a", nil); ok {
		t.Fatal("hit in an empty Redis")
	}
	body := bytes.Repeat([]byte("b"), 10<<10)
	store(t, f, "z", "/a", entry("/a", body))
	e, ok := f.Get(ctx, "z", "/a", nil)
	if !ok || !bytes.Equal(e.Body, body) || e.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("get: %v %+v", ok, e)
	}
	if ttl, _ := r.CLI("PTTL", f.keys.entry("z", "/a")); ttl == "-1" || ttl == "-2" {
		t.Errorf("the value has no expiry: PTTL %s", ttl)
	}
	// A body over entry_max stays local.
	small := open(t, Config{Addrs: []string{r.Addr}, EntryMax: 1 << 10})
	if small.store(cache.SharedStore{Zone: "z", Key: "/big", Entry: entry("/big", body), TTL: time.Minute}) {
		t.Error("a body over entry_max was stored")
	}
	// A purge since the request began voids the store.
	voided := cache.SharedStore{Zone: "z", Key: "/p", Entry: entry("/p", body), TTL: time.Minute, Current: func() bool { return false }}
	if f.store(voided) {
		t.Error("a voided entry was stored")
	}
	if _, ok := f.Get(ctx, "z", "/p", nil); ok {
		t.Error("a voided entry is in Redis")
	}
	// Variants: the index under the key, each variant under its own.
	for _, lang := range []string{"en", "fr"} {
		e := entry("/v", []byte("in "+lang))
		e.Header["Vary"] = []string{"Accept-Language"}
		e.VaryNames, e.Variant = []string{"Accept-Language"}, cache.VariantOf([]string{"Accept-Language"}, http.Header{"Accept-Language": {lang}})
		store(t, f, "z", "/v", e)
	}
	for _, lang := range []string{"en", "fr"} {
		e, ok := f.Get(ctx, "z", "/v", http.Header{"Accept-Language": {lang}})
		if !ok || string(e.Body) != "in "+lang || e.Key != "/v" || len(e.VaryNames) != 1 {
			t.Errorf("variant %s: %v %+v", lang, ok, e)
		}
	}
	if _, ok := f.Get(ctx, "z", "/v", http.Header{"Accept-Language": {"de"}}); ok {
		t.Error("a variant never stored was found")
	}
}

// A value damaged in Redis, or written by a fleet with another prefix and
// copied over, is a miss, counted, never served.
func TestSharedCorruptAndPrefix(t *testing.T) {
	r := testkit.StartRedis(t)
	f := open(t, Config{Addrs: []string{r.Addr}, Prefix: "a:"})
	other := open(t, Config{Addrs: []string{r.Addr}, Prefix: "b:"})
	ctx := context.Background()
	store(t, f, "z", "/k", entry("/k", []byte("0123456789")))
	if _, ok := other.Get(ctx, "z", "/k", nil); ok {
		t.Fatal("prefix b: reads prefix a:'s value")
	}
	// Copied under b:'s key name, it does not verify.
	if out, err := r.CLI("COPY", f.keys.entry("z", "/k"), other.keys.entry("z", "/k")); err != nil || out != "1" {
		t.Fatalf("COPY: %v %s", err, out)
	}
	if _, ok := other.Get(ctx, "z", "/k", nil); ok || other.Stats.Corrupt.Load() != 1 {
		t.Fatalf("a value copied from another prefix was served (corrupt count %d)", other.Stats.Corrupt.Load())
	}
	// One byte of the body overwritten.
	raw, _ := r.CLI("STRLEN", f.keys.entry("z", "/k"))
	if out, err := r.CLI("SETRANGE", f.keys.entry("z", "/k"), strings.TrimSpace(raw[:len(raw)-1]), "X"); err != nil {
		t.Fatalf("SETRANGE: %v %s", err, out)
	}
	if e, ok := f.Get(ctx, "z", "/k", nil); ok {
		t.Fatalf("a damaged value was served: %q", e.Body)
	}
	if f.Stats.Corrupt.Load() != 1 || f.Stats.Misses.Load() != 1 {
		t.Errorf("corrupt %d, misses %d; want 1, 1", f.Stats.Corrupt.Load(), f.Stats.Misses.Load())
	}
	// Garbage.
	r.CLI("SET", f.keys.entry("z", "/g"), "not a value")
	if _, ok := f.Get(ctx, "z", "/g", nil); ok {
		t.Fatal("garbage served")
	}
}

// A purge made on another proxy while a fill ran reaches this proxy
// after the fill's value was written: the value is checked again later
// and removed, unless a newer one replaced it.
func TestStoreUndoneByLaterPurge(t *testing.T) {
	r := testkit.StartRedis(t)
	f := open(t, Config{Addrs: []string{r.Addr}})
	f.recheckAfter = 100 * time.Millisecond
	ctx := context.Background()
	var purged atomic.Bool
	current := func() bool { return !purged.Load() }
	if !f.store(cache.SharedStore{Zone: "z", Key: "/a", Entry: entry("/a", []byte("old")), TTL: time.Minute, Current: current}) {
		t.Fatal("not stored")
	}
	purged.Store(true) // the purge's event applied here, after the write
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the void value to leave Redis", func() bool {
		_, ok := f.Get(ctx, "z", "/a", nil)
		return !ok
	}))
	if n := f.Stats.StoresUndone.Load(); n != 1 {
		t.Errorf("%d stores undone, want 1", n)
	}
	// A newer fill's value, written before the check, stays.
	store(t, f, "z", "/b", entry("/b", []byte("old")))
	old, _ := r.CLI("GET", f.keys.entry("z", "/b"))
	store(t, f, "z", "/b", entry("/b", []byte("new")))
	if f.unstore(f.keys.entry("z", "/b"), sumOf([]byte(old))) {
		t.Error("the older value's removal removed the newer one")
	}
	if e, ok := f.Get(ctx, "z", "/b", nil); !ok || string(e.Body) != "new" {
		t.Errorf("the newer value is gone: %v", ok)
	}
}

// ACL: a user with a password and rights on the prefix only.
func TestSharedACL(t *testing.T) {
	r := testkit.StartRedis(t)
	if out, err := r.CLI("ACL", "SETUSER", "edge", "on", ">pw", "~e:*", "&e:*", "+@all"); err != nil || out != "OK" {
		t.Fatalf("ACL SETUSER: %v %s", err, out)
	}
	f := open(t, Config{Addrs: []string{r.Addr}, Username: "edge", Password: "pw", Prefix: "e:"})
	store(t, f, "z", "/k", entry("/k", []byte("x")))
	if _, ok := f.Get(context.Background(), "z", "/k", nil); !ok {
		t.Fatal("the ACL user cannot read its value")
	}
	// The least a fleet's user needs (docs/fleet.md): its keys, the
	// wake-up channel, no dangerous commands. The lock and its wake-up
	// work with it.
	if out, err := r.CLI("ACL", "SETUSER", "edgecache", "on", ">pw", "~edgecache:*", "&edgecache:filled:*",
		"+@read", "+@write", "+@stream", "+@pubsub", "+@scripting", "+@connection", "+@keyspace", "-@dangerous"); err != nil || out != "OK" {
		t.Fatalf("ACL SETUSER: %v %s", err, out)
	}
	least := func(node string) *Fleet {
		return open(t, Config{Addrs: []string{r.Addr}, Username: "edgecache", Password: "pw", Node: node})
	}
	lockWakeUp(t, context.Background(), least("a"), least("b"), r.CLI)
	bad := open(t, Config{Addrs: []string{r.Addr}, Username: "edge", Password: "wrong", Prefix: "e:"})
	if _, ok := bad.Get(context.Background(), "z", "/k", nil); ok {
		t.Fatal("a wrong password read the value")
	}
	if bad.Up() {
		t.Error("a refused password leaves the breaker closed")
	}
}

// A Redis that stops answering costs the first request at most the
// timeout; the breaker then opens and the next requests cost nothing,
// until Redis answers again.
func TestBreaker(t *testing.T) {
	r := testkit.StartRedis(t)
	const timeout = 100 * time.Millisecond
	f := open(t, Config{Addrs: []string{r.Addr}, Timeout: timeout})
	ctx := context.Background()
	store(t, f, "z", "/k", entry("/k", []byte("x")))
	if _, ok := f.Get(ctx, "z", "/k", nil); !ok {
		t.Fatal("no hit with Redis up")
	}
	r.Pause() // a hung Redis: connections accepted, nothing answered
	start := time.Now()
	if _, ok := f.Get(ctx, "z", "/k", nil); ok {
		t.Fatal("hit from a paused Redis")
	}
	first := time.Since(start)
	t.Logf("first request on a hung Redis: %v (timeout %v)", first, timeout)
	if first > timeout+50*time.Millisecond {
		t.Errorf("the first request took %v, over the timeout %v", first, timeout)
	}
	if f.Up() {
		t.Fatal("the breaker did not open")
	}
	var worst time.Duration
	for range 100 {
		start := time.Now()
		f.Get(ctx, "z", "/k", nil)
		f.Claim(ctx, "z", "/k", time.Second)
		worst = max(worst, time.Since(start))
	}
	t.Logf("later requests: at most %v", worst)
	if worst > 5*time.Millisecond {
		t.Errorf("a request with the breaker open took %v", worst)
	}
	r.Resume()
	testkit.Eventually(t, 5*time.Second, func() string {
		if !f.Up() {
			return "the breaker is still open"
		}
		return ""
	})
	if _, ok := f.Get(ctx, "z", "/k", nil); !ok {
		t.Fatal("no hit after Redis came back")
	}
	// Killed and restarted (an empty Redis: no persistence).
	r.Kill()
	f.Get(ctx, "z", "/k", nil)
	if f.Up() {
		t.Fatal("the breaker did not open on a killed Redis")
	}
	r.Restart()
	testkit.Eventually(t, 5*time.Second, func() string {
		if !f.Up() {
			return "the breaker is still open after the restart"
		}
		return ""
	})
	store(t, f, "z", "/k", entry("/k", []byte("y")))
	if e, ok := f.Get(ctx, "z", "/k", nil); !ok || string(e.Body) != "y" {
		t.Fatal("no hit after the restart")
	}
	if n := f.br.changes.Load(); n != 4 {
		t.Errorf("%d changes of state, want 4 (open, close, open, close)", n)
	}
}

// The fill lock: one holder; a waiter on another proxy is woken by the
// holder's store, within 50 ms, and gets the value; a holder that stores
// nothing ends the wait; an expired lock ends it too.
func TestLockWakeUp(t *testing.T) {
	r := testkit.StartRedis(t)
	a := open(t, Config{Addrs: []string{r.Addr}, Node: "a"})
	b := open(t, Config{Addrs: []string{r.Addr}, Node: "b"})
	ctx := context.Background()
	lockWakeUp(t, ctx, a, b, r.CLI)
}

func lockWakeUp(t *testing.T, ctx context.Context, a, b *Fleet, cli func(...string) (string, error)) {
	claim, res := a.Claim(ctx, "z", "/k", 5*time.Second)
	if res != cache.ClaimTaken {
		t.Fatalf("claim: %v", res)
	}
	if _, res := b.Claim(ctx, "z", "/k", 5*time.Second); res != cache.ClaimHeld {
		t.Fatalf("second claim: %v, want held", res)
	}
	var woke time.Time
	var got cache.Awaited
	var wg sync.WaitGroup
	waiting := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(waiting)
		got = b.Await(ctx, "z", "/k", nil, time.Now().Add(5*time.Second), nil)
		woke = time.Now()
	}()
	<-waiting
	// The waiter is subscribed once its wait is registered.
	listening(t, b)
	time.Sleep(20 * time.Millisecond) // a fill that takes a while (the waiter checked the value before)
	store(t, a, "z", "/k", entry("/k", []byte("filled")))
	stored := time.Now()
	claim.Release(cache.Awaited{Result: cache.AwaitStored})
	wg.Wait()
	latency := woke.Sub(stored)
	t.Logf("wake-up after the store: %v", latency)
	if got.Result != cache.AwaitStored || string(got.Entry.Body) != "filled" {
		t.Fatalf("await: %+v", got)
	}
	if latency > 50*time.Millisecond {
		t.Errorf("woken %v after the store, over 50 ms", latency)
	}
	// Measured inside, from the sender's clock; none when the waiter,
	// slow to start on a loaded machine, found the value at its check.
	if _, n, sum := b.Stats.WakeUps.Snapshot(); n > 1 || sum > 0.05 {
		t.Errorf("wake-ups measured from the sender's clock: %d, %.1f ms in all; want at most 1, within 50 ms", n, sum*1e3)
	} else {
		t.Logf("wake-ups measured from the sender's clock: %d, %.2f ms", n, sum*1e3)
	}
	if out, _ := cli("EXISTS", a.keys.lock("z", "/k")); out != "0" {
		t.Errorf("the lock is still held after the release")
	}

	// A fill that stores nothing ends the wait with that news, and how
	// long the key passes requests through (hit-for-miss).
	claim, _ = a.Claim(ctx, "z", "/n", 5*time.Second)
	unstored := make(chan cache.Awaited)
	go func() { unstored <- b.Await(ctx, "z", "/n", nil, time.Now().Add(5*time.Second), nil) }()
	listening(t, b)
	answer := entry("/n", []byte("render failed"))
	answer.Status = 500
	claim.Release(cache.Awaited{Result: cache.AwaitUnstored, Uncacheable: 7 * time.Second, Entry: answer})
	if got := <-unstored; got.Result != cache.AwaitUnstored || got.Uncacheable != 7*time.Second ||
		got.Entry == nil || got.Entry.Status != 500 || string(got.Entry.Body) != "render failed" {
		t.Errorf("after a fill that stored nothing: %+v, want unstored for 7s, with its 500", got)
	}
	done := make(chan cache.AwaitResult)
	if _, res := b.Claim(ctx, "z", "/n", time.Second); res != cache.ClaimTaken {
		t.Errorf("the lock was not free after the release: %v", res)
	}

	// A fill too large for Redis, stored in its proxy only: the waiters
	// fetch for themselves at once, without waiting for the lock in turn.
	claim, _ = a.Claim(ctx, "z", "/big", 5*time.Second)
	go func() {
		done <- b.Await(ctx, "z", "/big", nil, time.Now().Add(5*time.Second), nil).Result
	}()
	listening(t, b)
	big := entry("/big", make([]byte, a.cfg.EntryMax+1))
	a.Store(cache.SharedStore{Zone: "z", Key: "/big", Entry: big, TTL: time.Minute, Claim: claim})
	if res := <-done; res != cache.AwaitAlone {
		t.Errorf("after a fill too large for Redis: %v, want alone", res)
	}

	// A holder that dies: its lock expires, and the wait ends with it.
	a.Claim(ctx, "z", "/d", 300*time.Millisecond)
	start := time.Now()
	ended := b.Await(ctx, "z", "/d", nil, time.Now().Add(5*time.Second), nil).Result
	if waited := time.Since(start); ended != cache.AwaitAbandoned || waited > time.Second {
		t.Errorf("expired lock: %v after %v, want abandoned within its age", ended, waited)
	}
	// And lock_timeout bounds a wait.
	a.Claim(ctx, "z", "/t", 10*time.Second)
	start = time.Now()
	if res := b.Await(ctx, "z", "/t", nil, time.Now().Add(200*time.Millisecond), nil).Result; res != cache.AwaitTimeout || time.Since(start) > time.Second {
		t.Errorf("deadline: %v after %v", res, time.Since(start))
	}
}

// A wait for another proxy's fill ends when Redis dies: the news of that
// fill can no longer come, and the waiter fetches for itself rather than
// wait for lock_timeout.
func TestAwaitEndsWhenRedisDies(t *testing.T) {
	r := testkit.StartRedis(t)
	a := open(t, Config{Addrs: []string{r.Addr}, Node: "a"})
	b := open(t, Config{Addrs: []string{r.Addr}, Node: "b"})
	ctx := context.Background()
	if _, res := a.Claim(ctx, "z", "/k", 10*time.Second); res != cache.ClaimTaken {
		t.Fatal("no claim")
	}
	done := make(chan cache.AwaitResult)
	go func() {
		done <- b.Await(ctx, "z", "/k", nil, time.Now().Add(10*time.Second), nil).Result
	}()
	listening(t, b)
	r.Kill()
	start := time.Now()
	b.Get(ctx, "z", "/other", nil) // a request finds Redis gone: the breaker opens
	select {
	case res := <-done:
		if res != cache.AwaitAbandoned {
			t.Errorf("await: %v, want abandoned", res)
		}
		t.Logf("the wait ended %v after Redis died", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("the wait goes on with Redis dead")
	}
}

// A store Redis refuses (maxmemory reached, noeviction) still ends the
// fill: the waiters are told to fetch for themselves, and the lock is
// free.
func TestRefusedStoreReleases(t *testing.T) {
	r := testkit.StartRedis(t, testkit.RedisArgs("--maxmemory", "2mb", "--maxmemory-policy", "noeviction"))
	a := open(t, Config{Addrs: []string{r.Addr}, Node: "a"})
	b := open(t, Config{Addrs: []string{r.Addr}, Node: "b"})
	ctx := context.Background()
	claim, _ := a.Claim(ctx, "z", "/k", 10*time.Second)
	done := make(chan cache.AwaitResult)
	go func() {
		done <- b.Await(ctx, "z", "/k", nil, time.Now().Add(10*time.Second), nil).Result
	}()
	listening(t, b)
	a.Store(cache.SharedStore{Zone: "z", Key: "/k", Entry: entry("/k", make([]byte, 4<<20)), TTL: time.Minute, Claim: claim})
	select {
	case res := <-done:
		if res != cache.AwaitAlone {
			t.Errorf("await: %v, want alone", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not told of the refused store")
	}
	if out, _ := r.CLI("EXISTS", a.keys.lock("z", "/k")); out != "0" {
		t.Error("the lock is still held")
	}
	if !a.Up() {
		t.Error("a refused write opened the breaker: Redis answered")
	}
}

// A Redis Cluster of 3 masters: an entry and its lock share a slot, and
// get, store and the lock work across the slots.
func TestCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	a := open(t, Config{Addrs: c.Addrs(), Node: "a"})
	b := open(t, Config{Addrs: c.Addrs(), Node: "b"})
	ctx := context.Background()
	for _, key := range []string{"/a", "/b?c=1", "/img/{x}/1", "/ü"} {
		slotOf := func(k string) string {
			out, err := c.Nodes[0].CLI("CLUSTER", "KEYSLOT", k)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		if e, l := slotOf(a.keys.entry("z", key)), slotOf(a.keys.lock("z", key)); e != l {
			t.Errorf("%s: entry in slot %s, lock in %s", key, e, l)
		}
		store(t, a, "z", key, entry(key, []byte("v"+key)))
		if e, ok := b.Get(ctx, "z", key, nil); !ok || string(e.Body) != "v"+key {
			t.Errorf("%s: get from the other proxy: %v", key, ok)
		}
	}
	lockWakeUp(t, ctx, a, b, func(args ...string) (string, error) {
		// The lock lives on one node; EXISTS on the others says 0 or MOVED.
		for _, n := range c.Nodes {
			if out, err := n.CLI(append([]string{"-c"}, args...)...); err == nil && !strings.Contains(out, "MOVED") {
				return out, nil
			}
		}
		return "", nil
	})
}

// listening waits until a wait on f is registered (it then hears every
// fill's end).
func listening(t *testing.T, f *Fleet) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() string {
		f.subs.mu.Lock()
		defer f.subs.mu.Unlock()
		if len(f.subs.waiters) == 0 {
			return "the waiter is not listening yet"
		}
		return ""
	})
}

// The fill lock is a lease its owner renews while the fill runs: a fill
// longer than the lease keeps its waiters, and an owner that stops (its
// proxy died) holds them back a lease at most, not the lock's lock_age.
func TestLockLeaseRenewed(t *testing.T) {
	r := testkit.StartRedis(t)
	a := open(t, Config{Addrs: []string{r.Addr}, Node: "a", Timeout: 250 * time.Millisecond})
	b := open(t, Config{Addrs: []string{r.Addr}, Node: "b", Timeout: 250 * time.Millisecond})
	ctx := context.Background()
	held, res := a.Claim(ctx, "z", "/k", time.Minute)
	if res != cache.ClaimTaken {
		t.Fatalf("claim: %v", res)
	}
	c := held.(*claim)
	lease := leaseBeats * a.heartbeat()
	done := make(chan cache.Awaited, 1)
	go func() { done <- b.Await(ctx, "z", "/k", nil, time.Now().Add(time.Minute), nil) }()
	listening(t, b)
	first := c.lapses.Load()
	testkit.Eventually(t, 3*lease, testkit.Holds("the lease renewed past its first end", func() bool {
		return time.Now().UnixNano() > first && c.lapses.Load() > first
	}))
	select {
	case got := <-done:
		t.Fatalf("the wait ended while the owner renewed its lease: %+v", got)
	default:
	}
	a.Close() // the owner stops renewing, and never releases
	stopped := time.Now()
	select {
	case got := <-done:
		waited := time.Since(stopped)
		t.Logf("the wait ended %v after the owner stopped (lease %v)", waited, lease)
		if got.Result != cache.AwaitAbandoned || waited > lease+a.heartbeat()+time.Second {
			t.Errorf("%+v after %v, want abandoned within the lease", got, waited)
		}
	case <-time.After(lease + 5*time.Second):
		t.Fatal("the wait outlived the lease of an owner that stopped")
	}
}
