package cache

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"github.com/edgecache/edgecache/cache/disk"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgecache/edgecache/cache/tagindex"
)

// ZoneConfig sizes a zone's tiers.
type ZoneConfig struct {
	Name string
	// MemorySize is the hot tier's budget in bytes.
	MemorySize int64
	// MemoryEntryMax is the largest body the hot tier holds; larger
	// responses are not stored unless the zone has a disk tier.
	MemoryEntryMax int64
	// Disk, when set, is the persistent tier under the hot one. The caller
	// opens it (one store per folder per process) and closes it.
	Disk *disk.Store
}

// diskTier is what a zone asks of its disk tier (a disk.Store): entries
// in (Create), out (Get, whose File opens the body or a range of it) and
// gone (Delete, Clear); the keys it holds, for purges by prefix and key
// listings (Has, Walk, WalkFrom); its counters.
type diskTier interface {
	Get(key string) (*disk.Entry, error)
	Create(m disk.Meta) (*disk.Writer, error)
	Delete(key string) (existed bool, err error)
	Clear() (removed int, err error)
	Has(key string) bool
	Walk(fn func(key string) bool)
	WalkFrom(from *[md5.Size]byte, fn func(h [md5.Size]byte, key string) bool)
	Stats() disk.Stats
	// Tagged and TagIndexBytes are its tag index's (purges by tag).
	Tagged(tag string) []string
	TagIndexBytes() int64
}

var _ diskTier = (*disk.Store)(nil)

// ErrIndexLoading is returned by purges by prefix and key listings while
// the disk tier's index is still being rebuilt after a start.
var ErrIndexLoading = errors.New("cache: the zone's key index is still loading from disk; try again shortly")

// Zone is a named cache, shared by every site that names it (as nginx's
// keys_zone): its tiers, its key index, the fills under way (fill.go), its
// clock and its counters. Entries come in through an EntryWriter
// (entry_writer.go).
type Zone struct {
	name    string
	mem     *memoryTier
	disk    diskTier // nil without one
	diskMax int64    // the disk tier's max_size (0: none)
	keys    *keyIndex
	memTags *tagindex.Index[string] // the memory tier's entries by tag (cache/tagindex)
	indexed <-chan struct{}         // closed when the disk tier's index is complete
	fills   fills
	uses    useCounter
	clock   Clock
	Stats   Stats
	// activity is the recent history the status page shows (activity.go).
	activity Activity

	// A promotion to memory (from disk, or from the recent FIFO to
	// ristretto) must not land after a purge of what it read. A promotion
	// notes purgeGen before it reads, and stores, under promoteMu's read
	// lock, only if no purge is under way (purging) and none ended since
	// (each one bumps purgeGen when it ends).
	promoteMu sync.RWMutex
	purging   int
	purgeGen  atomic.Uint64
	// invalidated refuses, per key, stores and promotions that began
	// before an invalidation of their key (see Invalidate).
	invalidated invalidations
	// unprovenBefore, while a Reconcile runs, hides the entries stored
	// before it (Unix nanoseconds; 0: none): they may be ones a lost event
	// purged, until the pass proves them current.
	unprovenBefore atomic.Int64
}

// NewZone makes a zone from its configuration.
func NewZone(cfg ZoneConfig) (*Zone, error) {
	if cfg.MemorySize <= 0 {
		return nil, fmt.Errorf("zone %s: memory size must be positive", cfg.Name)
	}
	if cfg.MemoryEntryMax <= 0 {
		cfg.MemoryEntryMax = DefaultMemoryEntryMax(cfg.MemorySize)
	}
	z := &Zone{name: cfg.Name, keys: newKeyIndex(), indexed: closedChan}
	z.memTags = tagindex.New(strings.Compare, 16, z.keys.has)
	z.Stats.declare()
	// The key index holds the memory tier's keys; the disk tier's are in
	// its entry files (see disk.Store.Walk), so that an entry on disk costs
	// no string in memory.
	mem, err := newMemoryTier(cfg.MemorySize, cfg.MemoryEntryMax, z.keys.add, z.unindex)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", cfg.Name, err)
	}
	z.mem = mem
	if cfg.Disk == nil {
		return z, nil
	}
	z.disk, z.diskMax = cfg.Disk, cfg.Disk.MaxSize()
	z.indexed = cfg.Disk.Loaded()
	cfg.Disk.OnFlush(z.forget)
	return z, nil
}

// forget drops the memory tier after the zone folder was emptied from
// outside (the operators' full flush).
func (z *Zone) forget() {
	defer z.beginPurge()()
	z.keys.clear()
	z.memTags.Clear()
	z.mem.clear()
}

// index records e in the memory tier's indexes (of keys and tags), before
// the tier holds it.
func (z *Zone) index(e *Entry) {
	z.keys.add(e.Key)
	z.memTags.Add(e.Key, e.Tags)
}

