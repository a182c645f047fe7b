package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// Disk, when set, is the persistent tier under the hot one. The caller
	// opens it (one store per folder per process) and closes it.
	Disk *DiskStore
}

// ErrIndexLoading is returned by purges by prefix and key listings while
// the disk tier's index is still being rebuilt after a start.
var ErrIndexLoading = errors.New("cache: the zone's key index is still loading from disk; try again shortly")

// Zone is a named cache, shared by every site that names it (as nginx's
// keys_zone): its tiers, its key index, the fills under way and its counters.
type Zone struct {
	name    string
	mem     *memoryTier
	disk    *DiskStore
	keys    *keyIndex
	indexed chan struct{} // closed when the key index holds the disk's keys
	flights flightGroup
	uses    useCounter
	Stats   Stats

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
}

// NewZone makes a zone from its configuration.
func NewZone(cfg ZoneConfig) (*Zone, error) {
	if cfg.MemorySize <= 0 {
		return nil, fmt.Errorf("zone %s: memory size must be positive", cfg.Name)
	}
	if cfg.MemoryEntryMax <= 0 {
		cfg.MemoryEntryMax = DefaultMemoryEntryMax(cfg.MemorySize)
	}
	z := &Zone{name: cfg.Name, keys: newKeyIndex(), disk: cfg.Disk, indexed: make(chan struct{})}
	gone := z.keys.remove
	if z.disk != nil {
		gone = nil // the disk holds what memory lets go
	}
	mem, err := newMemoryTier(cfg.MemorySize, cfg.MemoryEntryMax, gone)
	if err != nil {
		return nil, fmt.Errorf("zone %s: %w", cfg.Name, err)
	}
	z.mem = mem
	if z.disk == nil {
		close(z.indexed)
		return z, nil
	}
	z.disk.OnRemove(z.keys.remove)
	go func() {
		<-z.disk.Loaded()
		z.disk.Walk(func(key string, _ int64) bool { z.keys.add(key); return true })
		close(z.indexed)
	}()
	return z, nil
}

// DefaultMemoryEntryMax is the per-entry limit of a hot tier of the given
// size: a sixteenth of it, at most 64 MiB, so one body never crowds out many.
func DefaultMemoryEntryMax(memorySize int64) int64 {
	return min(memorySize/16, 64<<20)
}

// Name is the zone's configured name.
func (z *Zone) Name() string { return z.name }

// Get returns the entry stored under key, fresh or not. An entry found on
// disk that fits the hot tier is promoted to it; a larger one is returned
// with its body on disk, to be streamed.
func (z *Zone) Get(key string) (*Entry, bool) {
	gen, mark := z.purgeGen.Load(), z.invalidated.mark()
	if e, recent, ok := z.mem.lookup(key); ok {
		if recent {
			z.promoteMu.RLock()
			if z.mayStore(gen, mark, key) {
				z.mem.readmit(e)
			}
			z.promoteMu.RUnlock()
		}
		return e, true
	}
	if z.disk == nil {
		return nil, false
	}
	e, err := z.disk.Get(key)
	if err != nil {
		return nil, false
	}
	if _, ok := e.Header["Content-Length"]; !ok {
		// The header was written before a chunked body's length was known.
		if e.Header == nil {
			e.Header = make(http.Header, 1)
		}
		e.Header["Content-Length"] = []string{strconv.FormatInt(e.BodySize, 10)}
	}
	if e.BodySize > z.mem.maxEntry {
		return e, true
	}
	body, err := z.disk.LoadBody(e)
	if err != nil {
		return nil, false
	}
	hot := &Entry{Meta: e.Meta, Body: body}
	z.promoteMu.RLock()
	if z.mayStore(gen, mark, key) {
		z.keys.add(key)
		z.mem.set(hot)
	}
	z.promoteMu.RUnlock()
	// A commit of a newer version (the refresh listener) may have landed
	// between the read and the promotion: then the promoted copy is old.
	// The commit replaces memory after renaming the file, so checking the
	// file after promoting finds every such case.
	if now, err := z.disk.Get(key); err != nil || !now.StoredAt.Equal(hot.StoredAt) {
		z.mem.delIf(key, hot)
	}
	return hot, true
}

// mayPromote reports, under promoteMu's read lock, whether an entry read
// when purgeGen was gen may be stored in memory.
func (z *Zone) mayPromote(gen uint64) bool {
	return z.purging == 0 && z.purgeGen.Load() == gen
}

