package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The event log: every purge, invalidation and refresh made on one proxy
// is appended to a Redis Stream ({prefix}events), and every proxy reads
// the stream and applies the others' events to its own tiers. A stream,
// not pub/sub: a proxy that was cut off reads what it missed when it
// reconnects (see Follower).

// EventKind says what an event asks of the other proxies.
type EventKind string

// Event kinds.
const (
	// KindPurgeKey, KindPurgePrefix and KindPurgeAll are purges (admin
	// API, edgecache purge): the proxies purge as if asked themselves.
	KindPurgeKey    EventKind = "purge_key"
	KindPurgePrefix EventKind = "purge_prefix"
	KindPurgeAll    EventKind = "purge_all"
	// KindPurgeTag is a purge of the entries that carry a tag.
	KindPurgeTag EventKind = "purge_tag"
	// KindInvalidate is an unsafe request (POST, PUT, DELETE…) that
	// succeeded: the proxies drop their copies of the key.
	KindInvalidate EventKind = "invalidate"
	// KindRefresh is a fetch through the cache buster: the refreshing
	// proxy stored the new entry in Redis, and the others drop their
	// local copies, to take the new one from Redis when next asked.
	KindRefresh EventKind = "refresh"
)

func (k EventKind) valid() bool {
	switch k {
	case KindPurgeKey, KindPurgePrefix, KindPurgeAll, KindPurgeTag, KindInvalidate, KindRefresh:
		return true
	}
	return false
}

// Event is one entry of the log.
type Event struct {
	// ID is the stream entry's ID, set on the events read.
	ID string
	// Node is the proxy the event comes from, set by Publish.
	Node string
	// Zone is the zone concerned; empty for a purge of every zone.
	Zone string
	Kind EventKind
	// Key is the cache key (purge_key, invalidate, refresh), the key
	// prefix (purge_prefix) or the tag (purge_tag); empty for purge_all.
	Key string
	// Soft makes a purge a soft purge: the entries are kept, marked
	// expired (cache/softpurge.go).
	Soft bool
}

// DefaultEventRetention is how long the log keeps an event: a proxy cut
// off, or stopped, for longer drops what it cannot prove current when it
// reads the log again (Follower). Retention counts time, not entries, so
// that no amount of traffic pushes a purge out before its time; the
// volume is bounded by what is published: purges, refreshes and only the
// invalidations of keys some tier held (Invalidate). An event takes about
// 150 bytes of Redis's memory.
const DefaultEventRetention = time.Hour

// Event field names in the stream.
const (
	fieldNode = "node"
	fieldZone = "zone"
	fieldKind = "kind"
	fieldKey  = "key"
	fieldSoft = "soft"
)

// Publish appends ev, from this node, to the log. It does not touch the
// shared tier: Purge, Invalidate and Refreshed do that first.
func (f *Fleet) Publish(ctx context.Context, ev Event) (id string, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	return f.publish(ctx, ev)
}

func (f *Fleet) publish(ctx context.Context, ev Event) (id string, err error) {
	if !ev.Kind.valid() {
		return "", fmt.Errorf("fleet: unknown event kind %q", ev.Kind)
	}
	id, err = f.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: f.keys.events(),
		// Entries older than the retention go, a whole macro node at a
		// time (approximate trimming, as cheap as MAXLEN ~).
		MinID:  strconv.FormatInt(time.Now().Add(-f.cfg.EventRetention).UnixMilli(), 10),
		Approx: true,
		Values: values(f.cfg.Node, ev),
	}).Result()
	if err != nil {
		f.events.unpublished.Add(1)
		return "", fmt.Errorf("fleet: publishing a %s event: %w", ev.Kind, err)
	}
	f.events.published.Add(1)
	return id, nil
}

// values are ev's stream fields; soft only on a soft purge, which a
// proxy of an older version applies as a purge.
func values(node string, ev Event) []string {
	v := []string{fieldNode, node, fieldZone, ev.Zone, fieldKind, string(ev.Kind), fieldKey, ev.Key}
	if ev.Soft {
		v = append(v, fieldSoft, "1")
	}
	return v
}

// forRequest runs a request's part of an event (Invalidate, Refreshed)
// through the breaker: nothing while Redis is known to be down, and a
// failure opens it. unlink says whether the event's key (with its
// variants) leaves Redis first; publish, given whether Redis held the key
// or a fill of it was under way, whether the event is then appended.
// What is skipped for Redis's failure is counted as unpublished.
func (f *Fleet) forRequest(ctx context.Context, unlink bool, ev Event, publish func(heldInRedis bool) bool) (published bool, err error) {
	held := false
	err = f.Do(ctx, func(ctx context.Context) error {
		if !unlink {
			return nil
		}
		n, filling, err := f.unlinkKey(ctx, ev.Zone, ev.Key)
		held = n > 0 || filling
		return err
	})
	if err != nil {
		f.events.unpublished.Add(1)
		return false, err
	}
	if !publish(held) {
		return false, nil
	}
	err = f.Do(ctx, func(ctx context.Context) error {
		_, err := f.publish(ctx, ev)
		return err
	})
	return err == nil, err
}

