package fleet

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Fleet is this proxy's connection to the fleet: the shared tier, the fill
// lock, the event log and the member list all go through it.
type Fleet struct {
	cfg   Config
	rdb   redis.UniversalClient
	keys  keys
	log   *zap.Logger
	br    *breaker
	subs  *subscriber   // the filled channels' listener (lock.go)
	queue chan struct{} // stores under way (shared.go)
	// queuedBytes is what the stores under way hold (shared.go).
	queuedBytes atomic.Int64
	// recheckAfter is when a stored value's purge mark is checked again
	// (shared.go): after the event log's second.
	recheckAfter time.Duration
	closed       atomic.Bool
	Stats        Stats

	events eventStats // the event log's counters (events.go)
}

// Open checks cfg and connects. It does not wait for Redis: a proxy starts
// and serves from its own tiers while Redis is down.
func Open(cfg Config, log *zap.Logger) (*Fleet, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("prefix %q: %w", cfg.Prefix, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	f := &Fleet{cfg: cfg, rdb: newClient(cfg), keys: keys{cfg.Prefix}, log: log.With(zap.String("node", cfg.Node)),
		queue: make(chan struct{}, maxQueuedStores), recheckAfter: recheckAfter}
	f.Stats.Calls.Bounds, f.Stats.WakeUps.Bounds = CallBuckets, CallBuckets
	clientLog.Store(f.log.Named("redis"))
	f.br = newBreaker(f.Ping, probeInterval, f.log)
	f.subs = newSubscriber(f)
	f.br.onOpen = f.subs.wakeAll
	return f, nil
}

// Up reports whether the shared tier is in use: false while the breaker
// is open (Redis did not answer; it is probed in the background).
func (f *Fleet) Up() bool { return f.br.allow() }

// Do runs one Redis call for a request: at once errOpen while the breaker
// is open; else fn, bounded by the timeout, its failure opening the
// breaker. The caller's ctx ending (the client gone) is no failure.
func (f *Fleet) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if !f.br.allow() {
		f.Stats.Skipped.Add(1)
		return errOpen
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	f.Stats.Calls.Observe(time.Since(start))
	if failure(ctx, err) {
		f.Stats.Errors.Add(1)
		f.br.fail(err)
	}
	return err
}

// Config is the configuration in use, defaults filled.
func (f *Fleet) Config() Config { return f.cfg }

// Node is this proxy's name in the fleet.
func (f *Fleet) Node() string { return f.cfg.Node }

// Ping asks Redis for an answer within the timeout (edgecache validate,
// start-up logs).
func (f *Fleet) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	return f.rdb.Ping(ctx).Err()
}

// recheckAfter is how long after a store its purge mark is checked
// again: the event log brings purges within a second.
const recheckAfter = 2 * time.Second

// Warm opens a first connection to Redis, so the first request does not
// pay for the dial, and logs whether Redis answers (a failure opens the
// breaker, which says so). A proxy calls it in the background as it starts.
func (f *Fleet) Warm() {
	err := f.Do(context.Background(), func(ctx context.Context) error { return f.rdb.Ping(ctx).Err() })
	if err == nil {
		f.log.Info("redis answers: the shared tier is in use", zap.Strings("redis", f.cfg.Addrs), zap.String("prefix", f.cfg.Prefix))
	}
}

// Close ends the connections and the background work.
func (f *Fleet) Close() error {
	f.closed.Store(true)
	f.br.close()
	f.subs.close()
	return f.rdb.Close()
}
