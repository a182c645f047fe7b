package cache

import (
	"slices"
	"strings"
	"time"
)

// A soft purge keeps an entry but marks it expired now (and SoftPurged),
// as Fastly's soft purge does: the next request refreshes it the way an
// expired entry is refreshed (use_stale updating: served stale while one
// background request updates it; use_stale error: served if the refetch
// fails), so that a purge never turns a hit into a miss. Like
// Invalidate, it refuses the stores of its keys begun before it (they
// may carry the state before the change) without disturbing other keys'.

// SoftPurge marks key's entry expired (every variant of it, when it has
// several) and reports how many entries it marked.
func (z *Zone) SoftPurge(key string) int {
	n := 0
	if z.hasVariants(key) {
		for _, k := range z.variantKeys(key) {
			if z.expireKey(k) {
				n++
			}
		}
	} else if z.expireKey(key) {
		n++
	}
	z.Stats.SoftPurged.Add(int64(n))
	return n
}

// SoftPurgePrefix marks every entry whose key starts with prefix expired
// and returns how many it marked.
func (z *Zone) SoftPurgePrefix(prefix string) (int, error) {
	if !z.IndexReady() {
		return 0, ErrIndexLoading
	}
	n := 0
	for _, k := range z.keysWithPrefix(prefix) {
		if z.expireKey(k) {
			n++
		}
	}
	z.Stats.SoftPurged.Add(int64(n))
	return n, nil
}

// SoftPurgeAll marks every entry of the zone expired and returns how many
// it marked.
func (z *Zone) SoftPurgeAll() (int, error) {
	return z.SoftPurgePrefix("")
}

// keysWithPrefix returns the zone's keys that start with prefix, from
// both tiers, each once (vary indexes included: expiring one is harmless).
func (z *Zone) keysWithPrefix(prefix string) []string {
	keys := z.keys.withPrefix(prefix)
	keys = append(keys, z.mem.recent.withPrefix(prefix)...)
	if z.disk != nil {
		z.disk.Walk(func(k string) bool {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
			return true
		})
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// variantKeys returns the keys of the variants stored under key.
func (z *Zone) variantKeys(key string) []string {
	var keys []string
	for _, k := range z.keysWithPrefix(key + variantSep) {
		if k != key {
			keys = append(keys, k)
		}
	}
	return keys
}

// expireKey marks key's entry expired in both tiers and reports whether
// the zone held it. An entry expired already is counted, and marked only
// if it was not soft-purged before.
func (z *Zone) expireKey(key string) bool {
	now := z.clock.Now()
	// Promotions and stores of the key begun before are refused from
	// here on: one that read the disk file before its rewrite would bring
	// the fresh version back.
	z.promoteMu.Lock()
	z.invalidated.add(primaryKey(key))
	z.promoteMu.Unlock()
	known := false
	if de := z.diskGet(key); de != nil {
		known = true
		if e := fromDisk(de); mayExpire(e, now) {
			z.rewriteOnDisk(e, expiredCopy(e, now))
		}
	}
	z.promoteMu.Lock()
	defer z.promoteMu.Unlock()
	// And once more: a promotion may have read the old file meanwhile.
	z.invalidated.add(primaryKey(key))
	if e, _, ok := z.mem.lookup(key); ok {
		known = true
		if mayExpire(e, now) {
			expired := expiredCopy(e, now)
			z.index(expired)
			z.mem.set(expired)
		}
	}
	return known
}

// mayExpire reports whether a soft purge changes e: it is fresh, or
// expired by age only.
func mayExpire(e *Entry, now time.Time) bool {
	return !e.VaryIndex && (e.Fresh(now) || !e.SoftPurged)
}

// expiredCopy is e expired at now, sharing its body.
func expiredCopy(e *Entry, now time.Time) *Entry {
	c := &Entry{Meta: e.Meta, Body: e.Body, file: e.file}
	if c.ValidUntil.After(now) {
		c.ValidUntil = now
	}
	c.SoftPurged = true
	return c
}
