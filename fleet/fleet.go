package fleet

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Fleet is this proxy's connection to the fleet: the shared tier, the fill
// lock, the event log and the member list all go through it.
type Fleet struct {
	cfg  Config
	rdb  redis.UniversalClient
	keys keys
	log  *zap.Logger

	events eventStats // the event log's counters (events.go)
	// maxEvents is about how many events the log keeps (default MaxEvents).
	maxEvents int64
}

// Open checks cfg and connects. It does not wait for Redis: a proxy starts
// and serves from its own tiers while Redis is down.
func Open(cfg Config, log *zap.Logger) (*Fleet, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("prefix %q: %w", cfg.Prefix, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Fleet{cfg: cfg, rdb: newClient(cfg), keys: keys{cfg.Prefix}, log: log.With(zap.String("node", cfg.Node)), maxEvents: MaxEvents}, nil
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

// Close ends the connections.
func (f *Fleet) Close() error { return f.rdb.Close() }
