package fleet_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// Redis stalls (SIGSTOP, as in a fork or fsync stall or a failover) for
// 5 s while 10 clients on proxy A and 10 on proxy B wait for one
// uncached URL whose backend takes 3 s, A holding the fleet lock. B's
// wait is bounded by the fill it waits for plus the timeout, whatever
// becomes of A's release: B checks the lock's heartbeat, finds Redis
// silent, and fetches for itself. Every client is answered within the
// backend's time plus 1 s, and the backend gets at most 2 requests.
func TestRedisStallDuringFill(t *testing.T) {
	r := testkit.StartRedis(t)
	const backendTime = 3 * time.Second
	o := newOrigin(t, backendTime)
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: o.Addr(), Shared: "timeout 100ms",
		Handler: "lock_age 1m\n\t\tlock_timeout 1m"})
	a, b := ps[0], ps[1]
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.mustGet(t, "/warm") }) // connections up
	}
	wg.Wait()

	const path = "/webgateway/render_image/9/0/0/"
	type answer struct {
		proxy string
		response
		err  error
		took time.Duration
	}
	var mu sync.Mutex
	var answers []answer
	clients := func(p *proxy) {
		for range 10 {
			wg.Go(func() {
				start := time.Now()
				res, err := p.get(path)
				mu.Lock()
				answers = append(answers, answer{p.Name, res, err, time.Since(start)})
				mu.Unlock()
			})
		}
	}
	clients(a)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("A's fill to reach the origin", func() bool { return o.RequestsFor(path) == 1 }))
	waits := b.metric(t, "edgecache_shared_lock_waits_total")
	clients(b)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("B to wait for A's fill", func() bool {
		return b.metric(t, "edgecache_shared_lock_waits_total") > waits
	}))
	r.Pause()
	resume := time.AfterFunc(5*time.Second, r.Resume) // the stall's length
	t.Cleanup(func() { resume.Stop(); r.Resume() })
	wg.Wait()

	want := o.body(path)
	var took []time.Duration
	for _, a := range answers {
		if a.err != nil || a.status != 200 || !bytes.Equal(a.body, want) {
			t.Errorf("%s: %v %d %.60q", a.proxy, a.err, a.status, a.body)
		}
		took = append(took, a.took)
	}
	slices.Sort(took)
	worst := func(name string) (w time.Duration) {
		for _, a := range answers {
			if a.proxy == name {
				w = max(w, a.took)
			}
		}
		return w
	}
	t.Logf("%d clients: median %v, last %v (A's last %v, B's last %v); %d backend requests",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		worst(a.Name).Round(time.Millisecond), worst(b.Name).Round(time.Millisecond), o.RequestsFor(path))
	if last := took[len(took)-1]; last > backendTime+time.Second {
		t.Errorf("the last client was answered after %v, want within %v", last, backendTime+time.Second)
	}
	if n := o.RequestsFor(path); n > 2 {
		t.Errorf("%d backend requests, want at most 2", n)
	}
}