// unindex forgets a key that left the memory tier. Its tag references go
// lazily (tagindex.Index.Gone).
func (z *Zone) unindex(key string) {
	z.keys.remove(key)
	z.memTags.Gone()
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// DefaultMemoryEntryMax is the per-entry limit of a hot tier of the given
// size: a sixteenth of it, at most 64 MiB, so one body never crowds out many.
func DefaultMemoryEntryMax(memorySize int64) int64 {
	return min(memorySize/16, 64<<20)
}

// Name is the zone's configured name.
func (z *Zone) Name() string { return z.name }

// Clock is the zone's time, for the zone and whoever serves from it.
func (z *Zone) Clock() *Clock { return &z.clock }

// Mark is when a request began, for what it may store: a purge, or an
// invalidation of its key, since then voids the store, as the backend may
// have computed the answer before it. The flow takes it before its
// look-up.
type Mark struct{ Purge, Inval uint64 }

// Mark is the zone's mark now.
func (z *Zone) Mark() Mark { return Mark{Purge: z.purgeGen.Load(), Inval: z.invalidated.now()} }

// Get returns the entry stored under key, fresh or not. An entry found on
// disk that fits the hot tier is promoted to it; a larger one is returned
// with its body on disk, to be streamed.
func (z *Zone) Get(key string) (*Entry, bool) {
	e, tier := z.get(key)
	return e, tier != TierNone
}

// get is Get, saying which tier held the entry (TierNone: neither).
func (z *Zone) get(key string) (*Entry, Tier) {
	at := z.Mark()
	if e, recent, ok := z.mem.lookup(key); ok && !z.unproven(e.StoredAt) {
		if recent {
			z.promoteMu.RLock()
			if !z.voided(at, key) {
				z.mem.readmit(e)
			}
			z.promoteMu.RUnlock()
		}
		return e, TierMemory
	}
	de := z.diskGet(key)
	if de == nil || z.unproven(de.StoredAt) {
		return nil, TierNone
	}
	e := &de.Meta
	if e.BodySize > z.mem.maxEntry {
		return fromDisk(de), TierDisk
	}
	body, err := de.File.Load()
	if err != nil {
		return nil, TierNone
	}
	hot := newFromDisk(de)
	hot.Body, hot.file = body, disk.File{}
	z.promoteMu.RLock()
	if !z.voided(at, key) {
		z.index(hot)
		z.mem.set(hot)
	}
	z.promoteMu.RUnlock()
	// A commit of a newer version (the refresh listener) may have landed
	// between the read and the promotion: then the promoted copy is old.
	// The commit replaces memory after renaming the file, so checking the
	// file after promoting finds every such case.
	if now := z.diskGet(key); now == nil || !now.StoredAt.Equal(hot.StoredAt) {
		z.mem.delIf(key, hot)
	}
	return hot, TierDisk
}

// diskGet is the disk tier's entry for key: nil if it holds none, or if
// the zone has no disk tier.
func (z *Zone) diskGet(key string) *disk.Entry {
	if z.disk == nil {
		return nil
	}
	de, err := z.disk.Get(key)
	if err != nil {
		return nil
	}
	return de
}

// voided reports, under promoteMu's read lock, whether what was read or
// fetched for key by a request that began at the mark at may no longer be
// stored: a purge is under way or ended since, or key was invalidated
// since.
func (z *Zone) voided(at Mark, key string) bool {
	return z.purgedSince(at.Purge) || z.invalidated.since(primaryKey(key), at.Inval)
}

// purgedSince reports, under promoteMu's read lock, whether a purge is
// under way or ended since purgeGen was gen.
func (z *Zone) purgedSince(gen uint64) bool {
	return z.purging != 0 || z.purgeGen.Load() != gen
}

// beginPurge stops promotions until the purge ends (the returned function)
// and refuses, after it, those of entries read before or during it.
func (z *Zone) beginPurge() (end func()) {
	z.promoteMu.Lock()
	z.purging++
	z.promoteMu.Unlock()
	return func() {
		z.promoteMu.Lock()
		z.purging--
		z.purgeGen.Add(1)
		z.promoteMu.Unlock()
	}
}

// Len is the number of entries the zone holds: the disk tier's when it
// has one (the memory tier holds copies of some of them), or the memory
// tier's.
func (z *Zone) Len() int {
	if z.disk != nil {
		return int(z.disk.Stats().Entries)
	}
	return z.keys.len()
}

// Purge removes one key and reports whether the zone held it.
func (z *Zone) Purge(key string) bool {
	defer z.beginPurge()()
	variants := z.hasVariants(key)
	known := z.purgeKey(key)
	z.dropVariants(key, variants)
	if known {
		z.Stats.Purged.Add(1)
	}
	return known
}

// purgeKey removes key from both tiers and reports whether either held it.
func (z *Zone) purgeKey(key string) bool {
	_, _, known := z.mem.lookup(key)
	z.mem.del(key)
	z.unindex(key)
	if z.disk != nil {
		if existed, _ := z.disk.Delete(key); existed {
			known = true
		}
	}
	return known
}

// PurgePrefix removes every key that starts with prefix and returns how
// many entries there were. The keys on disk are read from the entry files.
func (z *Zone) PurgePrefix(prefix string) (int, error) {
	if !z.IndexReady() {
		return 0, ErrIndexLoading
	}
	defer z.beginPurge()()
	n := 0
	for _, k := range z.keys.withPrefix(prefix) {
		if z.purgeKey(k) {
			n++
		}
	}
	// The recent FIFO holds its keys itself: one the key index lost in a
	// race with ristretto's evictions (its callbacks run in a goroutine of
	// its own) is still found there. The FIFO is small (a sixteenth of the
	// tier, at most 64 MiB of entries).
	for _, k := range z.mem.recent.withPrefix(prefix) {
		if z.purgeKey(k) {
			n++
		}
	}
	if z.disk != nil {
		z.disk.Walk(func(k string) bool {
			if strings.HasPrefix(k, prefix) && z.purgeKey(k) {
				n++
			}
			return true
		})
	}
	z.Stats.Purged.Add(int64(n))
	return n, nil
}

// PurgeAll empties the zone and returns how many entries it held. While
// the disk tier's index is loading, the entries it has not reached yet are
// removed but not counted.
func (z *Zone) PurgeAll() (int, error) {
	defer z.beginPurge()()
	n := 0
	z.memTags.Clear()
	for _, k := range z.keys.clear() {
		// With a disk tier, a memory entry is normally a copy of a disk
		// one, counted below.
		if _, _, ok := z.mem.lookup(k); ok && (z.disk == nil || !z.disk.Has(k)) {
			n++
		}
	}
	z.mem.clear()
	if z.disk != nil {
		onDisk, err := z.disk.Clear()
		n += onDisk
		if err != nil {
			z.Stats.Purged.Add(int64(n))
			return n, err
		}
	}
	z.Stats.Purged.Add(int64(n))
	return n, nil
}

// IndexReady reports whether the key index holds every key (the disk
// tier's index rebuild after a start has finished).
func (z *Zone) IndexReady() bool {
	select {
	case <-z.indexed:
		return true
	default:
		return false
	}
}

// Keys pages through the zone's keys: up to limit keys that start with
// prefix, after the key after; more reports whether others follow. A
// memory-only zone lists them in order. A disk zone lists them in the order
// of their MD5 (the index's, which holds no keys): each page reads entry
// files from the one after the MD5 of after until it has limit keys, so
// that listing a whole zone reads each file once.
func (z *Zone) Keys(prefix, after string, limit int) (keys []string, more bool, err error) {
	if !z.IndexReady() {
		return nil, false, ErrIndexLoading
	}
	if limit <= 0 {
		return nil, false, nil
	}
	if z.disk == nil {
		keys, more = z.keys.page(prefix, after, limit)
		return keys, more, nil
	}
	var from *[md5.Size]byte
	if after != "" {
		h := disk.KeyHash(after)
		from = &h
	}
	type hashed struct {
		h   [md5.Size]byte
		key string
	}
	// Keys held in memory only (their disk write failed), in the same order.
	var memOnly []hashed
	for _, k := range z.keys.withPrefix(prefix) {
		h := disk.KeyHash(k)
		if (from == nil || bytes.Compare(h[:], from[:]) > 0) && !z.disk.Has(k) {
			memOnly = append(memOnly, hashed{h, k})
		}
	}
	slices.SortFunc(memOnly, func(a, b hashed) int { return bytes.Compare(a.h[:], b.h[:]) })
	var page []hashed
	z.disk.WalkFrom(from, func(h [md5.Size]byte, k string) bool {
		for len(memOnly) > 0 && bytes.Compare(memOnly[0].h[:], h[:]) < 0 {
			page, memOnly = append(page, memOnly[0]), memOnly[1:]
		}
		if strings.HasPrefix(k, prefix) {
			page = append(page, hashed{h, k})
		}
		return len(page) <= limit
	})
	page = append(page, memOnly...)
	if len(page) > limit {
		page, more = page[:limit], true
	}
	keys = make([]string, len(page))
	for i, p := range page {
		keys[i] = p.key
	}
	return keys, more, nil
}

// Close releases the zone's memory; the disk tier belongs to the caller.
func (z *Zone) Close() error {
	// Under the write lock: every store into the memory tier holds the
	// read lock, and a fill may commit after Caddy stopped the zone (a
	// fill goes on once its client left). ristretto closes its write
	// buffer before it marks itself closed: a Set in between would panic.
	z.promoteMu.Lock()
	defer z.promoteMu.Unlock()
	z.mem.close()
	return nil
}

// CountUse counts a request for key and returns how many there have been,
// for min_uses.
func (z *Zone) CountUse(key string) int { return z.uses.add(key) }

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
