package fleet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
)

// The shared tier: Fleet implements cache.Shared on Redis. A look-up is
// one GET (two for a variant: its index, then the variant); a store is one
// SET of the whole value, with an expiry (see Store).

// Get returns the zone's entry for key matching a request with header
// req, or false: no value, a value that does not verify (counted in
// Corrupt, never served), a failed call, or the breaker open.
func (f *Fleet) Get(ctx context.Context, zone, key string, req http.Header) (*cache.Entry, bool) {
	e, ok := f.get(ctx, f.keys.entry(zone, key), key)
	if ok && e.VaryIndex {
		e, ok = f.get(ctx, f.keys.variant(zone, key, cache.VariantOf(e.VaryNames, req)), key)
		if ok && e.VaryIndex {
			f.Stats.Corrupt.Add(1)
			ok = false
		}
	}
	if ok {
		f.Stats.Hits.Add(1)
	} else {
		f.Stats.Misses.Add(1)
	}
	return e, ok
}

// get reads and verifies the value under redisKey, an entry of key.
func (f *Fleet) get(ctx context.Context, redisKey, key string) (*cache.Entry, bool) {
	var v []byte
	err := f.Do(ctx, func(ctx context.Context) error {
		var err error
		v, err = f.rdb.Get(ctx, redisKey).Bytes()
		return err
	})
	if err != nil {
		return nil, false
	}
	e, err := decodeValue(redisKey, key, v)
	if err != nil {
		f.Stats.Corrupt.Add(1)
		f.log.Warn("corrupt value in redis: a miss", zap.String("redis_key", redisKey), zap.Int("bytes", len(v)))
		return nil, false
	}
	return e, true
}

// The stores waiting for Redis are bounded in number and in bytes (a
// disk entry's body is read into memory, and each value is the body once
// more): beyond either, entries stay local, as a Redis that slow would
// only queue more.
const (
	maxQueuedStores = 256
	maxQueuedBytes  = 64 << 20
)

// Store writes a committed entry to Redis in the background, then
// releases the job's claim (publishing whether the value landed). The
// value expires after job.TTL; an entry whose body is larger than
// entry_max stays local.
func (f *Fleet) Store(job cache.SharedStore) {
	var size int64
	if job.Entry != nil && job.Entry.BodySize <= f.cfg.EntryMax {
		size = 2 * job.Entry.BodySize
	}
	queued := false
	select {
	case f.queue <- struct{}{}:
		if f.queuedBytes.Add(size) <= maxQueuedBytes || size == 0 {
			queued = true
		} else {
			f.queuedBytes.Add(-size)
			<-f.queue
		}
	default:
	}
	if !queued {
		if job.Entry != nil {
			f.Stats.StoresDropped.Add(1)
		}
		go f.released(job, false)
		return
	}
	go func() {
		defer func() {
			f.queuedBytes.Add(-size)
			<-f.queue
		}()
		f.released(job, job.Entry != nil && f.store(job))
	}()
}

// released ends a store: it releases the job's claim (once: nothing if
// the store's script released it), telling the waiters whether the value
// is in Redis, or (an entry kept here only) that each proxy fetches for
// itself, or that the fill stored nothing.
func (f *Fleet) released(job cache.SharedStore, stored bool) {
	switch {
	case job.Claim == nil:
	case stored:
		job.Claim.Release(cache.Awaited{Result: cache.AwaitStored})
	case job.Entry != nil:
		job.Claim.Release(cache.Awaited{Result: cache.AwaitAlone})
	default:
		job.Claim.Release(job.Unstored)
	}
}

