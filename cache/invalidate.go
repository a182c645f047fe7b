package cache

import (
	"sync"
	"sync/atomic"
)

// Invalidate removes what the zone holds for one key, all its variants
// included, as RFC 9111 §4.4 asks after an unsafe request changed the
// resource. Unlike Purge it does not end a zone-wide generation: fills
// and promotions of other keys go on, and only those of this key that
// began before the invalidation are refused (they may carry the state
// before the change). It reports whether the zone held the key.
func (z *Zone) Invalidate(key string) bool {
	variants := z.hasVariants(key)
	z.promoteMu.Lock()
	z.invalidated.add(key)
	_, _, known := z.mem.lookup(key)
	z.mem.del(key)
	z.promoteMu.Unlock()
	if z.disk != nil {
		if existed, _ := z.disk.Delete(key); existed {
			known = true
		}
	}
	z.unindex(key)
	z.dropVariants(key, variants)
	if known {
		z.Stats.Invalidated.Add(1)
	}
	return known
}

// invalidations remembers which keys were invalidated since a Mark, so
// that a store or promotion of a key that began before its invalidation
// is refused, without disturbing the others.
type invalidations struct {
	seq   atomic.Uint64 // bumped by each invalidation: Mark.Inval is its value
	mu    sync.Mutex
	at    map[string]uint64 // key → seq of its last invalidation
	floor uint64            // sequences below this may have lost their records
}

// maxTrackedInvalidations bounds the record. When it is full it is
// forgotten, and the stores begun before (a handful, in practice) are
// refused: losing a store costs a miss, keeping an invalid one would not.
const maxTrackedInvalidations = 1 << 16

func (v *invalidations) now() uint64 { return v.seq.Load() }

// add records an invalidation of key. Called with the zone's promoteMu
// held for writing, so no store or promotion checks meanwhile.
func (v *invalidations) add(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at == nil || len(v.at) >= maxTrackedInvalidations {
		v.floor = v.seq.Load()
		v.at = make(map[string]uint64)
	}
	v.at[key] = v.seq.Add(1)
}

// since reports whether key was invalidated after seq (a Mark's Inval).
// Nothing to look up when nothing was invalidated since: the common case
// is one load.
func (v *invalidations) since(key string, seq uint64) bool {
	if v.seq.Load() == seq {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return seq < v.floor || v.at[key] > seq
}
