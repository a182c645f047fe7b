package cache

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"
)

// missTop finds the keys that missed most over the last five minutes in
// bounded memory: one space-saving summary (Metwally et al., 2005) per
// minute, of missCapacity keys each, summed at read time. A key that
// missed more than 1/missCapacity of a minute's misses is always in that
// minute's summary; a count may be over by the count of the key it
// displaced (KeyCount.Over).
type missTop struct {
	mu      sync.Mutex
	minutes [missMinutes]missSummary // ring by minute
}

const (
	missMinutes  = 5
	missCapacity = 100
)

// KeyCount is a key and how often it missed.
type KeyCount struct {
	Key   string
	Count int64
	// Over is how much Count may be over the true count (the space-saving
	// bound): 0 when the key was counted from its first miss.
	Over int64
}

type missSummary struct {
	minute int64 // Unix minute it counts
	items  []KeyCount
	index  map[string]int // key -> position in items
}

func (t *missTop) add(key string, now time.Time) {
	minute := now.Unix() / 60
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.minutes[minute%missMinutes]
	if s.minute != minute || s.index == nil {
		s.minute, s.items = minute, s.items[:0]
		if s.index == nil {
			s.index = make(map[string]int, missCapacity)
		} else {
			clear(s.index)
		}
	}
	if i, ok := s.index[key]; ok {
		s.items[i].Count++
		return
	}
	if len(s.items) < missCapacity {
		// A copy: the key may be a slice of a larger request string.
		key = strings.Clone(key)
		s.index[key] = len(s.items)
		s.items = append(s.items, KeyCount{Key: key, Count: 1})
		return
	}
	// Full: the new key takes the place of the least counted one, with its
	// count plus one (it may have missed that often, unseen).
	low := 0
	for i := range s.items {
		if s.items[i].Count < s.items[low].Count {
			low = i
		}
	}
	delete(s.index, s.items[low].Key)
	key = strings.Clone(key)
	s.index[key] = low
	s.items[low] = KeyCount{Key: key, Count: s.items[low].Count + 1, Over: s.items[low].Count}
}

func (t *missTop) top(now time.Time, n int) []KeyCount {
	minute := now.Unix() / 60
	sum := make(map[string]KeyCount)
	t.mu.Lock()
	for i := range t.minutes {
		s := &t.minutes[i]
		if s.minute <= minute-missMinutes || s.minute > minute {
			continue
		}
		for _, kc := range s.items {
			k := sum[kc.Key]
			k.Key, k.Count, k.Over = kc.Key, k.Count+kc.Count, k.Over+kc.Over
			sum[kc.Key] = k
		}
	}
	t.mu.Unlock()
	out := make([]KeyCount, 0, len(sum))
	for _, kc := range sum {
		out = append(out, kc)
	}
	slices.SortFunc(out, func(a, b KeyCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out[:min(n, len(out))]
}
