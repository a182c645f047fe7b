package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
)

// The fleet-wide fill lock. A proxy's local fill leader (cache.JoinFill)
// takes the key's lock in Redis with SET NX PX, for a short lease that its
// owner renews while the fill runs (up to the handler's lock_age). The
// proxies that find it taken wait for that fill: they are woken through
// pub/sub on the key's filled channel when the holder's value lands in
// Redis (or when it gives up), and check the lock's heartbeat meanwhile,
// so that no wait outlasts the fill by more than a heartbeat and the
// timeout, whatever becomes of its owner or of Redis (a stall, say): a
// lock whose owner died, or whose release failed, lapses within a lease.
// The holder releases the lock only if it is still its own (compare and
// delete, in one script with the publish), and retries a release that
// failed.

// Messages on a filled channel: "1 <microseconds>", the storing proxy's
// clock (Unix time) as it sent the value (waiters measure their wake-up
// from it; Redis's TIME would need one more ACL right);
// "0 <milliseconds>[ <answer>]" when the fill ended without storing: its
// waiters share its answer (a 5xx, encoded as a value is) or go to the
// backend at once, and the key passes requests straight through for that
// long (hit-for-miss); "L" when the fill stored its entry in its own tiers only
// (too large for Redis, or the write failed: each proxy fetches for
// itself, at once). "G", never sent, is what a wait hears when Redis
// goes: the fill is abandoned as far as this proxy can tell.
const (
	msgStored   = "1"
	msgUnstored = "0"
	msgLocal    = "L"
	msgGone     = "G"
)

// announce is the Lua that ends a fill: it deletes the lock if it still
// holds the holder's token (KEYS[lock], ARGV[token]) and publishes the
// message on the channel (ARGV[channel]; the channel is no key: Redis
// Cluster sends a PUBLISH to every node, whatever its slot).
const announce = `
if redis.call("GET", KEYS[%[1]d]) == ARGV[%[2]d] then redis.call("DEL", KEYS[%[1]d]) end
return redis.call("PUBLISH", ARGV[%[3]d], ARGV[%[4]d])
`

// releaseScript ends a fill: KEYS[1] lock; ARGV[1] token, ARGV[2]
// channel, ARGV[3] message.
var releaseScript = redis.NewScript(fmt.Sprintf(announce, 1, 1, 2, 3))

// storeScript writes a value, then ends its fill as releaseScript does:
// one round trip, so that no time passes between the value landing and
// the waiters hearing of it. KEYS[1] entry, KEYS[2] lock (one slot);
// ARGV[1] value, ARGV[2] expiry in milliseconds, ARGV[3] token, ARGV[4]
// channel, ARGV[5] the stored message.
var storeScript = redis.NewScript(`redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])` + fmt.Sprintf(announce, 2, 3, 4, 5))

