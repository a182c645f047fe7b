package cache

import (
	"time"
)

// Version names one version of an entry: the key it is stored under (a
// variant's key included), when it was stored, and its freshness as a
// soft purge leaves it (marked, fresh until then).
type Version struct {
	Key        string
	StoredAt   time.Time
	ValidUntil time.Time
	SoftPurged bool
}

// reconcileBatch is how many versions one call of Reconcile's proof takes.
const reconcileBatch = 500

// Reconcile keeps the entries that current proves unchanged and drops
// the others, one key at a time, as Invalidate does: fills of other keys
// go on. A fleet proxy that lost events it had not applied calls it, with
// the shared tier as the proof, rather than empty the zone. current gets
// the versions of a batch of entries and says which are current; when it
// fails, the batch cannot be proven and is dropped (the first error is
// returned). Vary indexes, which hold no response, are kept: a variant
// dropped is a miss under its index. It reports how many entries it kept
// and dropped.
//
// From its first call until a pass ends, the entries stored before it are
// not served (a look-up misses them): none is served before it is proven.
// A call that finds the index loading (ErrIndexLoading) leaves them
// hidden, for the caller to call again.
func (z *Zone) Reconcile(current func([]Version) ([]bool, error)) (kept, dropped int, err error) {
	z.unprovenBefore.CompareAndSwap(0, time.Now().UnixNano())
	if !z.IndexReady() {
		return 0, 0, ErrIndexLoading
	}
	defer z.unprovenBefore.Store(0)
	seen := make(map[string]bool)
	var batch []Version
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ok, cerr := current(batch)
		if cerr != nil && err == nil {
			err = cerr
		}
		for i, v := range batch {
			if cerr == nil && i < len(ok) && ok[i] {
				kept++
			} else {
				z.drop(v.Key)
				dropped++
			}
		}
		batch = batch[:0]
	}
	visit := func(k string) bool {
		if seen[k] {
			return true
		}
		seen[k] = true
		v, ok, index := z.version(k)
		switch {
		case index:
		case !ok:
			// Two tiers disagree: neither can be proven.
			z.drop(k)
			dropped++
		default:
			if batch = append(batch, v); len(batch) == reconcileBatch {
				flush()
			}
		}
		return true
	}
	for _, k := range z.keys.withPrefix("") {
		visit(k)
	}
	for _, k := range z.mem.recent.withPrefix("") {
		visit(k)
	}
	if z.disk != nil {
		z.disk.Walk(visit)
	}
	flush()
	return kept, dropped, err
}

// unproven reports whether an entry stored at storedAt waits for a
// Reconcile's proof.
func (z *Zone) unproven(storedAt time.Time) bool {
	t := z.unprovenBefore.Load()
	return t != 0 && storedAt.UnixNano() < t
}

// version is the version of key's entry, read without promoting it nor
// reading its body. ok is false when its memory and disk copies are of
// different versions; index reports a Vary index.
func (z *Zone) version(key string) (v Version, ok, index bool) {
	v.Key = key
	found := false
	if e, _, inMem := z.mem.lookup(key); inMem {
		v.StoredAt, v.ValidUntil, v.SoftPurged, found, index = e.StoredAt, e.ValidUntil, e.SoftPurged, true, e.VaryIndex
	}
	if de := z.diskGet(key); de != nil {
		if found && (!de.StoredAt.Equal(v.StoredAt) || !de.ValidUntil.Equal(v.ValidUntil) || de.SoftPurged != v.SoftPurged) {
			return v, false, false
		}
		v.StoredAt, v.ValidUntil, v.SoftPurged, index = de.StoredAt, de.ValidUntil, de.SoftPurged, de.VaryIndex
	}
	return v, true, index
}

// drop removes one stored key (a variant's, or a primary one) from both
// tiers, and refuses the stores and promotions of its key that began
// before (as Invalidate).
func (z *Zone) drop(key string) {
	z.promoteMu.Lock()
	z.invalidated.add(primaryKey(key))
	z.mem.del(key)
	z.promoteMu.Unlock()
	if z.disk != nil {
		_, _ = z.disk.Delete(key)
	}
	z.keys.remove(key)
	z.Stats.Invalidated.Add(1)
}
