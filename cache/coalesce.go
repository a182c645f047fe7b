package cache

import (
	"context"
	"sync"
	"time"
)

// A flight is one backend request that fills a key. Requests that miss the
// same key while it runs wait for it instead of going to the backend
// (nginx's proxy_cache_lock), and are woken the moment it ends: no polling.
type flight struct {
	done    chan struct{}
	started time.Time
	stored  bool // written before done is closed
}

// flightGroup holds the flights under way, one per key.
type flightGroup struct {
	mu      sync.Mutex
	flights map[string]*flight
}

// join returns the flight for key and whether the caller leads it. A flight
// older than lockAge no longer holds others back: the caller leads a new one
// (nginx's proxy_cache_lock_age).
func (g *flightGroup) join(key string, now time.Time, lockAge time.Duration) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok && (lockAge <= 0 || now.Sub(f.started) < lockAge) {
		return f, false
	}
	if g.flights == nil {
		g.flights = make(map[string]*flight)
	}
	f := &flight{done: make(chan struct{}), started: now}
	g.flights[key] = f
	return f, true
}

// finish ends a flight and wakes its waiters. A newer flight that replaced
// it after lockAge stays in place.
func (g *flightGroup) finish(key string, f *flight, stored bool) {
	g.mu.Lock()
	if g.flights[key] == f {
		delete(g.flights, key)
	}
	g.mu.Unlock()
	f.stored = stored
	close(f.done)
}

// wait blocks until the flight ends, the timeout passes or ctx is done.
// It reports whether the flight ended and stored an entry.
func (f *flight) wait(ctx context.Context, timeout time.Duration) (ended, stored bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return true, f.stored
	case <-t.C:
		return false, false
	case <-ctx.Done():
		return false, false
	}
}
