package caddymodule

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// heldBackend computes its answer (the version current when asked) as soon
// as a request arrives, then holds it until the test releases it: a slow
// backend whose answer predates whatever happens meanwhile.
type heldBackend struct {
	*testkit.Backend
	version atomic.Int64
	fail    atomic.Bool   // answer 503
	asked   chan struct{} // one per request, once the answer is computed
	release chan struct{} // one per request to answer
}

func newHeldBackend(t *testing.T) *heldBackend {
	b := &heldBackend{asked: make(chan struct{}, 8), release: make(chan struct{}, 8)}
	b.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		version := b.version.Load()
		etag := fmt.Sprintf(`"v%d"`, version)
		b.asked <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		if b.fail.Load() {
			// For its client alone: a fill's waiters do not share it,
			// and ask the backend themselves (collapse.go).
			w.Header().Set("Cache-Control", "private")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "version %d", version)
	})
	return b
}

// purgeDuring starts a request for /k on the site's listener (PUBLIC,
// REFRESH), purges the key while the backend holds the (already computed)
// answer, lets it answer, and returns the request's response once it is
// complete.
func purgeDuring(t *testing.T, s *site, listener string, b *heldBackend) response {
	t.Helper()
	var got response
	var wg sync.WaitGroup
	wg.Go(func() { got = s.get(t, s.url(listener, "/k")) })
	<-b.asked
	activeApp(t).Zone("default").Purge("/k")
	b.version.Add(1)
	b.release <- struct{}{}
	wg.Wait()
	return got
}

const purgeRaceSite = `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1m
		%s
	}
	reverse_proxy $BACKEND
}
`

// TestPurgeDuringFillIsFinal: a purge while the backend computes a fill's
// answer leaves the key uncached; the next request fetches anew.
func TestPurgeDuringFillIsFinal(t *testing.T) {
	b := newHeldBackend(t)
	s := startCaddy(t, globalOptions("zone default 16MiB")+fmt.Sprintf(purgeRaceSite, ""), b.Backend, "PUBLIC")
	expect(t, "the fill", purgeDuring(t, s, "PUBLIC", b), 200, "MISS", "version 0")
	b.release <- struct{}{}
	expect(t, "after the purge", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 1")
}

// TestPurgeDuringBackgroundUpdateIsFinal: a background update whose answer
// was computed before a purge does not store it.
func TestPurgeDuringBackgroundUpdateIsFinal(t *testing.T) {
	b := newHeldBackend(t)
	s := startCaddy(t, globalOptions("zone default 16MiB")+fmt.Sprintf(purgeRaceSite, "use_stale updating\n\t\tbackground_update on"), b.Backend, "PUBLIC")
	zone := activeApp(t).Zone("default")
	b.release <- struct{}{}
	expect(t, "the fill", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 0")
	<-b.asked
	advance(t, 2*time.Minute)
	b.version.Add(1)
	expect(t, "expired", s.get(t, s.url("PUBLIC", "/k")), 200, "STALE", "version 0")
	<-b.asked // the background update, holding version 1
	zone.Purge("/k")
	b.version.Add(1)
	stored, dropped := zone.Stats.Stored.Load(), skipped(zone, cache.SkipPurged)
	b.release <- struct{}{}
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the background update to end", func() bool {
		return zone.Stats.Stored.Load() > stored || skipped(zone, cache.SkipPurged) > dropped
	}))
	b.release <- struct{}{}
	expect(t, "after the purge", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 2")
}

// TestPurgeDuringRevalidationIsFinal: a 304 for an entry purged while it
// was asked about does not bring the entry back.
func TestPurgeDuringRevalidationIsFinal(t *testing.T) {
	b := newHeldBackend(t)
	s := startCaddy(t, globalOptions("zone default 16MiB")+fmt.Sprintf(purgeRaceSite, "revalidate on"), b.Backend, "PUBLIC")
	b.release <- struct{}{}
	expect(t, "the fill", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 0")
	<-b.asked
	advance(t, 2*time.Minute)
	// The backend confirms version 0 (304), asked before the purge.
	var got response
	var wg sync.WaitGroup
	wg.Go(func() { got = s.get(t, s.url("PUBLIC", "/k")) })
	<-b.asked
	activeApp(t).Zone("default").Purge("/k")
	b.release <- struct{}{}
	wg.Wait()
	expect(t, "the revalidation", got, 200, "REVALIDATED", "version 0")
	b.version.Add(1)
	b.release <- struct{}{}
	expect(t, "after the purge", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 1")
}

// TestPurgeDuringLockWaitIsFinal: a request that waited on a fill of an
// expired entry and then revalidates that entry itself (the fill failed)
// does not bring it back if it was purged while the request waited.
func TestPurgeDuringLockWaitIsFinal(t *testing.T) {
	b := newHeldBackend(t)
	s := startCaddy(t, globalOptions("zone default 16MiB")+fmt.Sprintf(purgeRaceSite, "revalidate on\n\t\tlock_timeout 10s"), b.Backend, "PUBLIC")
	zone := activeApp(t).Zone("default")
	b.release <- struct{}{}
	expect(t, "the fill", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 0")
	<-b.asked
	advance(t, 2*time.Minute)
	var leader, waiter response
	var wg sync.WaitGroup
	wg.Go(func() { leader = s.get(t, s.url("PUBLIC", "/k")) })
	<-b.asked // the leader's revalidation, to fail
	waits := zone.Stats.LockWaits.Load()
	wg.Go(func() { waiter = s.get(t, s.url("PUBLIC", "/k")) })
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the second request to wait", func() bool { return zone.Stats.LockWaits.Load() > waits }))
	zone.Purge("/k")
	b.fail.Store(true)
	b.release <- struct{}{}
	<-b.asked // the waiter's revalidation of the purged entry, to confirm it
	b.fail.Store(false)
	b.release <- struct{}{}
	wg.Wait()
	expect(t, "the leader", leader, 503, "EXPIRED", "")
	expect(t, "the waiter", waiter, 200, "REVALIDATED", "version 0")
	b.version.Add(1)
	b.release <- struct{}{}
	expect(t, "after the purge", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 1")
}

func skipped(zone *cache.Zone, reason string) int64 {
	c, ok := zone.Stats.StoreSkipped.Load(reason)
	if !ok {
		return 0
	}
	return c.(*atomic.Int64).Load()
}

// TestPurgeDuringRefreshIsFinal: a refresh through the cache buster whose
// answer was computed before a purge does not store it.
func TestPurgeDuringRefreshIsFinal(t *testing.T) {
	b := newHeldBackend(t)
	s := startCaddy(t, globalOptions("zone default 16MiB")+fmt.Sprintf(purgeRaceSite, "")+`
http://127.0.0.1:$REFRESH {
	edge_cache {
		valid 200 1m
		refresh
	}
	reverse_proxy $BACKEND
}
`, b.Backend, "PUBLIC", "REFRESH")
	expect(t, "the refresh", purgeDuring(t, s, "REFRESH", b), 200, "BYPASS", "version 0")
	b.release <- struct{}{}
	expect(t, "after the purge", s.get(t, s.url("PUBLIC", "/k")), 200, "MISS", "version 1")
}
