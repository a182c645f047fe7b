package caddymodule

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// concurrently runs n GETs of url at once and returns their responses.
func concurrently(t *testing.T, s *site, n int, url string, header ...string) []response {
	t.Helper()
	out := make([]response, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = s.get(t, url, header...)
		})
	}
	close(start)
	wg.Wait()
	return out
}

func countStatuses(rs []response) map[string]int {
	m := make(map[string]int)
	for _, r := range rs {
		m[r.cacheStatus()]++
	}
	return m
}

func TestLockCoalescesMisses(t *testing.T) {
	release := make(chan struct{})
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		time.Sleep(300 * time.Millisecond) // a slow backend, still after everyone waits
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 20s
		lock_age 20s
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	const n = 50
	zone := activeApp(t).Zone("default")
	go func() {
		// Hold the backend until every other request is waiting for the fill.
		testkit.Eventually(t, 5*time.Second, testkit.Holds("the requests to wait for the fill", func() bool { return zone.Stats.LockWaits.Load() == n-1 }))
		close(release)
	}()
	rs := concurrently(t, s, n, s.url("PUBLIC", "/locked"))
	if be.Requests() != 1 {
		t.Errorf("%d concurrent misses made %d backend requests, want 1", n, be.Requests())
	}
	for i, r := range rs {
		if r.Status != 200 || r.Body != "/locked v1" || r.Err != nil {
			t.Errorf("client %d: %d %q %v", i, r.Status, r.Body, r.Err)
		}
	}
	if st := countStatuses(rs); st["MISS"] != 1 || st["HIT"] != n-1 {
		t.Errorf("statuses %v, want 1 MISS and %d HIT", st, n-1)
	}
}

func TestLockOff(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(200 * time.Millisecond) // a slow backend
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock off
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	concurrently(t, s, 5, s.url("PUBLIC", "/unlocked"))
	if be.Requests() != 5 {
		t.Errorf("lock off: %d backend requests, want 5", be.Requests())
	}
}

// gate holds backend requests until the test releases them, one by one.
type gate struct {
	mu    sync.Mutex
	chans map[int64]chan struct{}
}

func (g *gate) ch(n int64) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.chans == nil {
		g.chans = make(map[int64]chan struct{})
	}
	if g.chans[n] == nil {
		g.chans[n] = make(chan struct{})
	}
	return g.chans[n]
}

// wait holds the n-th backend request until it is released or its client
// (the proxy) goes away, so that a failed test does not hang its cleanup.
func (g *gate) wait(r *http.Request, n int64) {
	select {
	case <-g.ch(n):
	case <-r.Context().Done():
	}
}

func (g *gate) release(n int64) { close(g.ch(n)) }

func TestLockTimeout(t *testing.T) {
	var g gate
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		g.wait(r, n) // a slow backend: as slow as the test wants
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 200ms
		lock_age 1m
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/slow")
	const n = 5
	leaderDone := make(chan response)
	go func() { leaderDone <- s.get(t, u) }()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the leader at the backend", func() bool { return be.Requests() == 1 }))

	var rs []response
	waitersDone := make(chan struct{})
	go func() {
		defer close(waitersDone)
		rs = concurrently(t, s, n-1, u)
	}()
	// The waiters reach the backend while the leader is still held there:
	// after lock_timeout, without waiting for the fill.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the waiters at the backend", func() bool { return be.Requests() == n }))
	reqs := be.Seen()
	for i, req := range reqs[1:] {
		if lag := req.At.Sub(reqs[0].At); lag < 190*time.Millisecond {
			t.Errorf("waiter %d reached the backend %v after the leader, before lock_timeout", i, lag)
		}
	}
	// The leader finishes and stores first; then the waiters. Had they
	// stored, the entry would be one of theirs.
	g.release(1)
	expect(t, "leader", <-leaderDone, 200, "MISS", "/slow v1")
	for i := int64(2); i <= n; i++ {
		g.release(i)
	}
	<-waitersDone
	for i, r := range rs {
		if r.Status != 200 || r.cacheStatus() != "MISS" || r.Err != nil {
			t.Errorf("waiter %d: %d %s %v", i, r.Status, r.cacheStatus(), r.Err)
		}
	}
	expect(t, "after", s.get(t, u), 200, "HIT", "/slow v1")
	if lt := activeApp(t).Zone("default").Stats.LockTimeouts.Load(); lt != n-1 {
		t.Errorf("%d lock timeouts, want %d", lt, n-1)
	}
}

func TestLockAge(t *testing.T) {
	var g gate
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		g.wait(r, n)
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 20s
		lock_age 1s
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	zone := activeApp(t).Zone("default")
	u := s.url("PUBLIC", "/aged")
	first, early, late := make(chan response), make(chan response), make(chan response)
	go func() { first <- s.get(t, u) }()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the first request at the backend", func() bool { return be.Requests() == 1 }))
	go func() { early <- s.get(t, u) }() // within lock_age: waits
	testkit.Eventually(t, 5*time.Second, testkit.Holds("a request waiting for the fill", func() bool { return zone.Stats.LockWaits.Load() == 1 }))
	if be.Requests() != 1 {
		t.Fatalf("a request within lock_age went to the backend")
	}
	// Past lock_age: the fill no longer holds requests back.
	advance(t, 1050*time.Millisecond)
	go func() { late <- s.get(t, u) }() // after lock_age: one more may go
	// It reaches the backend while the first is still held there.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("a second backend request after lock_age", func() bool { return be.Requests() == 2 }))
	g.release(1)
	expect(t, "first", <-first, 200, "MISS", "/aged v1")
	expect(t, "early", <-early, 200, "HIT", "/aged v1")
	g.release(2)
	expect(t, "late", <-late, 200, "MISS", "/aged v2")
	expect(t, "after", s.get(t, u), 200, "HIT", "/aged v2")
	if be.Requests() != 2 {
		t.Errorf("%d backend requests, want 2", be.Requests())
	}
}

// A response that is not stored (here: a session cookie, not ignored) is
// never handed to the requests that waited for it.
func TestLockNeverSharesPrivateResponse(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(300 * time.Millisecond) // a slow backend
		w.Header().Set("Set-Cookie", fmt.Sprintf("sessionid=user%d", n))
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 10s
		lock_age 10s
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	const n = 10
	rs := concurrently(t, s, n, s.url("PUBLIC", "/session"))
	if be.Requests() != n {
		t.Errorf("%d backend requests for %d clients, want one each", be.Requests(), n)
	}
	bodies := make(map[string]bool)
	for i, r := range rs {
		if r.Status != 200 || r.cacheStatus() == "HIT" {
			t.Errorf("client %d: %d %s", i, r.Status, r.cacheStatus())
		}
		if bodies[r.Body] {
			t.Errorf("client %d got a response another client got: %q", i, r.Body)
		}
		bodies[r.Body] = true
	}
}
