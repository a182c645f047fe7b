package cache

import (
	"net/http"
	"strings"
	"time"
)

// Several responses for one URL (RFC 9111 §4.1): a response with a
// honoured Vary is stored under a secondary key, the primary key plus
// the request's normalised values of the headers Vary names, and the
// primary key holds a small index entry that records those names (and
// no body). A look-up finds the index entry, derives the secondary key
// from the request, and looks that up: one variant never replaces another,
// and nothing is parsed on a hit but the request's own header values.

// variantSep separates the primary key from a variant's values; no key
// template produces it.
const variantSep = "\x00"

// VariantKey is the key a variant is stored under.
func VariantKey(key, variant string) string { return key + variantSep + variant }

// SplitVariantKey is VariantKey's inverse: ok is false for a key that is
// not a variant's.
func SplitVariantKey(k string) (key, variant string, ok bool) {
	return strings.Cut(k, variantSep)
}

// Lookup returns the stored response for key that matches a request with
// header req: through the key's index of variants when it has one; an
// entry stored by the earlier one-variant scheme (Meta.Variant under the
// primary key) matches only a request of its variant.
func (z *Zone) Lookup(key string, req http.Header) (*Entry, bool) {
	e, tier := z.LookupTier(key, req)
	return e, tier != TierNone
}

// LookupTier is Lookup, saying which local tier held the entry (TierNone:
// a miss).
func (z *Zone) LookupTier(key string, req http.Header) (*Entry, Tier) {
	e, tier := z.get(key)
	if tier == TierNone {
		return nil, TierNone
	}
	if e.VaryIndex {
		return z.get(VariantKey(key, VariantOf(e.VaryNames, req)))
	}
	if e.Variant != "" && e.Variant != Variant(e.Header["Vary"], req) {
		return nil, TierNone
	}
	return e, tier
}

// varyIndexFor is the index entry recording names under key.
func varyIndexFor(key string, names []string, now time.Time) *Entry {
	return &Entry{
		Meta: Meta{
			Key: key, Status: http.StatusOK, StoredAt: now, ValidUntil: now,
			Header:    http.Header{"Vary": {strings.Join(names, ", ")}},
			VaryIndex: true, VaryNames: names,
		},
		Body: []byte{},
	}
}

// storeVaryIndex makes key's index of variants record names, unless it
// already does. Called under promoteMu's read lock.
func (z *Zone) storeVaryIndex(key string, names []string, now time.Time) {
	if cur, _, ok := z.mem.lookup(key); ok && cur.VaryIndex && equalNames(cur.VaryNames, names) {
		return
	}
	idx := varyIndexFor(key, names, now)
	if z.disk != nil {
		if w, err := z.disk.Create(idx.Meta); err == nil {
			if _, err := w.Commit(); err != nil {
				z.Stats.CountSkip(SkipDisk)
			}
		}
	}
	z.keys.add(key)
	z.mem.set(idx)
}

func equalNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hasVariants reports whether key's entry is a Vary index: the record of
// the Vary names under which its variants are stored.
func (z *Zone) hasVariants(key string) bool {
	if e, _, ok := z.mem.lookup(key); ok {
		return e.VaryIndex
	}
	if e := z.diskGet(key); e != nil {
		return e.VaryIndex
	}
	return false
}

// dropVariants removes the variants stored under key. The key index holds
// the memory tier's keys; the disk tier's are only in its entry files, so
// the disk is walked, and only when key had variants (indexed): a zone
// that ignores Vary never pays for it.
func (z *Zone) dropVariants(key string, indexed bool) {
	prefix := key + variantSep
	for _, k := range z.keys.withPrefix(prefix) {
		z.mem.del(k)
		z.unindex(k)
	}
	if !indexed || z.disk == nil {
		return
	}
	z.disk.Walk(func(k string) bool {
		if strings.HasPrefix(k, prefix) {
			z.mem.del(k)
			_, _ = z.disk.Delete(k)
		}
		return true
	})
}

// primaryKey is the key a variant key belongs to (itself otherwise).
func primaryKey(key string) string {
	if i := strings.Index(key, variantSep); i >= 0 {
		return key[:i]
	}
	return key
}
