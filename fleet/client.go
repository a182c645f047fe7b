package fleet

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// clientLog takes go-redis's own messages (a failed dial, a lost pub/sub
// connection), which it would print to stderr once per attempt: at debug
// level, since the breaker logs each change of state once. go-redis has
// one logger per process; the last fleet opened gets it.
var clientLog atomic.Pointer[zap.Logger]

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if l := clientLog.Load(); l != nil {
		l.Debug(fmt.Sprintf(format, v...))
	}
}

func init() { redis.SetLogger(redisLogger{}) }

// newClient connects to a single node, or to a Redis Cluster when several
// seeds are given. Every call is bounded by the timeout, dial included, and
// is never retried: a request that waits on Redis waits at most Timeout
// (the breaker, not a retry, handles a Redis that is down).
func newClient(c Config) redis.UniversalClient {
	opts := &redis.UniversalOptions{
		Addrs:        c.Addrs,
		Username:     c.Username,
		Password:     c.Password,
		DialTimeout:  c.Timeout,
		ReadTimeout:  c.Timeout,
		WriteTimeout: c.Timeout,
		PoolTimeout:  c.Timeout,
		MaxRetries:   -1,
		// One dial per attempt: go-redis would otherwise dial 5 times,
		// 100 ms apart, within the timeout.
		DialerRetries: 1,
		// A cluster redirect (MOVED, ASK) is followed: the slot map moved,
		// the node answers.
		MaxRedirects: 3,
		// Fail fast rather than queue on a dead node's pool.
		ContextTimeoutEnabled: true,
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(c.Addrs) > 1 {
		return redis.NewClusterClient(opts.Cluster())
	}
	return redis.NewClient(opts.Simple())
}
