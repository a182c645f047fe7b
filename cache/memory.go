package cache

import (
	"container/list"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// memoryTier is the hot tier: a ristretto cache whose cost is the entry's
// size in bytes.
//
// ristretto's Set is lossy: writes are buffered and applied later, and its
// TinyLFU admission policy may reject a new entry once the cache is full. So
// that an entry just stored is served on the next request, store waits for
// the write to be applied and checks whether it was admitted; an entry that
// was not is kept in a small FIFO of recent entries (a bounded share of the
// tier's size). A hit there offers the entry to ristretto again, which admits
// it once its frequency earns it a place.
type memoryTier struct {
	items    *ristretto.Cache[string, *Entry]
	recent   recentEntries
	maxEntry int64
	// entries and bytes measure what ristretto holds (for metrics): added
	// when a Set is accepted, taken off whenever a value leaves (OnExit:
	// replaced, evicted, rejected, deleted).
	entries, bytes atomic.Int64
	// evictions counts entries ristretto's policy pushed out to make room
	// (not deletions, replacements or rejected writes).
	evictions atomic.Int64
	// added and gone, when set, are told of a key that the tier holds (once
	// ristretto has applied the write) and of one that left it for good
	// (evicted, or pushed out of the recent FIFO without being admitted),
	// so that the zone's key index, which purge by prefix relies on, holds
	// every key the tier does. ristretto applies writes and evicts in a
	// goroutine of its own, so the order of the calls is not the order of
	// the writes: set tells added again after its write is applied, and
	// readmitMu orders readmissions before the check of keys pushed out.
	added, gone func(key string)
	readmitMu   sync.RWMutex
}

// entryOverhead approximates what an entry costs beyond its body and
// headers: the Entry struct, map slots and ristretto's bookkeeping.
const entryOverhead = 256

func newMemoryTier(size, maxEntry int64, added, gone func(string)) (*memoryTier, error) {
	recentBudget := min(size/16, 64<<20)
	m := &memoryTier{maxEntry: maxEntry, added: added, gone: gone}
	m.recent.init(recentBudget)
	counters := min(max(size/1024, 100_000), 50_000_000) // ~10 per expected entry of 10 KiB
	c, err := ristretto.NewCache(&ristretto.Config[string, *Entry]{
		NumCounters:        counters,
		MaxCost:            max(size-recentBudget, 1),
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnExit: func(e *Entry) {
			if e != nil {
				m.entries.Add(-1)
				m.bytes.Add(-entryCost(e))
			}
		},
		OnEvict: func(item *ristretto.Item[*Entry]) {
			m.evictions.Add(1)
			if m.gone != nil && item.Value != nil && !m.recent.has(item.Value.Key) {
				m.gone(item.Value.Key)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	m.items = c
	return m, nil
}

func entryCost(e *Entry) int64 {
	n := int64(len(e.Key)) + int64(len(e.Body)) + entryOverhead
	for _, t := range e.Tags {
		n += int64(len(t)) + 16
	}
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// lookup finds key's entry in ristretto or, failing that, in the recent
// FIFO (recent reports it: the caller decides whether to readmit it).
func (m *memoryTier) lookup(key string) (e *Entry, recent, ok bool) {
	if e, ok := m.items.Get(key); ok {
		return e, false, true
	}
	if e, ok := m.recent.get(key); ok {
		return e, true, true
	}
	return nil, false, false
}

// readmit offers an entry of the recent FIFO to ristretto: it earns a place
// by use, as TinyLFU intends. One pushed out of the FIFO meanwhile is gone
// from the key index and stays out.
func (m *memoryTier) readmit(e *Entry) {
	m.readmitMu.RLock()
	if m.recent.holds(e) {
		m.add(e, entryCost(e))
	}
	m.readmitMu.RUnlock()
}

// set stores e, replacing any entry of its key. It reports false when the
// entry is too large for this tier.
func (m *memoryTier) set(e *Entry) bool {
	cost := entryCost(e)
	if int64(len(e.Body)) > m.maxEntry {
		m.del(e.Key)
		return false
	}
	m.add(e, cost)
	m.items.Wait()
	// The eviction of an older value of the key may have been applied
	// after the caller indexed the key and before this write.
	defer m.tell(m.added, e.Key)
	if cur, ok := m.items.Get(e.Key); ok {
		if cur != e && !cur.StoredAt.After(e.StoredAt) {
			// Two buffered Sets of a new key: ristretto keeps the first
			// and rejects the second, which may be this newer one. The
			// key exists now, so this Set replaces the value in place.
			m.add(e, cost)
		}
		m.recent.remove(e.Key)
		return true
	}
	if out := m.recent.put(e, cost); len(out) > 0 {
		// A readmission of a key pushed out may be under way: once it has
		// been applied, ristretto says whether the key is still held.
		m.readmitMu.Lock()
		m.items.Wait()
		for _, key := range out {
			if _, ok := m.items.GetTTL(key); !ok {
				m.tell(m.gone, key)
			}
		}
		m.readmitMu.Unlock()
	}
	return true
}

func (m *memoryTier) tell(fn func(string), key string) {
	if fn != nil {
		fn(key)
	}
}

func (m *memoryTier) add(e *Entry, cost int64) {
	if m.items.Set(e.Key, e, cost) {
		m.entries.Add(1)
		m.bytes.Add(cost)
	}
}

func (m *memoryTier) del(key string) {
	m.items.Del(key)
	m.recent.remove(key)
}

// delIf removes e wherever it is still key's entry, in ristretto and in the
// recent FIFO (where a newer ristretto value may shadow it for now), and
// leaves a newer one.
func (m *memoryTier) delIf(key string, e *Entry) {
	if cur, ok := m.items.Get(key); ok && cur == e {
		m.items.Del(key)
	}
	m.recent.removeIf(key, e)
}

func (m *memoryTier) clear() {
	m.items.Clear()
	m.recent.clear()
}

func (m *memoryTier) close() { m.items.Close() }

// recentEntries is a FIFO of entries bounded in bytes.
type recentEntries struct {
	mu     sync.Mutex
	budget int64
	used   int64
	order  *list.List // of *recentEntry, oldest first
	byKey  map[string]*list.Element
}

type recentEntry struct {
	entry *Entry
	cost  int64
}

func (r *recentEntries) init(budget int64) {
	r.budget = budget
	r.order = list.New()
	r.byKey = make(map[string]*list.Element)
}

func (r *recentEntries) get(key string) (*Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.byKey[key]; ok {
		return el.Value.(*recentEntry).entry, true
	}
	return nil, false
}

func (r *recentEntries) has(key string) bool {
	_, ok := r.get(key)
	return ok
}

// holds reports whether e is key's entry in the FIFO.
func (r *recentEntries) holds(e *Entry) bool {
	cur, ok := r.get(e.Key)
	return ok && cur == e
}

// put adds e and returns the keys pushed out to make room.
func (r *recentEntries) put(e *Entry, cost int64) (pushedOut []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(e.Key)
	if cost > r.budget {
		return []string{e.Key}
	}
	for r.used+cost > r.budget {
		oldest := r.order.Front()
		re := oldest.Value.(*recentEntry)
		r.removeLocked(re.entry.Key)
		pushedOut = append(pushedOut, re.entry.Key)
	}
	r.byKey[e.Key] = r.order.PushBack(&recentEntry{entry: e, cost: cost})
	r.used += cost
	return pushedOut
}

func (r *recentEntries) removeIf(key string, e *Entry) {
	r.mu.Lock()
	if el, ok := r.byKey[key]; ok && el.Value.(*recentEntry).entry == e {
		r.removeLocked(key)
	}
	r.mu.Unlock()
}

func (r *recentEntries) remove(key string) {
	r.mu.Lock()
	r.removeLocked(key)
	r.mu.Unlock()
}

func (r *recentEntries) removeLocked(key string) {
	if el, ok := r.byKey[key]; ok {
		r.used -= el.Value.(*recentEntry).cost
		r.order.Remove(el)
		delete(r.byKey, key)
	}
}

// withPrefix returns the keys of the FIFO that start with prefix.
func (r *recentEntries) withPrefix(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.byKey {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys
}

func (r *recentEntries) clear() {
	r.mu.Lock()
	r.order.Init()
	clear(r.byKey)
	r.used = 0
	r.mu.Unlock()
}
