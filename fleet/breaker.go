package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// breaker keeps requests off a Redis that does not answer. Closed, calls
// go through; the first call that fails on the connection (refused, reset,
// no answer within the timeout) opens it, and from then on calls fail at
// once, without touching the network, while one background probe PINGs
// every probeInterval and closes it on the first answer. So a dead Redis
// costs one request at most the timeout, once, and then nothing. Each
// change of state is logged once.
//
// Hand-written rather than a generic breaker library: it has one
// threshold (the first failure) and its probe is Redis's own PING, not a
// trial request from a client.
type breaker struct {
	open     atomic.Bool
	mu       sync.Mutex
	probing  bool
	stopped  bool
	stop     chan struct{}
	interval time.Duration
	ping     func(context.Context) error
	log      *zap.Logger
	changes  atomic.Int64 // state changes, for tests and metrics
	// onOpen, when set, runs when the breaker opens: the waits on other
	// proxies' fills end, as their news can no longer come.
	onOpen func()
}

// probeInterval is how often an open breaker asks Redis whether it is back.
const probeInterval = time.Second

func newBreaker(ping func(context.Context) error, interval time.Duration, log *zap.Logger) *breaker {
	return &breaker{ping: ping, interval: interval, log: log, stop: make(chan struct{})}
}

// allow reports whether calls may go to Redis.
func (b *breaker) allow() bool { return !b.open.Load() }

// errOpen is what a call gets while the breaker is open.
var errOpen = errors.New("fleet: redis unavailable (breaker open)")

// failure reports whether err says Redis cannot be reached or did not
// answer in time: not a missing key, not a Redis error reply (a command's
// own error), not the caller giving up.
func failure(ctx context.Context, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, errOpen) {
		return false
	}
	if ctx.Err() == context.Canceled {
		return false // the client went away; Redis said nothing wrong
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		// An error reply: Redis answered. Those that mean it cannot serve
		// (loading, a cluster down, a read-only replica after a failover)
		// count as failures.
		msg := reply.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "READONLY", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS"} {
			if len(msg) >= len(p) && msg[:len(p)] == p {
				return true
			}
		}
		return false
	}
	return true
}

// fail opens the breaker after a failed call, logging it once, and starts
// the probe.
func (b *breaker) fail(err error) {
	if !b.open.CompareAndSwap(false, true) {
		return
	}
	b.changes.Add(1)
	b.log.Warn("redis unavailable: requests skip the shared tier until it answers again", zap.Error(err))
	if b.onOpen != nil {
		go b.onOpen()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing || b.stopped {
		return
	}
	b.probing = true
	go b.probe()
}

// probe PINGs until Redis answers, then closes the breaker.
func (b *breaker) probe() {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		if err := b.ping(context.Background()); err != nil {
			continue
		}
		b.mu.Lock()
		b.probing = false
		b.mu.Unlock()
		if b.open.CompareAndSwap(true, false) {
			b.changes.Add(1)
			b.log.Info("redis answers again: the shared tier is back in use")
		}
		return
	}
}

// close stops the probe.
func (b *breaker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped {
		b.stopped = true
		close(b.stop)
	}
}
