package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A Fill is one backend request filling a key. Requests that miss the same
// key while it runs wait for it instead of going to the backend (nginx's
// proxy_cache_lock), and are woken the moment it ends, or the moment it
// starts storing a body they may read as it is written (Publish): no
// polling.
type Fill struct {
	zone      *Zone
	key       string
	done      chan struct{}
	streaming chan struct{} // closed by Publish
	stream    *Stream       // written before streaming is closed
	started   time.Time
	stored    bool // written before done is closed
	waiters   atomic.Int32
}

// fills holds a zone's fills under way, one per key.
type fills struct {
	mu    sync.Mutex
	byKey map[string]*Fill
}

// JoinFill returns the fill under way for key, or starts one. leader reports
// whether the caller must fetch and then call Finish; others call Wait. A
// fill older than lockAge no longer holds others back: the caller leads a
// new one (nginx's proxy_cache_lock_age).
func (z *Zone) JoinFill(key string, lockAge time.Duration) (fill *Fill, leader bool) {
	now := z.clock.Now()
	g := &z.fills
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.byKey[key]; ok && (lockAge <= 0 || now.Sub(f.started) < lockAge) {
		return f, false
	}
	if g.byKey == nil {
		g.byKey = make(map[string]*Fill)
	}
	f := &Fill{zone: z, key: key, done: make(chan struct{}), streaming: make(chan struct{}), started: now}
	g.byKey[key] = f
	return f, true
}

// Finish ends the fill and wakes its waiters; stored tells them whether the
// entry is now in the zone. A newer fill that replaced this one after
// lockAge stays in place.
func (f *Fill) Finish(stored bool) {
	g := &f.zone.fills
	g.mu.Lock()
	if g.byKey[f.key] == f {
		delete(g.byKey, f.key)
	}
	g.mu.Unlock()
	f.stored = stored
	close(f.done)
}

// Publish gives the fill's waiters the entry it is storing, to read as it
// is written (a Shared stream); called once, by the leader.
func (f *Fill) Publish(s *Stream) {
	f.stream = s
	close(f.streaming)
}

// Wait blocks until the fill ends (reporting whether it stored an entry) or
// publishes a stream (returned; the fill goes on), the timeout passes or ctx
// is done.
func (f *Fill) Wait(ctx context.Context, timeout time.Duration) (ended, stored bool, stream *Stream) {
	f.zone.Stats.LockWaits.Add(1)
	return f.wait(ctx, timeout, f.streaming)
}

// WaitEnd is Wait for a waiter that cannot use the fill's stream (another
// variant, or it failed before the answer began): it waits for the end.
func (f *Fill) WaitEnd(ctx context.Context, timeout time.Duration) (ended, stored bool) {
	ended, stored, _ = f.wait(ctx, timeout, nil)
	return ended, stored
}

func (f *Fill) wait(ctx context.Context, timeout time.Duration, streaming chan struct{}) (ended, stored bool, stream *Stream) {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-f.done:
		return true, f.stored, nil
	case <-streaming:
		return false, false, f.stream
	case <-t.C:
	case <-ctx.Done():
	}
	f.zone.Stats.LockTimeouts.Add(1)
	return false, false, nil
}
