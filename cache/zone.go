package cache

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ZoneConfig sizes a zone's tiers.
type ZoneConfig struct {
	Name string
	// MemorySize is the hot tier's budget in bytes.
	MemorySize int64
	// MemoryEntryMax is the largest body the hot tier holds; larger
	// responses are not stored unless the zone has a disk tier.
	MemoryEntryMax int64
}

// Zone is a named cache, shared by every site that names it (as nginx's
// keys_zone): its tiers, its key index, the fills under way and its counters.
type Zone struct {
	name    string
	mem     *memoryTier
	keys    *keyIndex
	flights flightGroup
	uses    useCounter
	Stats   Stats
}

// Stats are a zone's counters, read by the metrics collector.
type Stats struct {
	Requests      [numStatuses]atomic.Int64
	BytesServed   atomic.Int64 // body bytes served from the cache
	Stored        atomic.Int64
	StoreSkipped  sync.Map // reason (string) -> *atomic.Int64: responses not stored, by reason
	LockWaits     atomic.Int64
	LockTimeouts  atomic.Int64
	Purged        atomic.Int64
	BackgroundRun atomic.Int64
}

// CountSkip counts a response that was not stored, by reason.
func (s *Stats) CountSkip(reason string) {
	c, ok := s.StoreSkipped.Load(reason)
	if !ok {
		c, _ = s.StoreSkipped.LoadOrStore(reason, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// NewZone makes a zone from its configuration.
func NewZone(cfg ZoneConfig) (*Zone, error) {
	if cfg.MemorySize <= 0 {
		return nil, fmt.Errorf("zone %s: memory size must be positive", cfg.Name)
	}
	if cfg.MemoryEntryMax <= 0 {
		cfg.MemoryEntryMax = DefaultMemoryEntryMax(cfg.MemorySize)
	}
	z := &Zone{name: cfg.Name, keys: newKeyIndex()}
	mem, err := newMemoryTier(cfg.MemorySize, cfg.MemoryEntryMax, z.keys.remove)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", cfg.Name, err)
	}
	z.mem = mem
	return z, nil
}

// DefaultMemoryEntryMax is the per-entry limit of a hot tier of the given
// size: a sixteenth of it, at most 64 MiB, so one body never crowds out many.
func DefaultMemoryEntryMax(memorySize int64) int64 {
	return min(memorySize/16, 64<<20)
}

// Name is the zone's configured name.
func (z *Zone) Name() string { return z.name }

// Get returns the entry stored under key, fresh or not.
func (z *Zone) Get(key string) (*Entry, bool) {
	return z.mem.get(key)
}

// Len is the number of keys the zone holds.
func (z *Zone) Len() int { return z.keys.len() }

// Purge removes one key and reports whether the zone knew it.
func (z *Zone) Purge(key string) bool {
	_, known := z.mem.get(key)
	z.mem.del(key)
	z.keys.remove(key)
	if known {
		z.Stats.Purged.Add(1)
	}
	return known
}

// PurgePrefix removes every key that starts with prefix and returns how many.
func (z *Zone) PurgePrefix(prefix string) int {
	keys := z.keys.withPrefix(prefix)
	for _, k := range keys {
		z.mem.del(k)
		z.keys.remove(k)
	}
	z.Stats.Purged.Add(int64(len(keys)))
	return len(keys)
}

// PurgeAll empties the zone and returns how many keys it held.
func (z *Zone) PurgeAll() int {
	n := len(z.keys.clear())
	z.mem.clear()
	z.Stats.Purged.Add(int64(n))
	return n
}

// Keys pages through the zone's keys in order: up to limit keys that start
// with prefix, after the key after; more reports whether others follow.
func (z *Zone) Keys(prefix, after string, limit int) (keys []string, more bool) {
	return z.keys.page(prefix, after, limit)
}

// Close releases the zone's resources.
func (z *Zone) Close() error {
	z.mem.close()
	return nil
}

// CountUse counts a request for key and returns how many there have been,
// for min_uses.
func (z *Zone) CountUse(key string) int { return z.uses.add(key) }

// Fill is one backend request filling a key, shared by the requests that
// miss it meanwhile.
type Fill struct {
	zone *Zone
	key  string
	f    *flight
}

// JoinFill returns the fill under way for key, or starts one. leader reports
// whether the caller must fetch and then call Finish; others call Wait.
func (z *Zone) JoinFill(key string, now time.Time, lockAge time.Duration) (fill Fill, leader bool) {
	f, leader := z.flights.join(key, now, lockAge)
	return Fill{zone: z, key: key, f: f}, leader
}

// Finish ends the fill and wakes its waiters; stored tells them whether the
// entry is now in the zone.
func (f Fill) Finish(stored bool) { f.zone.flights.finish(f.key, f.f, stored) }

// Wait blocks until the fill ends (reporting whether it stored an entry),
// the timeout passes or ctx is done.
func (f Fill) Wait(ctx context.Context, timeout time.Duration) (ended, stored bool) {
	f.zone.Stats.LockWaits.Add(1)
	ended, stored = f.f.wait(ctx, timeout)
	if !ended {
		f.zone.Stats.LockTimeouts.Add(1)
	}
	return ended, stored
}

// Store is a response being written into the zone as it streams to the
// client. Nothing is visible until Commit; Abort, or a body that is cut
// short, leaves the zone as it was.
type Store struct {
	zone *Zone
	meta Meta
	body []byte
	n    int64
	dead bool // too large or failed: Commit will refuse
}

// BeginStore starts storing a response. meta.BodySize is the announced
// length, or -1 when the backend did not announce one.
func (z *Zone) BeginStore(meta Meta) *Store {
	s := &Store{zone: z, meta: meta}
	switch {
	case meta.BodySize > z.mem.maxEntry:
		s.dead = true
	case meta.BodySize >= 0:
		s.body = make([]byte, 0, meta.BodySize)
	}
	return s
}

// Write adds body bytes. It never fails: a store that cannot continue
// just stops storing, and the response goes on streaming to the client.
func (s *Store) Write(p []byte) {
	if s.dead {
		return
	}
	s.n += int64(len(p))
	if s.n > s.zone.mem.maxEntry {
		s.dead, s.body = true, nil
		return
	}
	s.body = append(s.body, p...)
}

// Abandoned reports whether the store has given up, so the caller can stop
// feeding it.
func (s *Store) Abandoned() bool { return s.dead }

// Commit makes the entry visible, replacing any entry of its key at once:
// concurrent readers get the old or the new entry, never a mix. It refuses
// (false) a body shorter or longer than announced.
func (s *Store) Commit() (*Entry, bool) {
	if s.dead || (s.meta.BodySize >= 0 && s.n != s.meta.BodySize) {
		s.Abort()
		return nil, false
	}
	s.meta.BodySize = s.n
	h := s.meta.Header
	if h == nil {
		h = make(http.Header, 1)
		s.meta.Header = h
	}
	h["Content-Length"] = []string{strconv.FormatInt(s.n, 10)}
	for k, v := range h {
		h[k] = v[:len(v):len(v)]
	}
	e := &Entry{Meta: s.meta, Body: s.body}
	if e.Body == nil {
		e.Body = []byte{}
	}
	s.zone.keys.add(e.Key)
	if !s.zone.mem.set(e) {
		s.zone.keys.remove(e.Key)
		s.zone.Stats.CountSkip("too-large")
		return nil, false
	}
	s.zone.Stats.Stored.Add(1)
	return e, true
}

// Abort discards the store.
func (s *Store) Abort() { s.dead, s.body = true, nil }

// useCounter counts requests per key for min_uses. It forgets everything
// when it grows past its bound, as nginx forgets uses with evicted nodes.
type useCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

const maxTrackedUses = 1 << 20

func (u *useCounter) add(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.counts == nil || len(u.counts) >= maxTrackedUses {
		u.counts = make(map[string]int)
	}
	u.counts[key]++
	return u.counts[key]
}
