// Package tagindex maps tags to the entries that carry them, for purges
// by tag: each tag's string is held once, and its references are a sorted
// slice of fixed-size values (16 bytes a reference in edgecache's tiers).
// The memory tier (package cache) and the disk tier each keep one.
package tagindex

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Index maps a tag to the entries that carry it, so that a purge by tag
// touches only those. Each tag's string is held once; its references are
// a sorted slice of fixed-size values (a key's string header for the
// memory tier, whose key bytes are the entry's; a key's MD5 for the disk
// tier, which holds no keys in memory): 16 bytes a reference, plus the
// slice's spare capacity.
//
// References are removed lazily. An entry that leaves the tier is only
// counted (Gone); when the count passes a quarter of the references, a sweep
// drops those whose entry the tier no longer holds. A reference can also
// outlive its tag when a key is stored again with other tags: purges read
// the entry's own tags before they act, so a stale reference costs a
// look-up, never a wrong count.
type Index[R any] struct {
	cmp     func(a, b R) int
	refSize int64

	mu    sync.Mutex
	tags  map[string][]R
	refs  int          // references held
	dead  atomic.Int64 // entries gone since the last sweep (Gone takes no lock)
	held  atomic.Int64 // refs, for Gone
	alive func(R) bool
	bytes atomic.Int64
	// sweeping is set while a sweep Gone started runs.
	sweeping atomic.Bool
}

// Bytes is what the index takes in memory.
func (x *Index[R]) Bytes() int64 { return x.bytes.Load() }

// SlotBytes is what a tag costs beyond its string and references: its
// map slot (string and slice headers, its share of the control bytes, at
// seven eighths full).
const SlotBytes = (16 + 24 + 1) * 8 / 7

// New makes an index whose references compare with cmp and cost refSize
// bytes each; alive tells whether the tier still holds an entry (sweeps).
func New[R any](cmp func(a, b R) int, refSize int64, alive func(R) bool) *Index[R] {
	return &Index[R]{cmp: cmp, refSize: refSize, tags: make(map[string][]R), alive: alive}
}

// Add records that the entry r carries tags.
func (x *Index[R]) Add(r R, tags []string) {
	if len(tags) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, t := range tags {
		refs, known := x.tags[t]
		i, found := slices.BinarySearchFunc(refs, r, x.cmp)
		if found {
			continue
		}
		if !known {
			// The tag's own copy: a tag sliced out of a larger string
			// (a header line) must not keep that string alive.
			t = string([]byte(t))
		}
		before := cap(refs)
		if len(refs) == cap(refs) {
			// Grown by a sixteenth: a reference costs at most 17 bytes.
			refs = append(make([]R, 0, len(refs)+len(refs)/16+1), refs...)
		}
		refs = slices.Insert(refs, i, r)
		x.tags[t] = refs
		x.refs++
		x.held.Store(int64(x.refs))
		x.account(known, t, before, cap(refs))
	}
}

// account adds a tag's change of capacity (and its slot, when new) to the
// byte count.
func (x *Index[R]) account(known bool, tag string, before, after int) {
	d := int64(after-before) * x.refSize
	if !known {
		d += int64(len(tag)) + SlotBytes
	}
	x.bytes.Add(d)
}

// Remove drops the reference of r under tags, and the tags left empty.
func (x *Index[R]) Remove(r R, tags []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, t := range tags {
		x.removeLocked(t, r)
	}
}

func (x *Index[R]) removeLocked(t string, r R) {
	refs, ok := x.tags[t]
	if !ok {
		return
	}
	i, found := slices.BinarySearchFunc(refs, r, x.cmp)
	if !found {
		return
	}
	refs = slices.Delete(refs, i, i+1)
	x.refs--
	x.held.Store(int64(x.refs))
	x.setLocked(t, refs)
}

// setLocked replaces t's references, dropping the tag when none are
// left and giving back capacity when most of it is spare.
func (x *Index[R]) setLocked(t string, refs []R) {
	before := cap(x.tags[t])
	if len(refs) == 0 {
		delete(x.tags, t)
		x.bytes.Add(-int64(before)*x.refSize - int64(len(t)) - SlotBytes)
		return
	}
	if cap(refs) > 2*len(refs)+4 {
		refs = slices.Clone(refs)
	}
	x.tags[t] = refs
	x.bytes.Add(int64(cap(refs)-before) * x.refSize)
}

// Lookup returns a copy of the references under tag.
func (x *Index[R]) Lookup(tag string) []R {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.tags[tag])
}

// Drop removes the tag and all its references (after a purge of them).
func (x *Index[R]) Drop(tag string, refs []R) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range refs {
		x.removeLocked(tag, r)
	}
}

// Gone counts an entry that left the tier; enough of them start a sweep,
// in a goroutine of its own (one at a time). It takes no lock: the caller
// may hold the tier's locks, which alive takes under the index's.
func (x *Index[R]) Gone() {
	dead := x.dead.Add(1)
	if dead > 1024 && dead > x.held.Load()/4 && x.sweeping.CompareAndSwap(false, true) {
		go func() {
			defer x.sweeping.Store(false)
			x.Sweep()
		}()
	}
}

// Sweep drops the references whose entry the tier no longer holds.
func (x *Index[R]) Sweep() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dead.Store(0)
	for t, refs := range x.tags {
		kept := refs[:0]
		for _, r := range refs {
			if x.alive(r) {
				kept = append(kept, r)
			}
		}
		if n := len(refs) - len(kept); n > 0 {
			clear(refs[len(kept):])
			x.refs -= n
			x.held.Store(int64(x.refs))
			x.setLocked(t, kept)
		}
	}
}

// Clear forgets every tag.
func (x *Index[R]) Clear() {
	x.mu.Lock()
	clear(x.tags)
	x.refs = 0
	x.dead.Store(0)
	x.held.Store(0)
	x.bytes.Store(0)
	x.mu.Unlock()
}

// Size returns the tags and references held.
func (x *Index[R]) Size() (tags, refs int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.tags), x.refs
}