// mayStore is mayPromote for one key: nor may the key have been
// invalidated since mark.
func (z *Zone) mayStore(gen, mark uint64, key string) bool {
	return z.mayPromote(gen) && !z.invalidated.since(primaryKey(key), mark)
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

// Len is the number of keys the zone holds.
func (z *Zone) Len() int { return z.keys.len() }

// Purge removes one key and reports whether the zone knew it.
func (z *Zone) Purge(key string) bool {
	defer z.beginPurge()()
	_, _, known := z.mem.lookup(key)
	z.mem.del(key)
	if z.disk != nil {
		if err := z.disk.Delete(key); err == nil {
			known = true
		}
	}
	z.keys.remove(key)
	z.dropVariants(key)
	if known {
		z.Stats.Purged.Add(1)
	}
	return known
}

// PurgePrefix removes every key that starts with prefix and returns how many.
func (z *Zone) PurgePrefix(prefix string) (int, error) {
	if !z.IndexReady() {
		return 0, ErrIndexLoading
	}
	defer z.beginPurge()()
	keys := z.keys.withPrefix(prefix)
	for _, k := range keys {
		z.mem.del(k)
		if z.disk != nil {
			_ = z.disk.Delete(k)
		}
		z.keys.remove(k)
	}
	z.Stats.Purged.Add(int64(len(keys)))
	return len(keys), nil
}

// PurgeAll empties the zone and returns how many keys it held.
func (z *Zone) PurgeAll() (int, error) {
	defer z.beginPurge()()
	n := len(z.keys.clear())
	z.mem.clear()
	if z.disk != nil {
		if err := z.disk.Clear(); err != nil {
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

// Keys pages through the zone's keys in order: up to limit keys that start
// with prefix, after the key after; more reports whether others follow.
func (z *Zone) Keys(prefix, after string, limit int) (keys []string, more bool, err error) {
	if !z.IndexReady() {
		return nil, false, ErrIndexLoading
	}
	keys, more = z.keys.page(prefix, after, limit)
	return keys, more, nil
}

// Disk returns the zone's disk tier, or nil.
func (z *Zone) Disk() *DiskStore { return z.disk }

// MemoryEntries and MemoryBytes measure the hot tier.
func (z *Zone) MemoryEntries() int64 {
	return int64(z.mem.items.Metrics.KeysAdded() - z.mem.items.Metrics.KeysEvicted())
}

// Close releases the zone's memory; the disk tier belongs to the caller.
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
// client: into a memory buffer while it fits the hot tier, and into a disk
// file when the zone has one. Nothing is visible until Commit; Abort, or a
// body that is cut short, leaves the zone as it was.
type Store struct {
	zone     *Zone
	meta     Meta
	body     []byte
	file     *DiskWriter
	n        int64
	inMemory bool   // still buffering for the hot tier
	gen      uint64 // purge generation at the start: a purge since voids the store
	mark     uint64 // invalidation mark at the start: an invalidation of the key since voids it
	primary  string // for a variant (meta.VaryNames set): the key its index goes under
}

// BeginStore starts storing a response. meta.BodySize is the announced
// length, or -1 when the backend did not announce one.
func (z *Zone) BeginStore(meta Meta) *Store {
	s := &Store{zone: z, meta: meta, inMemory: meta.BodySize <= z.mem.maxEntry, gen: z.purgeGen.Load(), mark: z.invalidated.mark()}
	if len(meta.VaryNames) > 0 {
		s.primary = meta.Key
		s.meta.Key = VariantKey(meta.Key, meta.Variant)
	}
	if s.inMemory && meta.BodySize >= 0 {
		s.body = make([]byte, 0, meta.BodySize)
	}
	if z.disk != nil {
		w, err := z.disk.Create(meta)
		if err == nil {
			s.file = w
		} else {
			z.Stats.CountSkip("disk")
		}
	}
	return s
}

// Write adds body bytes. It never fails: a store that cannot continue
// just stops storing, and the response goes on streaming to the client.
func (s *Store) Write(p []byte) {
	s.n += int64(len(p))
	if s.file != nil {
		if _, err := s.file.Write(p); err != nil {
			s.file.Abort()
			s.file = nil
			s.zone.Stats.CountSkip("disk")
		}
	}
	if s.inMemory {
		if s.n > s.zone.mem.maxEntry {
			s.inMemory, s.body = false, nil
		} else {
			s.body = append(s.body, p...)
		}
	}
}

// Abandoned reports whether the store has given up, so the caller can stop
// feeding it.
func (s *Store) Abandoned() bool { return !s.inMemory && s.file == nil }

// Commit makes the entry visible, replacing any entry of its key at once:
// concurrent readers get the old or the new entry, never a mix. It refuses
// (false) a body shorter or longer than announced.
func (s *Store) Commit() (*Entry, bool) {
	if s.Abandoned() || (s.meta.BodySize >= 0 && s.n != s.meta.BodySize) {
		if s.Abandoned() {
			s.zone.Stats.CountSkip("too-large")
		}
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
	z := s.zone
	// A response fetched while a purge ran may be what the purge removed:
	// it is not stored (nginx would store it; a purge here is final).
	z.promoteMu.RLock()
	defer z.promoteMu.RUnlock()
	if !z.mayStore(s.gen, s.mark, s.meta.Key) {
		z.Stats.CountSkip("purged")
		s.Abort()
		return nil, false
	}
	var onDisk *Entry
	if s.file != nil {
		e, err := s.file.Commit()
		s.file = nil
		if err == nil {
			onDisk = e
		} else {
			z.Stats.CountSkip("disk")
		}
	}
	z.keys.add(s.meta.Key)
	var e *Entry
	switch {
	case s.inMemory:
		body := s.body
		if cap(body)-len(body) > len(body)/8 {
			// A body of unknown length grew by doubling: keep only what
			// it holds, so the tier's accounting is what memory holds.
			body = append(make([]byte, 0, len(body)), body...)
		}
		e = &Entry{Meta: s.meta, Body: body}
		if e.Body == nil {
			e.Body = []byte{}
		}
		z.mem.set(e)
	case onDisk != nil:
		// Too large for memory: the old version there must not outlive it.
		z.mem.del(s.meta.Key)
		e = onDisk
	default:
		s.Abort()
		return nil, false
	}
	if s.primary != "" {
		z.storeVaryIndex(s.primary, s.meta.VaryNames, s.meta.StoredAt)
	}
	z.Stats.Stored.Add(1)
	return e, true
}

// Abort discards the store.
func (s *Store) Abort() {
	if s.file != nil {
		s.file.Abort()
		s.file = nil
	}
	s.inMemory, s.body = false, nil
}

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

// Revalidation is a backend's confirmation (304) that a stale entry still
// holds, with the headers it sent and the validity they give.
type Revalidation struct {
	Header   http.Header // the 304's headers that replace stored ones
	Decision Decision
	At       time.Time
	// PurgeGen is PurgeGeneration() from before the backend was asked: a
	// purge since then wins over the revalidation.
	PurgeGen uint64
	// Invalidations is InvalidationMark() from before the backend was
	// asked: an invalidation of the key since then wins too.
	Invalidations uint64
}

// PurgeGeneration changes whenever a purge ends; see Revalidation.
func (z *Zone) PurgeGeneration() uint64 { return z.purgeGen.Load() }

// Revalidate stores a copy of old with the new validity and headers, sharing
// its body, and returns it.
func (z *Zone) Revalidate(old *Entry, rv Revalidation) *Entry {
	e := &Entry{Meta: old.Meta, Body: old.Body, File: old.File, BodyOffset: old.BodyOffset}
	e.Header = old.Header.Clone()
	for k, v := range rv.Header {
		e.Header[k] = v[:len(v):len(v)]
	}
	e.StoredAt = rv.At
	e.InitialAge = rv.Decision.InitialAge
	e.NoCache = rv.Decision.NoCache
	e.ValidUntil = rv.Decision.ValidUntil
	e.StaleWhileRevalidate = rv.Decision.StaleWhileRevalidate
	e.StaleIfError = rv.Decision.StaleIfError
	z.promoteMu.RLock()
	defer z.promoteMu.RUnlock()
	if !z.mayStore(rv.PurgeGen, rv.Invalidations, e.Key) {
		return e // served to this client, not stored
	}
	z.keys.add(e.Key)
	if z.disk != nil {
		z.rewriteOnDisk(old, e)
	}
	if e.InMemory() {
		z.mem.set(e)
	}
	return e
}

// rewriteOnDisk writes a revalidated entry's new header with its body.
func (z *Zone) rewriteOnDisk(old, e *Entry) {
	body, err := old.OpenBody()
	if err != nil {
		return
	}
	defer body.Close()
	w, err := z.disk.Create(e.Meta)
	if err != nil {
		return
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Abort()
		return
	}
	if onDisk, err := w.Commit(); err == nil && !e.InMemory() {
		e.Meta, e.File, e.BodyOffset, e.disk = onDisk.Meta, onDisk.File, onDisk.BodyOffset, onDisk.disk
	}
}