// Purge removes the entries a purge event names from the shared tier,
// then publishes the event, so that a proxy applying it does not find the
// purged entry in Redis again. zones are the zones to remove the entries
// of when the event names none (a purge of every zone). It returns how
// many Redis keys it removed.
func (f *Fleet) Purge(ctx context.Context, ev Event, zones []string) (removed int, err error) {
	if ev.Zone != "" {
		zones = []string{ev.Zone}
	}
	for _, zone := range zones {
		var n int
		switch {
		case ev.Soft:
			n, err = f.expire(ctx, zone, ev)
		case ev.Kind == KindPurgeTag:
			n, err = f.unlinkTagged(ctx, zone, ev.Key)
		case ev.Kind == KindPurgeKey:
			cctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
			n, _, err = f.unlinkKey(cctx, zone, ev.Key)
			cancel()
		case ev.Kind == KindPurgePrefix:
			n, err = f.unlinkMatching(ctx, f.keys.entryPattern(zone, ev.Key))
		case ev.Kind == KindPurgeAll:
			n, err = f.unlinkMatching(ctx, f.keys.entryPattern(zone, ""))
			if err == nil {
				_, err = f.unlinkMatching(ctx, f.keys.tagPattern(zone))
			}
		default:
			return removed, fmt.Errorf("fleet: %s is not a purge", ev.Kind)
		}
		removed += n
		if err != nil {
			return removed, fmt.Errorf("fleet: removing zone %s's entries from Redis: %w", zone, err)
		}
	}
	_, err = f.Publish(ctx, ev)
	return removed, err
}

// Invalidate removes a key's entry and its variants from the shared tier
// and tells the other proxies to drop theirs (an unsafe request changed
// the resource), but only when some tier held the key: this proxy's
// (heldHere), Redis's, or a fill under way (its fleet lock). A key no tier
// holds has nothing to drop: an anonymous flood of POSTs to URLs nobody
// cached appends nothing to the log, and so many invalidations of one key
// between two fills publish one event. It reports whether it published,
// and goes through the breaker, as it runs for a request.
func (f *Fleet) Invalidate(ctx context.Context, zone, key string, heldHere bool) (published bool, err error) {
	return f.forRequest(ctx, true, Event{Zone: zone, Kind: KindInvalidate, Key: key}, func(heldInRedis bool) bool {
		if heldHere || heldInRedis {
			return true
		}
		f.events.unheld.Add(1)
		return false
	})
}

// Refreshed tells the other proxies that this one fetched key anew
// through the cache buster. The caller stores the new entry in the
// shared tier first; when it could not (a body over entry_max, Redis
// failing), stored is false and the old shared entry is removed, so
// that no proxy takes the old version from Redis. It goes through the
// breaker, as it runs for a request.
func (f *Fleet) Refreshed(ctx context.Context, zone, key string, stored bool) error {
	_, err := f.forRequest(ctx, !stored, Event{Zone: zone, Kind: KindRefresh, Key: key}, func(bool) bool { return true })
	return err
}

// unlinkKey removes a key's value and its variants' (listed in their set,
// under the same hash slot) in one script: O(variants), never a pass
// over the keyspace. It reports how many values it removed and whether a
// fill of the key holds the fleet lock.
func (f *Fleet) unlinkKey(ctx context.Context, zone, key string) (n int, filling bool, err error) {
	res, err := unlinkKeyScript.Run(ctx, f.rdb,
		[]string{f.keys.entry(zone, key), f.keys.variants(zone, key), f.keys.lock(zone, key)}, variantSep).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, false, err
	}
	return int(res[0]), res[1] == 1, nil
}

// unlinkKeyScript: KEYS[1] the entry, KEYS[2] its set of variants, KEYS[3]
// its fill lock, ARGV[1] the variant separator. The variants' keys are
// not declared, as they are known only from the set; they share the
// entry's hash slot, which a Redis Cluster allows.
var unlinkKeyScript = redis.NewScript(`
local n = redis.call("UNLINK", KEYS[1])
for _, v in ipairs(redis.call("SMEMBERS", KEYS[2])) do
	n = n + redis.call("UNLINK", KEYS[1] .. ARGV[1] .. v)
end
redis.call("UNLINK", KEYS[2])
return {n, redis.call("EXISTS", KEYS[3])}
`)

