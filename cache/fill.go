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
// polling. A wait for another proxy's fill (Shared.Await) ends in the same
// Awaited, so the flow reads both with one loop.
type Fill struct {
	zone      *Zone
	key       string
	done      chan struct{}
	streaming chan struct{} // closed by Publish
	stream    *Stream       // written before streaming is closed
	started   time.Time
	end       Awaited // written before done is closed
	waiters   atomic.Int32
}

// Awaited is how a wait for a fill ended: a local one (Fill.Wait) or
// another proxy's (Shared.Await).
type Awaited struct {
	Result AwaitResult
	// Entry is, for AwaitStored, the entry the fill stored, when the wait
	// has it (another proxy's, read from the shared tier; a local one is
	// looked up). For AwaitUnstored, the fill's answer when its waiters
	// may have it too (a 5xx no client shaped: see the flow); else nil.
	Entry *Entry
	// Stream is the entry being written (AwaitStreaming).
	Stream *Stream
	// Uncacheable is how long the key passes requests straight through
	// (AwaitUnstored from another proxy; the local leader marks its zone
	// itself): Zone.MarkUncacheable.
	Uncacheable time.Duration
}

// AwaitResult says how a wait for a fill ended.
type AwaitResult uint8

const (
	AwaitTimeout   AwaitResult = iota // the deadline passed, or the context ended
	AwaitStored                       // the fill stored its entry
	AwaitStreaming                    // the fill stores its entry: Stream reads it as it is written (the fill goes on)
	// AwaitUnstored: the fill's answer is not stored (uncacheable, a
	// failure, a body cut short). Its waiters do not queue for the lock
	// one at a time: they share its answer or go to the backend together
	// (Varnish's hit-for-miss).
	AwaitUnstored
	// AwaitAlone: another proxy's fill stored its entry in its own tiers
	// only (over the shared tier's size limit, or the write failed): each
	// proxy fetches and stores for itself, without the lock.
	AwaitAlone
	// AwaitAbandoned: the fill ended with no answer to give (its lock
	// expired, its proxy or the shared tier went away, what it stored was
	// purged at once, or it stored another variant): a waiter leads the
	// next fill.
	AwaitAbandoned
)

// fills holds a zone's fills under way, one per key, and the keys whose
// last fill stored nothing (hit-for-miss).
type fills struct {
	mu    sync.Mutex
	byKey map[string]*Fill
	// uncacheable: key -> until when its requests pass straight through.
	uncacheable map[string]time.Time
	// swept is the size of uncacheable after its last sweep of expired
	// keys: the next comes when it has doubled.
	swept int
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

// Finish ends the fill and wakes its waiters with end (AwaitStored,
// AwaitUnstored with the answer they may share, or AwaitAbandoned). A
// newer fill that replaced this one after lockAge stays in place.
func (f *Fill) Finish(end Awaited) {
	g := &f.zone.fills
	g.mu.Lock()
	if g.byKey[f.key] == f {
		delete(g.byKey, f.key)
	}
	g.mu.Unlock()
	f.end = end
	close(f.done)
}

// Publish gives the fill's waiters the entry it is storing, to read as it
// is written (a Shared stream); called once, by the leader.
func (f *Fill) Publish(s *Stream) {
	f.stream = s
	close(f.streaming)
}

// Wait blocks until the fill ends, or publishes a stream (AwaitStreaming:
// the fill goes on), deadline passes or ctx is done.
func (f *Fill) Wait(ctx context.Context, deadline time.Time) Awaited {
	f.zone.Stats.LockWaits.Add(1)
	return f.wait(ctx, deadline, f.streaming)
}

// WaitEnd is Wait for a waiter that cannot use the fill's stream (another
// variant, or it failed before the answer began): it waits for the end.
func (f *Fill) WaitEnd(ctx context.Context, deadline time.Time) Awaited {
	return f.wait(ctx, deadline, nil)
}

func (f *Fill) wait(ctx context.Context, deadline time.Time, streaming chan struct{}) Awaited {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	t := time.NewTimer(deadline.Sub(f.zone.clock.Now()))
	defer t.Stop()
	select {
	case <-f.done:
		return f.end
	case <-streaming:
		return Awaited{Result: AwaitStreaming, Stream: f.stream}
	case <-t.C:
	case <-ctx.Done():
	}
	f.zone.Stats.LockTimeouts.Add(1)
	return Awaited{Result: AwaitTimeout}
}

// MarkUncacheable remembers, for d, that the key's fills store nothing
// (Varnish's hit-for-miss object): its requests then go to the backend
// straight away, without the lock. d <= 0 forgets it, as a fill that
// stores does.
func (z *Zone) MarkUncacheable(key string, d time.Duration) {
	now := z.clock.Now()
	g := &z.fills
	g.mu.Lock()
	defer g.mu.Unlock()
	if d <= 0 {
		delete(g.uncacheable, key)
		return
	}
	if g.uncacheable == nil {
		g.uncacheable = make(map[string]time.Time)
	}
	g.uncacheable[key] = now.Add(d)
	if len(g.uncacheable) > max(2*g.swept, 1024) {
		// Keys nobody asks for again are dropped here, in time linear
		// in the keys added since the last sweep.
		for k, until := range g.uncacheable {
			if !now.Before(until) {
				delete(g.uncacheable, k)
			}
		}
		g.swept = len(g.uncacheable)
	}
}

// Uncacheable reports whether the key is marked (MarkUncacheable) now.
func (z *Zone) Uncacheable(key string) bool {
	g := &z.fills
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.uncacheable[key]
	if ok && !z.clock.Now().Before(until) {
		delete(g.uncacheable, key)
		ok = false
	}
	return ok
}
