package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Purges by tag in Redis: a set per zone and tag ({prefix}tag:{zone:tag})
// holds the cache keys of the entries stored with the tag. It expires
// with the last of them (each store pushes its expiry out, never in), so
// that a purge by tag reads one set, never the keyspace. A member whose
// value went (expired, purged by key) costs an UNLINK of nothing.

// indexTags adds member (a cache key, or a variant's) to the sets of its
// tags, expiring no sooner than ttl.
func (f *Fleet) indexTags(ctx context.Context, zone, member string, tags []string, ttl time.Duration) error {
	return f.Do(ctx, func(ctx context.Context) error {
		_, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, t := range tags {
				k := f.keys.tag(zone, t)
				p.SAdd(ctx, k, member)
				p.ExpireNX(ctx, k, ttl) // a new set
				p.ExpireGT(ctx, k, ttl) // an older one, never shortened
			}
			return nil
		})
		return err
	})
}

// tagged returns the members of a tag's set in zone.
func (f *Fleet) tagged(ctx context.Context, zone, tag string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	return f.rdb.SMembers(ctx, f.keys.tag(zone, tag)).Result()
}

// unlinkTagged removes the values of a tag's entries, and the set, and
// returns how many values there were.
func (f *Fleet) unlinkTagged(ctx context.Context, zone, tag string) (int, error) {
	members, err := f.tagged(ctx, zone, tag)
	if err != nil {
		return 0, err
	}
	// Pipelined, one key a command: on a Cluster the go-redis client
	// sends each to its slot's master.
	pipe := f.rdb.Pipeline()
	unlinks := make([]*redis.IntCmd, len(members))
	for i, m := range members {
		unlinks[i] = pipe.Unlink(ctx, f.keys.stored(zone, m))
	}
	pipe.Unlink(ctx, f.keys.tag(zone, tag))
	if _, err := f.boundedExec(ctx, pipe); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range unlinks {
		n += int(c.Val())
	}
	return n, nil
}

// expire is a soft purge of ev's entries in zone: each value is kept,
// marked expired now, so that a proxy that takes it from Redis refreshes
// it as it would its own copy. It returns how many values it marked.
func (f *Fleet) expire(ctx context.Context, zone string, ev Event) (int, error) {
	var redisKeys []string
	switch ev.Kind {
	case KindPurgeKey:
		redisKeys = []string{f.keys.entry(zone, ev.Key)}
		// Its variants, listed in their set under the key's hash slot.
		cctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
		variants, err := f.rdb.SMembers(cctx, f.keys.variants(zone, ev.Key)).Result()
		cancel()
		if err != nil {
			return 0, err
		}
		for _, v := range variants {
			redisKeys = append(redisKeys, f.keys.variant(zone, ev.Key, v))
		}
	case KindPurgeTag:
		members, err := f.tagged(ctx, zone, ev.Key)
		if err != nil {
			return 0, err
		}
		for _, m := range members {
			redisKeys = append(redisKeys, f.keys.stored(zone, m))
		}
	case KindPurgePrefix, KindPurgeAll:
		var err error
		if redisKeys, err = f.matching(ctx, f.keys.entryPattern(zone, ev.Key)); err != nil {
			return 0, err
		}
	default:
		return 0, errors.New("fleet: " + string(ev.Kind) + " is not a purge")
	}
	n := 0
	for _, rk := range redisKeys {
		marked, err := f.expireValue(ctx, zone, rk)
		if err != nil {
			return n, err
		}
		if marked {
			n++
		}
	}
	return n, nil
}

// matching lists the keys that match pattern on every master.
func (f *Fleet) matching(ctx context.Context, pattern string) ([]string, error) {
	var mu sync.Mutex
	var all []string
	err := f.scan(ctx, pattern, func(_ context.Context, _ *redis.Client, keys []string) error {
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return nil
	})
	return all, err
}

// replaceScript writes a value over the one read, if it is still that
// one (its checksum bytes), keeping its expiry.
var replaceScript = redis.NewScript(`
if redis.call("GETRANGE", KEYS[1], 4, 7) == ARGV[1] then return redis.call("SET", KEYS[1], ARGV[2], "KEEPTTL") end
return false
`)

// expireValue marks the value under redisKey expired now and reports
// whether there was an entry there (marked now, or before).
func (f *Fleet) expireValue(ctx context.Context, zone, redisKey string) (bool, error) {
	key, ok := f.keys.cacheKeyOf(zone, redisKey)
	if !ok {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	v, err := f.rdb.Get(cctx, redisKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e, err := decodeValue(redisKey, key, v)
	if err != nil || e.VaryIndex {
		return false, nil
	}
	now := time.Now()
	if e.SoftPurged && !e.Fresh(now) {
		return true, nil
	}
	m := e.Meta
	if m.ValidUntil.After(now) {
		m.ValidUntil = now
	}
	m.SoftPurged = true
	nv, err := encodeValue(redisKey, m, e.Body)
	if err != nil {
		return false, err
	}
	err = replaceScript.Run(cctx, f.rdb, []string{redisKey}, sumOf(v), nv).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	return true, nil
}
