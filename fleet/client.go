package fleet

import (
	"crypto/tls"

	"github.com/redis/go-redis/v9"
)

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