// renewScript extends the lock's lease if it still holds the holder's
// token: KEYS[1] lock; ARGV[1] token, ARGV[2] lease in milliseconds.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0
`)

// heartbeat is how often a lock's owner renews its lease and its waiters
// check it: a few times the timeout, so that a slow answer is not taken
// for a dead owner. The lease is leaseBeats heartbeats: an owner that
// dies, or a release that never lands, holds the waiters back that long
// at most.
func (f *Fleet) heartbeat() time.Duration { return max(minHeartbeat, 2*f.cfg.Timeout) }

const (
	minHeartbeat = 200 * time.Millisecond
	leaseBeats   = 5
	// lastWordWait is how long a release's message may trail the lock's
	// deletion (lastWord); one later than that costs a backend request.
	lastWordWait = 100 * time.Millisecond
)

// claim is a fill lock this proxy holds.
type claim struct {
	f           *Fleet
	lock, chan_ string
	token       string
	released    atomic.Bool
	// ended stops the renewals; lapses is when the lease runs out if no
	// renewal lands (Unix nanoseconds).
	ended  chan struct{}
	lapses atomic.Int64
}

// Claim tries to take the fill lock of the zone's key for age (the
// handler's lock_age): a lease renewed while the fill runs, up to age.
func (f *Fleet) Claim(ctx context.Context, zone, key string, age time.Duration) (cache.SharedClaim, cache.ClaimResult) {
	c := &claim{f: f, lock: f.keys.lock(zone, key), chan_: f.keys.filled(zone, key), token: f.token(), ended: make(chan struct{})}
	lease := min(leaseBeats*f.heartbeat(), age)
	var taken bool
	err := f.Do(ctx, func(ctx context.Context) error {
		var err error
		taken, err = f.rdb.SetNX(ctx, c.lock, c.token, lease).Result()
		return err
	})
	switch {
	case err != nil:
		return nil, cache.ClaimUnavailable
	case taken:
		c.lapses.Store(time.Now().Add(lease).UnixNano())
		if lease < age {
			go c.renew(time.Now().Add(age))
		}
		return c, cache.ClaimTaken
	}
	return nil, cache.ClaimHeld
}

// renew extends the lease every heartbeat until the claim is released or
// until (lock_age): the heartbeat its waiters check.
func (c *claim) renew(until time.Time) {
	beat := c.f.heartbeat()
	t := time.NewTicker(beat)
	defer t.Stop()
	for {
		select {
		case <-c.ended:
			return
		case now := <-t.C:
			if c.f.closed.Load() || !now.Before(until) {
				return
			}
			lease := min(leaseBeats*beat, until.Sub(now))
			err := c.f.Do(context.Background(), func(ctx context.Context) error {
				return renewScript.Run(ctx, c.f.rdb, []string{c.lock}, c.token, lease.Milliseconds()).Err()
			})
			if err == nil {
				c.lapses.Store(now.Add(lease).UnixNano())
			}
		}
	}
}

// token names one holding of a lock: this node, and a random part.
func (f *Fleet) token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return f.cfg.Node + ":" + hex.EncodeToString(b[:])
}

// Release gives the lock up, if it is still this proxy's, and tells the
// waiters how the fill ended: stored, stored here only, or not stored
// (for how long the key passes requests straight through, with the
// answer they may share, encoded as a value is). Once; on a detached
// context (the request may be over), bounded by the timeout.
func (c *claim) Release(end cache.Awaited) {
	switch end.Result {
	case cache.AwaitStored:
		c.release(storedMsg())
	case cache.AwaitAlone:
		c.release(msgLocal)
	default:
		msg := msgUnstored + " " + strconv.FormatInt(end.Uncacheable.Milliseconds(), 10)
		if e := end.Entry; e != nil && e.InMemory() && int64(len(e.Body)) <= c.f.cfg.EntryMax {
			if v, err := encodeValue(c.chan_, e.Meta, e.Body); err == nil {
				msg += " " + string(v)
			}
		}
		c.release(msg)
	}
}

// storedMsg is the message of a value that landed, sent now.
func storedMsg() string { return msgStored + " " + strconv.FormatInt(time.Now().UnixMicro(), 10) }

// release ends the fill with msg, once. One that fails (Redis stalled or
// gone) is retried every heartbeat while the lease lasts: the waiters
// hear the news as soon as Redis answers again (after that, the lock has
// lapsed and they have moved on by themselves).
func (c *claim) release(msg string) {
	if !c.released.CompareAndSwap(false, true) {
		return
	}
	close(c.ended)
	run := func() error {
		return c.f.Do(context.Background(), func(ctx context.Context) error {
			return releaseScript.Run(ctx, c.f.rdb, []string{c.lock}, c.token, c.chan_, msg).Err()
		})
	}
	if run() == nil {
		return
	}
	c.f.Stats.ReleaseRetries.Add(1)
	go func() {
		beat := c.f.heartbeat()
		for !c.f.closed.Load() && time.Now().Add(beat).UnixNano() < c.lapses.Load() {
			time.Sleep(beat)
			if run() == nil {
				return
			}
		}
	}()
}

// markReleased records a release made by storeScript.
func (c *claim) markReleased() {
	if c.released.CompareAndSwap(false, true) {
		close(c.ended)
	}
}

// Await waits for another proxy's fill of the zone's key (see
// cache.Shared): woken by its message, and checking the lock's heartbeat
// every heartbeat meanwhile. It listens on the key's channel before it
// checks the value and the lock, so a fill that ends in between is not
// missed.
func (f *Fleet) Await(ctx context.Context, zone, key string, req http.Header, deadline time.Time, usable func(*cache.Entry) bool) cache.Awaited {
	f.Stats.LockWaits.Add(1)
	abandoned := cache.Awaited{Result: cache.AwaitAbandoned}
	channel := f.keys.filled(zone, key)
	wake, err := f.subs.listen(ctx, channel)
	if err != nil {
		// No subscription (Redis down): no one to wait for.
		return abandoned
	}
	defer f.subs.forget(channel, wake)
	// Landed, or ended, before the subscription?
	var value []byte
	var lockTTL time.Duration
	lock := f.keys.lock(zone, key)
	err = f.Do(ctx, func(ctx context.Context) error {
		p := f.rdb.Pipeline()
		get := p.Get(ctx, f.keys.entry(zone, key))
		ttl := p.PTTL(ctx, lock)
		if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		value, _ = get.Bytes()
		lockTTL = ttl.Val()
		return nil
	})
	if err != nil {
		return abandoned
	}
	if value != nil {
		if e, ok := f.Get(ctx, zone, key, req); ok && (usable == nil || usable(e)) {
			return cache.Awaited{Result: cache.AwaitStored, Entry: e}
		}
	}
	if lockTTL <= 0 {
		return f.lastWord(ctx, zone, key, req, wake)
	}
	// The next check: a heartbeat away, or when the lease runs out.
	beat := f.heartbeat()
	next := func(lease time.Duration) time.Duration { return min(beat, lease, time.Until(deadline)) }
	t := time.NewTimer(next(lockTTL))
	defer t.Stop()
	for {
		select {
		case msg := <-wake:
			return f.heard(ctx, zone, key, req, msg)
		case <-ctx.Done():
		case <-t.C:
			if time.Now().Before(deadline) {
				// The heartbeat: a lock that lapsed (its owner died, or
				// its release never landed), or a Redis that does not
				// answer, ends the wait now.
				lease, err := f.lease(ctx, lock)
				switch {
				case ctx.Err() != nil:
				case err != nil:
					return abandoned
				case lease <= 0:
					return f.lastWord(ctx, zone, key, req, wake)
				default:
					t.Reset(next(lease))
					continue
				}
			}
		}
		f.Stats.LockTimeouts.Add(1)
		return cache.Awaited{Result: cache.AwaitTimeout}
	}
}

// lastWord is the end of a wait whose lock is gone: released (its
// message, sent with the release, may still be on its way on the pub/sub
// connection: it is given a moment to come) or lapsed (abandoned).
func (f *Fleet) lastWord(ctx context.Context, zone, key string, req http.Header, wake chan string) cache.Awaited {
	t := time.NewTimer(min(f.cfg.Timeout, lastWordWait))
	defer t.Stop()
	select {
	case msg := <-wake:
		return f.heard(ctx, zone, key, req, msg)
	case <-t.C:
	case <-ctx.Done():
	}
	return cache.Awaited{Result: cache.AwaitAbandoned}
}

// lease is what is left of the lock's lease: <= 0 once it is gone.
func (f *Fleet) lease(ctx context.Context, lock string) (time.Duration, error) {
	var ttl time.Duration
	err := f.Do(ctx, func(ctx context.Context) error {
		var err error
		ttl, err = f.rdb.PTTL(ctx, lock).Result()
		return err
	})
	return ttl, err
}

// heard reads a fill's message.
func (f *Fleet) heard(ctx context.Context, zone, key string, req http.Header, msg string) cache.Awaited {
	kind, arg, _ := strings.Cut(msg, " ")
	switch kind {
	case msgLocal:
		return cache.Awaited{Result: cache.AwaitAlone}
	case msgStored:
		if e, ok := f.Get(ctx, zone, key, req); ok {
			if at, ok := landedAt(arg); ok {
				f.Stats.WakeUps.Observe(time.Since(at))
			}
			return cache.Awaited{Result: cache.AwaitStored, Entry: e}
		}
	case msgUnstored:
		ms, answer, _ := strings.Cut(arg, " ")
		n, _ := strconv.ParseInt(ms, 10, 64)
		end := cache.Awaited{Result: cache.AwaitUnstored, Uncacheable: time.Duration(max(n, 0)) * time.Millisecond}
		if answer != "" {
			// The fill's answer, for its waiters to share: verified as
			// a value is, and dropped if it does not.
			if e, err := decodeValue(f.keys.filled(zone, key), key, []byte(answer)); err == nil {
				end.Entry = e
			} else {
				f.Stats.Corrupt.Add(1)
			}
		}
		return end
	}
	// Gone from Redis since the message, Redis gone, or a message this
	// proxy does not know: as if the fill were abandoned.
	return cache.Awaited{Result: cache.AwaitAbandoned}
}

// landedAt reads the storing proxy's clock from a stored message's
// argument.
func landedAt(at string) (time.Time, bool) {
	usec, err := strconv.ParseInt(at, 10, 64)
	return time.UnixMicro(usec), err == nil
}

// subscriber is the fleet's one pub/sub connection: a pattern
// subscription to every filled channel of the prefix, made once, and a
// table of the waiters of each channel. One connection serves every wait
// (none is made per request), and a wait is registered before its
// check, with no round trip.
type subscriber struct {
	f       *Fleet
	mu      sync.Mutex
	ps      *redis.PubSub
	closed  bool
	waiters map[string][]chan string
}

func newSubscriber(f *Fleet) *subscriber {
	return &subscriber{f: f, waiters: make(map[string][]chan string)}
}

// listen registers a waiter of channel, subscribing first if this is the
// first wait. The returned channel gets the fill's message.
func (s *subscriber) listen(ctx context.Context, channel string) (chan string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errOpen
	}
	if s.ps == nil {
		if err := s.subscribe(ctx); err != nil {
			return nil, err
		}
	}
	ch := make(chan string, 1)
	s.waiters[channel] = append(s.waiters[channel], ch)
	return ch, nil
}

// subscribe makes the pattern subscription and waits for Redis to confirm
// it, so nothing published after listen returns is missed. go-redis
// re-subscribes by itself after a lost connection.
func (s *subscriber) subscribe(ctx context.Context) error {
	pattern := s.f.keys.filled("*", "*")
	pattern = pattern[:len(pattern)-len("{*:*}")] + "*"
	var ps *redis.PubSub
	err := s.f.Do(ctx, func(ctx context.Context) error {
		ps = s.f.rdb.PSubscribe(ctx, pattern)
		_, err := ps.Receive(ctx)
		return err
	})
	if err != nil {
		if ps != nil {
			_ = ps.Close()
		}
		return err
	}
	s.ps = ps
	go s.dispatch(ps.Channel(redis.WithChannelSize(1024)))
	return nil
}

// dispatch hands each message to the waiters of its channel.
func (s *subscriber) dispatch(msgs <-chan *redis.Message) {
	for m := range msgs {
		s.mu.Lock()
		for _, ch := range s.waiters[m.Channel] {
			select {
			case ch <- m.Payload:
			default:
			}
		}
		s.mu.Unlock()
	}
}

// wakeAll ends every wait as an abandoned fill would: Redis is gone, and
// with it the news of the fills waited for (the waiters then fetch for
// themselves).
func (s *subscriber) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ws := range s.waiters {
		for _, ch := range ws {
			select {
			case ch <- msgGone:
			default:
			}
		}
	}
}

// forget removes a waiter.
func (s *subscriber) forget(channel string, ch chan string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[channel]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, channel)
	} else {
		s.waiters[channel] = ws
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ps != nil {
		if err := s.ps.Close(); err != nil {
			s.f.log.Debug("closing the pub/sub connection", zap.Error(err))
		}
		s.ps = nil
	}
}