// store writes job's entry, reporting whether it landed.
func (f *Fleet) store(job cache.SharedStore) bool {
	e := job.Entry
	if e.BodySize > f.cfg.EntryMax || int64(len(e.Body)) > f.cfg.EntryMax || job.TTL <= 0 {
		f.Stats.StoresDropped.Add(1)
		return false
	}
	body := e.Body
	if !e.InMemory() {
		var err error
		if body, err = readBody(e, f.cfg.EntryMax); err != nil {
			f.Stats.StoresDropped.Add(1)
			return false
		}
	}
	if job.Current != nil && !job.Current() {
		f.Stats.StoresDropped.Add(1)
		return false
	}
	meta := e.Meta
	meta.Key = job.Key
	redisKey := f.keys.entry(job.Zone, job.Key)
	variant := len(meta.VaryNames) > 0
	if variant {
		redisKey = f.keys.variant(job.Zone, job.Key, meta.Variant)
	}
	v, err := encodeValue(redisKey, meta, body)
	if err != nil {
		f.Stats.StoresDropped.Add(1)
		return false
	}
	ctx := context.Background()
	set := func(ctx context.Context) error { return f.rdb.Set(ctx, redisKey, v, job.TTL).Err() }
	if variant {
		// The variant joins its key's set, so that an invalidation finds
		// it without a pass over the keyspace (events.go).
		setKey := f.keys.variants(job.Zone, job.Key)
		set = func(ctx context.Context) error {
			return storeVariantScript.Run(ctx, f.rdb, []string{redisKey, setKey}, v, job.TTL.Milliseconds(), meta.Variant).Err()
		}
	}
	if c, ok := job.Claim.(*claim); ok && c.f == f && !variant {
		// The value, the lock's release and the wake-up in one script:
		// the waiters hear of the value the moment it lands.
		set = func(ctx context.Context) error {
			if c.released.Load() {
				return f.rdb.Set(ctx, redisKey, v, job.TTL).Err()
			}
			err := storeScript.Run(ctx, f.rdb, []string{redisKey, c.lock}, v, job.TTL.Milliseconds(), c.token, c.chan_, storedMsg()).Err()
			if err == nil {
				// Released by the script; a failed one (after the SET,
				// say) is released apart, so the waiters never hang.
				c.markReleased()
			}
			return err
		}
	}
	if err := f.Do(ctx, set); err != nil {
		f.Stats.StoresDropped.Add(1)
		return false
	}
	if job.Current != nil && !job.Current() {
		// A purge landed while the value was written: it must not
		// outlive it here either.
		f.unstore(redisKey, sumOf(v))
		f.Stats.StoresDropped.Add(1)
		return false
	}
	if job.Current != nil {
		// A purge on another proxy reaches this one through the event
		// log, within a second: one made while this fill ran may be
		// applied here only after the write. Checked again once it must
		// have been, the value is removed if it is void (and still this
		// one), so that it does not outlive the purge in Redis.
		sum := sumOf(v)
		time.AfterFunc(f.recheckAfter, func() {
			if !f.closed.Load() && !job.Current() && f.unstore(redisKey, sum) {
				f.Stats.StoresUndone.Add(1)
			}
		})
	}
	if len(meta.Tags) > 0 {
		member := job.Key
		if variant {
			member = cache.VariantKey(job.Key, meta.Variant)
		}
		if err := f.indexTags(ctx, job.Zone, member, meta.Tags, job.TTL); err != nil {
			// Untagged in Redis, it would outlive a purge by tag there.
			f.unstore(redisKey, sumOf(v))
			f.Stats.StoresDropped.Add(1)
			return false
		}
	}
	if variant {
		index := cache.Meta{Key: job.Key, Status: http.StatusOK, StoredAt: meta.StoredAt, ValidUntil: meta.StoredAt,
			Header: http.Header{"Vary": e.Header["Vary"]}, VaryIndex: true, VaryNames: meta.VaryNames}
		indexKey := f.keys.entry(job.Zone, job.Key)
		iv, err := encodeValue(indexKey, index, nil)
		if err == nil {
			err = f.Do(ctx, func(ctx context.Context) error { return f.rdb.Set(ctx, indexKey, iv, job.TTL).Err() })
		}
		if err != nil {
			f.Stats.StoresDropped.Add(1)
			return false
		}
	}
	f.Stats.Stores.Add(1)
	return true
}

// storeVariantScript writes a variant's value (KEYS[1]) and adds it to
// its key's set of variants (KEYS[2]), whose life is the longest of its
// variants': one script, so that no variant is ever out of the set.
var storeVariantScript = redis.NewScript(`
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("SADD", KEYS[2], ARGV[3])
if redis.call("PTTL", KEYS[2]) < tonumber(ARGV[2]) then redis.call("PEXPIRE", KEYS[2], ARGV[2]) end
return 1
`)

// unstoreScript deletes a value if it is still the one written (its
// checksum, bytes 4 to 7, says so): a newer fill's stays.
var unstoreScript = redis.NewScript(`
if redis.call("GETRANGE", KEYS[1], 4, 7) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`)

// sumOf is a value's checksum bytes, which tell it from another.
func sumOf(v []byte) string { return string(v[len(valueMagic) : len(valueMagic)+4]) }

// unstore removes the value whose checksum bytes are sum from under
// redisKey, unless another replaced it.
func (f *Fleet) unstore(redisKey, sum string) (removed bool) {
	_ = f.Do(context.Background(), func(ctx context.Context) error {
		n, err := unstoreScript.Run(ctx, f.rdb, []string{redisKey}, sum).Int()
		removed = n == 1
		return err
	})
	return removed
}

// readBody reads a disk entry's body (verified as it is read), refusing
// one larger than max.
func readBody(e *cache.Entry, max int64) ([]byte, error) {
	r, err := e.OpenBody()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) != e.BodySize {
		return nil, errors.New("fleet: body size differs from the entry's")
	}
	return body, nil
}

// TTL is how long Redis keeps an entry stored at now: until the zone's
// inactive time passes, or its validity and stale window
// (stale-while-revalidate, stale-if-error) do, whichever is later. A
// proxy serves stale entries under use_stale for as long as it keeps
// them, which inactive bounds. Every value expires by itself, so Redis
// never keeps what nobody reads for longer; the TTL is not extended by
// reads, so with a long inactive (days) Redis needs maxmemory with
// allkeys-lru, which only ever evicts what a proxy would fetch again.
func TTL(e *cache.Entry, now time.Time, inactive time.Duration) time.Duration {
	window := max(e.StaleWhileRevalidate, e.StaleIfError)
	return max(inactive, e.ValidUntil.Sub(now)+window, time.Second)
}

var _ cache.Shared = (*Fleet)(nil)
