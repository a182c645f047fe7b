package cache

import (
	"slices"
)

// PurgeTag removes every entry that carries tag and returns how many
// there were. It touches only those entries: the tag index (cache/tagindex)
// names them. Like Invalidate, it refuses the stores of those keys begun
// before it, and no other.
func (z *Zone) PurgeTag(tag string) (int, error) { return z.PurgeTags([]string{tag}) }

// PurgeTags is PurgeTag for several tags: an entry that carries more than
// one of them is counted once.
func (z *Zone) PurgeTags(tags []string) (int, error) {
	return z.purgeTags(tags, z.evict, true)
}

// SoftPurgeTag marks every entry that carries tag expired (softpurge.go)
// and returns how many it marked.
func (z *Zone) SoftPurgeTag(tag string) (int, error) { return z.SoftPurgeTags([]string{tag}) }

// SoftPurgeTags is SoftPurgeTag for several tags, each entry marked and
// counted once.
func (z *Zone) SoftPurgeTags(tags []string) (int, error) {
	n, err := z.purgeTags(tags, z.expireKey, false)
	z.Stats.SoftPurged.Add(int64(n))
	return n, err
}

func (z *Zone) purgeTags(tags []string, act func(key string) bool, removes bool) (int, error) {
	if !z.IndexReady() {
		return 0, ErrIndexLoading
	}
	byTag := make([][]string, len(tags))
	var keys []string
	for i, tag := range tags {
		byTag[i] = z.tagged(tag, z.memTags.Lookup(tag))
		keys = append(keys, byTag[i]...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	n := 0
	for _, key := range keys {
		if act(key) {
			n++
		}
	}
	if removes {
		for i, tag := range tags {
			z.memTags.Drop(tag, byTag[i])
		}
	}
	return n, nil
}

// tagged returns the keys, among the memory references refs and the disk
// tier's of tag, whose entry carries tag now. A stale memory reference is
// dropped on the way.
func (z *Zone) tagged(tag string, refs []string) []string {
	var keys, stale []string
	for _, k := range refs {
		if z.carries(k, tag) {
			keys = append(keys, k)
		} else {
			stale = append(stale, k)
		}
	}
	z.memTags.Drop(tag, stale)
	for _, k := range z.diskTagged(tag) {
		if z.carries(k, tag) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// carries reports whether the entry the zone holds for key carries tag.
func (z *Zone) carries(key, tag string) bool {
	e, ok := z.current(key)
	if !ok {
		return false
	}
	_, found := slices.BinarySearch(e.Tags, tag)
	return found
}

// evict removes key from both tiers, refusing the stores of the key begun
// before (as Invalidate does), and reports whether the zone held it.
func (z *Zone) evict(key string) bool {
	z.promoteMu.Lock()
	z.invalidated.add(primaryKey(key))
	_, _, known := z.mem.lookup(key)
	z.mem.del(key)
	z.promoteMu.Unlock()
	z.unindex(key)
	if z.disk != nil {
		if existed, _ := z.disk.Delete(key); existed {
			known = true
		}
	}
	if known {
		z.Stats.Purged.Add(1)
	}
	return known
}

// Tagged returns the keys of the entries that carry tag, for listings.
func (z *Zone) Tagged(tag string) ([]string, error) {
	if !z.IndexReady() {
		return nil, ErrIndexLoading
	}
	return z.tagged(tag, z.memTags.Lookup(tag)), nil
}

// TagIndexBytes is what the tag index takes in memory (counted in the
// memory limit), and the tags and references it holds.
func (z *Zone) TagIndexBytes() (bytes int64, tags, refs int) {
	tags, refs = z.memTags.Size()
	bytes = z.memTags.Bytes()
	if z.disk != nil {
		bytes += z.disk.TagIndexBytes()
	}
	return bytes, tags, refs
}

// diskTagged returns the keys of the disk tier's entries that carry tag.
func (z *Zone) diskTagged(tag string) []string {
	if z.disk == nil {
		return nil
	}
	return z.disk.Tagged(tag)
}
