package cache

import (
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

func (x *keyIndex) has(key string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.tree.Has(key)
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