// scanBatch is SCAN's COUNT hint for purges by prefix: a few hundred
// microseconds of Redis's time per call.
const scanBatch = 1000

// unlinkMatching removes every key matching pattern on every master (a
// Redis Cluster spreads a zone's entries over all of them). Keys are
// unlinked one command each, pipelined per master: on a Cluster, keys of
// one command must share a slot, and entries of a zone do not.
func (f *Fleet) unlinkMatching(ctx context.Context, pattern string) (int, error) {
	var removed atomic.Int64
	err := f.scan(ctx, pattern, func(ctx context.Context, node *redis.Client, keys []string) error {
		pipe := node.Pipeline()
		for _, k := range keys {
			pipe.Unlink(ctx, k)
		}
		cmds, err := f.boundedExec(ctx, pipe)
		if err != nil {
			return err
		}
		for _, c := range cmds {
			removed.Add(c.(*redis.IntCmd).Val())
		}
		return nil
	})
	return int(removed.Load()), err
}

// scan calls fn with each batch of the keys that match pattern, on every
// master (fn runs for several masters at once).
func (f *Fleet) scan(ctx context.Context, pattern string, fn func(ctx context.Context, node *redis.Client, keys []string) error) error {
	return f.forEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := f.bounded(ctx, func(ctx context.Context) ([]string, uint64, error) {
				return node.Scan(ctx, cursor, pattern, scanBatch).Result()
			})
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(ctx, node, keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
}

func (f *Fleet) bounded(ctx context.Context, call func(context.Context) ([]string, uint64, error)) ([]string, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	return call(ctx)
}

func (f *Fleet) boundedExec(ctx context.Context, pipe redis.Pipeliner) ([]redis.Cmder, error) {
	// A pipeline of scanBatch commands may take longer than one call.
	ctx, cancel := context.WithTimeout(ctx, 10*f.cfg.Timeout)
	defer cancel()
	return pipe.Exec(ctx)
}

// forEachMaster calls fn with each master's client: the single node's,
// or each of a Redis Cluster's masters.
func (f *Fleet) forEachMaster(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := f.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("fleet: unexpected client %T", f.rdb)
}

// eventFrom decodes a stream entry; an entry that is not a valid event
// (written by something else) decodes to false.
func eventFrom(m redis.XMessage) (Event, bool) {
	str := func(name string) string { s, _ := m.Values[name].(string); return s }
	ev := Event{ID: m.ID, Node: str(fieldNode), Zone: str(fieldZone), Kind: EventKind(str(fieldKind)), Key: str(fieldKey),
		Soft: str(fieldSoft) == "1"}
	return ev, ev.Kind.valid() && ev.Node != ""
}

// streamID is a stream entry ID (milliseconds-sequence), comparable.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		seq = "0"
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return streamID{}, fmt.Errorf("stream ID %q: %w", s, err)
	}
	return streamID{a, b}, nil
}

func (a streamID) less(b streamID) bool { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq) }

// eventTime is when the event was added, from its ID.
func eventTime(id string) (time.Time, bool) {
	sid, err := parseStreamID(id)
	if err != nil || sid.ms == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(sid.ms)), true
}

// eventStats count what the log carried for this proxy.
type eventStats struct {
	published   atomic.Int64
	unpublished atomic.Int64
	unheld      atomic.Int64
	applied     atomic.Int64
	drops       atomic.Int64
	lagMillis   atomic.Int64 // from the last applied event's addition to its application
}

// EventStats are the event log's counters, for metrics.
type EventStats struct {
	// Published: events this proxy appended.
	Published int64
	// Unpublished: events this proxy could not append (Redis down or
	// failing): they reached this proxy only.
	Unpublished int64
	// Unheld: invalidations not published, as no tier held the key.
	Unheld int64
	// Applied: other proxies' events this proxy applied.
	Applied int64
	// Drops: times this proxy dropped its local entries because events
	// it had not applied were lost (trimmed log, Redis restarted empty).
	Drops int64
	// Lag: from the last applied event's addition to the log to its
	// application here.
	Lag time.Duration
}

// EventStats returns the counters now.
func (f *Fleet) EventStats() EventStats {
	return EventStats{
		Published:   f.events.published.Load(),
		Unpublished: f.events.unpublished.Load(),
		Unheld:      f.events.unheld.Load(),
		Applied:     f.events.applied.Load(),
		Drops:       f.events.drops.Load(),
		Lag:         time.Duration(f.events.lagMillis.Load()) * time.Millisecond,
	}
}

// eventLog is the logger of the event log's reader.
func (f *Fleet) eventLog() *zap.Logger { return f.log.Named("events") }
