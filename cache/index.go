package cache

import (
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"
)

// keyIndex is the ordered set of the keys in a zone's memory tier.
// ristretto keeps no keys, so purge by prefix and the paged key listing need
// this index of their own. It costs a string header and a tree slot per
// memory entry (the key's bytes are the entry's), within the tier's
// per-entry accounting; the disk tier's keys are read from its entry files.
type keyIndex struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[string]
}

func newKeyIndex() *keyIndex {
	return &keyIndex{tree: btree.NewOrderedG[string](32)}
}

func (x *keyIndex) add(key string) {
	x.mu.Lock()
	x.tree.ReplaceOrInsert(key)
	x.mu.Unlock()
}

func (x *keyIndex) remove(key string) {
	x.mu.Lock()
	x.tree.Delete(key)
	x.mu.Unlock()
}

func (x *keyIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.tree.Len()
}

// withPrefix returns the keys that start with prefix, in order.
func (x *keyIndex) withPrefix(prefix string) []string {
	var keys []string
	x.mu.RLock()
	x.tree.AscendGreaterOrEqual(prefix, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		keys = append(keys, k)
		return true
	})
	x.mu.RUnlock()
	return keys
}

// page returns up to limit keys after the key after (exclusive) that start
// with prefix, and whether more follow.
func (x *keyIndex) page(prefix, after string, limit int) (keys []string, more bool) {
	from := max(prefix, after)
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.tree.AscendGreaterOrEqual(from, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		if k == after {
			return true
		}
		if len(keys) == limit {
			more = true
			return false
		}
		keys = append(keys, k)
		return true
	})
	return keys, more
}

func (x *keyIndex) clear() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	keys := make([]string, 0, x.tree.Len())
	x.tree.Ascend(func(k string) bool { keys = append(keys, k); return true })
	x.tree.Clear(false)
	return keys
}

// keyPage keeps the n smallest distinct keys offered to it: a page of a
// listing streamed from the entry files, in memory bounded by the page.
type keyPage struct {
	n    int
	heap []string // max-heap: the largest kept key first
	has  map[string]bool
}

func newKeyPage(n int) *keyPage { return &keyPage{n: n, has: make(map[string]bool, n)} }

func (p *keyPage) offer(k string) {
	if p.has[k] {
		return
	}
	if len(p.heap) == p.n {
		if k >= p.heap[0] {
			return
		}
		delete(p.has, p.heap[0])
		p.heap[0] = k
		p.down(0)
	} else {
		p.heap = append(p.heap, k)
		p.up(len(p.heap) - 1)
	}
	p.has[k] = true
}

// sorted returns the kept keys in order.
func (p *keyPage) sorted() []string {
	keys := slices.Clone(p.heap)
	slices.Sort(keys)
	return keys
}

func (p *keyPage) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if p.heap[j] <= p.heap[i] {
			return
		}
		p.heap[i], p.heap[j] = p.heap[j], p.heap[i]
		j = i
	}
}

func (p *keyPage) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(p.heap) {
			return
		}
		j := l
		if r := l + 1; r < len(p.heap) && p.heap[r] > p.heap[l] {
			j = r
		}
		if p.heap[j] <= p.heap[i] {
			return
		}
		p.heap[i], p.heap[j] = p.heap[j], p.heap[i]
		i = j
	}
}
