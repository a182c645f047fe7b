package fleet_test

import (
	"bytes"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// 100 cold requests for one URL spread over 3 proxies make 1 origin
// request; the proxies that did not fetch are woken when the value lands
// in Redis and answer within 50 ms of it.
func TestStampede(t *testing.T) {
	r := testkit.StartRedis(t)
	stampede(t, []string{r.Addr})
}

// The same on a Redis Cluster of 3 masters.
func TestStampedeCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	stampede(t, c.Addrs())
}

func stampede(t *testing.T, redisAddrs []string) {
	o := newOrigin(t, 300*time.Millisecond)
	ps := startFleet(t, 3, redisAddrs, fleetOptions{Origin: o.Addr()})
	for _, p := range ps {
		p.mustGet(t, "/warm") // connections up, so the stampede's requests arrive together
	}
	const path = "/webgateway/render_image/1/0/0/"
	type answer struct {
		proxy int
		response
		err error
	}
	answers := make([]answer, 100)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := ps[i%3].get(path)
			answers[i] = answer{i % 3, res, err}
		}()
	}
	close(start)
	wg.Wait()

	if n := o.RequestsFor(path); n != 1 {
		t.Errorf("%d origin requests, want 1 for the whole fleet", n)
	}
	want := o.body(path)
	filler := -1
	misses := 0
	for _, a := range answers {
		if a.err != nil || a.status != 200 || !bytes.Equal(a.body, want) {
			t.Fatalf("%s: %v %d %.60q", ps[a.proxy].Name, a.err, a.status, a.body)
		}
		if a.cache == "MISS" {
			misses++
			filler = a.proxy
		}
	}
	if misses != 1 {
		t.Errorf("%d MISS answers, want 1 (the rest HIT)", misses)
	}
	// The waiters on the other proxies: answered within 50 ms of the
	// store. The store follows the end of the filling request's answer
	// (the MISS): measured from there, the clients' own delays (100 of
	// them on a shared machine) count on both sides.
	var stored time.Time
	for _, a := range answers {
		if a.cache == "MISS" {
			stored = a.done
		}
	}
	var late, local []time.Duration
	shared := 0
	for _, a := range answers {
		if a.proxy == filler {
			local = append(local, a.done.Sub(stored))
			continue
		}
		late = append(late, a.done.Sub(stored))
		if a.tier == "shared" {
			shared++
		}
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	sort.Slice(local, func(i, j int) bool { return local[i] < local[j] })
	t.Logf("after the filling request's answer: its proxy's other clients %v (median), %v (last); the other proxies' clients %v (median), %v (last); the origin's answer ended %v before it",
		local[len(local)/2], local[len(local)-1], late[len(late)/2], late[len(late)-1], stored.Sub(o.doneAt(path)))
	if worst := late[len(late)-1]; worst > time.Second {
		t.Errorf("a waiter on another proxy was answered %v after the store: not woken by it", worst)
	}
	// Inside the proxies, from the filler sending its value to Redis (its
	// clock; one machine here) to the waiting proxy holding the value:
	// within 50 ms. (The clients' timings above add the test's own 100
	// clients on a shared machine: logged only.)
	for _, p := range ps {
		if p.Name == ps[filler].Name {
			continue
		}
		n := p.metric(t, "edgecache_shared_wakeup_seconds_count")
		within := p.metric(t, "edgecache_shared_wakeup_seconds_bucket", `le="0.05"`)
		sum := p.metric(t, "edgecache_shared_wakeup_seconds_sum")
		t.Logf("%s: woken %.0f times, %.2f ms after the store on average", p.Name, n, sum/max(n, 1)*1e3)
		// None when the proxy's waiter found the value at its first
		// check (it came to Redis after the store); the clients' bound
		// above holds then.
		if within != n {
			t.Errorf("%s: %.0f of %.0f wake-ups within 50 ms of the store", p.Name, within, n)
		}
	}
	// Each other proxy took it from Redis once (its local waiters from it).
	if shared < 2 {
		t.Errorf("%d answers from the shared tier, want one per other proxy at least", shared)
	}
	for _, p := range ps {
		if p.metric(t, "edgecache_shared_up") != 1 {
			t.Errorf("%s: edgecache_shared_up is not 1", p.Name)
		}
	}
}
