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
// takes the key's lock in Redis with SET NX PX lock_age. The proxies that
// find it taken wait for that fill: they are woken through pub/sub on the
// key's filled channel when the holder's value lands in Redis (or when it
// gives up), with no polling. The holder releases the lock only if it is
// still its own (compare and delete, in one script with the publish).

// Messages on a filled channel: "1 <microseconds>", the storing proxy's
// clock (Unix time) as it sent the value (waiters measure their wake-up
// from it; Redis's TIME would need one more ACL right);
// "0" when the fill ended without storing (take the lock, one at a time,
// as nginx hands its lock on); "L" when the fill stored its entry in its
// own tiers only (too large for Redis, or the write failed: each proxy
// fetches for itself, at once).
const (
	msgStored  = "1"
	msgNothing = "0"
	msgLocal   = "L"
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

// claim is a fill lock this proxy holds.
type claim struct {
	f           *Fleet
	lock, chan_ string
	token       string
	released    atomic.Bool
}

// Claim tries to take the fill lock of the zone's key for age.
func (f *Fleet) Claim(ctx context.Context, zone, key string, age time.Duration) (cache.SharedClaim, cache.ClaimResult) {
	c := &claim{f: f, lock: f.keys.lock(zone, key), chan_: f.keys.filled(zone, key), token: f.token()}
	var taken bool
	err := f.Do(ctx, func(ctx context.Context) error {
		var err error
		taken, err = f.rdb.SetNX(ctx, c.lock, c.token, age).Result()
		return err
	})
	switch {
	case err != nil:
		return nil, cache.ClaimUnavailable
	case taken:
		return c, cache.ClaimTaken
	}
	return nil, cache.ClaimHeld
}

// token names one holding of a lock: this node, and a random part.
func (f *Fleet) token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return f.cfg.Node + ":" + hex.EncodeToString(b[:])
}

// Release gives the lock up, if it is still this proxy's, and tells the
// waiters whether the value is in Redis. Once; on a detached context (the
// request may be over), bounded by the timeout.
func (c *claim) Release(stored bool) {
	msg := msgNothing
	if stored {
		msg = storedMsg()
	}
	c.release(msg)
}

// storedMsg is the message of a value that landed, sent now.
func storedMsg() string { return msgStored + " " + strconv.FormatInt(time.Now().UnixMicro(), 10) }

// release ends the fill with msg, once.
func (c *claim) release(msg string) {
	if !c.released.CompareAndSwap(false, true) {
		return
	}
	_ = c.f.Do(context.Background(), func(ctx context.Context) error {
		return releaseScript.Run(ctx, c.f.rdb, []string{c.lock}, c.token, c.chan_, msg).Err()
	})
}

// Await waits for another proxy's fill of the zone's key: until its value
// lands (AwaitStored, with the entry for req), the fill ends without
// storing or its lock expires (AwaitEnded), or deadline (AwaitTimeout).
// A value there as the wait begins counts if usable says so.
// It listens on the key's channel before it checks the value and the
// lock, so a fill that ends in between is not missed.
func (f *Fleet) Await(ctx context.Context, zone, key string, req http.Header, deadline time.Time, usable func(*cache.Entry) bool) (*cache.Entry, cache.AwaitResult) {
	f.Stats.LockWaits.Add(1)
	channel := f.keys.filled(zone, key)
	wake, err := f.subs.listen(ctx, channel)
	if err != nil {
		// No subscription (Redis down): no one to wait for.
		return nil, cache.AwaitEnded
	}
	defer f.subs.forget(channel, wake)
	// Landed, or ended, before the subscription?
	var value []byte
	var lockTTL time.Duration
	redisKey := f.keys.entry(zone, key)
	err = f.Do(ctx, func(ctx context.Context) error {
		p := f.rdb.Pipeline()
		get := p.Get(ctx, redisKey)
		ttl := p.PTTL(ctx, f.keys.lock(zone, key))
		if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		value, _ = get.Bytes()
		lockTTL = ttl.Val()
		return nil
	})
	if err != nil {
		return nil, cache.AwaitEnded
	}
	if value != nil {
		if e, ok := f.Get(ctx, zone, key, req); ok && (usable == nil || usable(e)) {
			return e, cache.AwaitStored
		}
	}
	if lockTTL <= 0 {
		return nil, cache.AwaitEnded
	}
	// The holder may die without releasing: its lock then expires, and
	// the wait ends with it.
	until := time.Until(deadline)
	expired := false
	if lockTTL < until {
		until, expired = lockTTL, true
	}
	t := time.NewTimer(until)
	defer t.Stop()
	select {
	case msg := <-wake:
		if msg == msgLocal {
			return nil, cache.AwaitAlone
		}
		if strings.HasPrefix(msg, msgStored) {
			if e, ok := f.Get(ctx, zone, key, req); ok {
				if at, ok := landedAt(msg); ok {
					f.Stats.WakeUps.Observe(time.Since(at))
				}
				return e, cache.AwaitStored
			}
		}
		return nil, cache.AwaitEnded
	case <-t.C:
		if expired {
			return nil, cache.AwaitEnded
		}
	case <-ctx.Done():
	}
	f.Stats.LockTimeouts.Add(1)
	return nil, cache.AwaitTimeout
}

// landedAt reads the storing proxy's clock from a stored message.
func landedAt(msg string) (time.Time, bool) {
	_, at, ok := strings.Cut(msg, " ")
	usec, err := strconv.ParseInt(at, 10, 64)
	return time.UnixMicro(usec), ok && err == nil
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

// wakeAll ends every wait as a fill that stored nothing would: Redis is
// gone, and with it the news of the fills waited for (the waiters then
// fetch for themselves).
func (s *subscriber) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ws := range s.waiters {
		for _, ch := range ws {
			select {
			case ch <- msgNothing:
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
