package caddymodule

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
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
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(300 * time.Millisecond)
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
	const n = 50
	rs := concurrently(t, s, n, s.url("PUBLIC", "/locked"))
	if be.hits() != 1 {
		t.Errorf("%d concurrent misses made %d backend requests, want 1", n, be.hits())
	}
	for i, r := range rs {
		if r.Status != 200 || r.Body != "/locked v1" || r.Err != nil {
			t.Errorf("client %d: %d %q %v", i, r.Status, r.Body, r.Err)
		}
	}
	if st := countStatuses(rs); st["MISS"] != 1 || st["HIT"] != n-1 {
		t.Errorf("statuses %v, want 1 MISS and %d HIT", st, n-1)
	}
	if w := activeApp(t).Zone("default").Stats.LockWaits.Load(); w != n-1 {
		t.Errorf("%d lock waits, want %d", w, n-1)
	}
}

func TestLockOff(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(200 * time.Millisecond)
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
	if be.hits() != 5 {
		t.Errorf("lock off: %d backend requests, want 5", be.hits())
	}
}

func TestLockTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(2 * time.Second)
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
	var leader response
	done := make(chan struct{})
	go func() {
		defer close(done)
		leader = s.get(t, u)
	}()
	waitUntil(t, "the leader at the backend", func() bool { return be.hits() == 1 })
	rs := concurrently(t, s, n-1, u)
	<-done

	if be.hits() != n {
		t.Fatalf("%d backend requests, want %d (the leader, then each waiter after lock_timeout)", be.hits(), n)
	}
	reqs := be.seen()
	for i, req := range reqs[1:] {
		// The waiters went to the backend while the leader was still there:
		// after lock_timeout, not after the leader finished.
		if lag := req.At.Sub(reqs[0].At); lag < 150*time.Millisecond || lag > 1500*time.Millisecond {
			t.Errorf("waiter %d reached the backend %v after the leader", i, lag)
		}
	}
	expect(t, "leader", leader, 200, "MISS", "/slow v1")
	for i, r := range rs {
		if r.Status != 200 || r.cacheStatus() != "MISS" || r.Err != nil {
			t.Errorf("waiter %d: %d %s %v", i, r.Status, r.cacheStatus(), r.Err)
		}
	}
	// The waiters finished after the leader; had they stored, the entry
	// would be one of theirs.
	expect(t, "after", s.get(t, u), 200, "HIT", "/slow v1")
	if lt := activeApp(t).Zone("default").Stats.LockTimeouts.Load(); lt != n-1 {
		t.Errorf("%d lock timeouts, want %d", lt, n-1)
	}
}

func TestLockAge(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(1500 * time.Millisecond)
		versioned(w, r, n)
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 10s
		lock_age 300ms
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/aged")
	var wg sync.WaitGroup
	var first, early, late response
	wg.Go(func() { first = s.get(t, u) })
	waitUntil(t, "the first request at the backend", func() bool { return be.hits() == 1 })
	start := time.Now()
	wg.Go(func() { early = s.get(t, u) }) // within lock_age: waits
	time.Sleep(100 * time.Millisecond)
	if be.hits() != 1 {
		t.Errorf("a request within lock_age went to the backend")
	}
	time.Sleep(time.Until(start.Add(400 * time.Millisecond)))
	wg.Go(func() { late = s.get(t, u) }) // after lock_age: one more may go
	waitUntil(t, "a second backend request after lock_age", func() bool { return be.hits() == 2 })
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("the second backend request came %v after the first, when the first was still running", elapsed)
	}
	wg.Wait()
	if be.hits() != 2 {
		t.Errorf("%d backend requests, want 2", be.hits())
	}
	expect(t, "first", first, 200, "MISS", "/aged v1")
	expect(t, "early", early, 200, "HIT", "/aged v1")
	expect(t, "late", late, 200, "MISS", "/aged v2")
	expect(t, "after", s.get(t, u), 200, "HIT", "/aged v2")
}

// A response that is not stored (here: a session cookie, not ignored) is
// never handed to the requests that waited for it.
func TestLockNeverSharesPrivateResponse(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(300 * time.Millisecond)
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
	if be.hits() != n {
		t.Errorf("%d backend requests for %d clients, want one each", be.hits(), n)
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
