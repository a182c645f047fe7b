package cache

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
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
// keys_zone): its tiers, its key index, the fills under way (fill.go), its
// clock and its counters. Entries come in through an EntryWriter
// (entry_writer.go).
type Zone struct {
	name    string
	mem     *memoryTier
	disk    *DiskStore
	keys    *keyIndex
	indexed chan struct{} // closed when the key index holds the disk's keys
	fills   fills
	uses    useCounter
	clock   Clock
	Stats   Stats

	// A promotion to memory (from disk, or from the recent FIFO to
	// ristretto) must not land after a purge of what it read. A promotion
	// notes purgeGen before it reads, and stores, under promoteMu's read
	// lock, only if no purge is under way (purging) and none ended since
	// (each one bumps purgeGen when it ends).
	promoteMu sync.RWMutex
	purging   int
	purgeGen  atomic.Uint64
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
	z.Stats.declare()
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

// Clock is the zone's time, for the zone and whoever serves from it.
func (z *Zone) Clock() *Clock { return &z.clock }

// Get returns the entry stored under key, fresh or not. An entry found on
// disk that fits the hot tier is promoted to it; a larger one is returned
// with its body on disk, to be streamed.
func (z *Zone) Get(key string) (*Entry, bool) {
	gen := z.purgeGen.Load()
	if e, recent, ok := z.mem.lookup(key); ok {
		if recent {
			z.promoteMu.RLock()
			if z.mayPromote(gen) {
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
	if z.mayPromote(gen) {
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

// Close releases the zone's memory; the disk tier belongs to the caller.
func (z *Zone) Close() error {
	z.mem.close()
	return nil
}

// PurgeGeneration changes whenever a purge ends; see Revalidation.
func (z *Zone) PurgeGeneration() uint64 { return z.purgeGen.Load() }

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
