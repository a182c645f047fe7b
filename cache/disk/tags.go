package disk

import (
	"bytes"
	"crypto/md5"
	"os"
	"slices"
)

// The tag index of the disk tier: tag → the MD5s of the entry files that
// carry it (16 bytes a reference; no key held in memory, as the index).
// Entries are added when written and when the loader reads them at
// start, so that the tags survive a restart; a reference whose file went
// or was replaced without the tag is dropped when a purge meets it, or by
// the sweep once enough entries left (cache/tagindex).

func compareHash(a, b [md5.Size]byte) int { return bytes.Compare(a[:], b[:]) }

// indexed reports whether the index holds h (the tag index's liveness).
func (d *Store) indexed(h [md5.Size]byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.get(h) != nil
}

// Tagged returns the keys of the entries that carry tag, read from their
// files. Wait for Loaded first to see them all.
func (d *Store) Tagged(tag string) []string {
	var keys []string
	var stale [][md5.Size]byte
	for _, h := range d.tags.Lookup(tag) {
		key, tags, ok := d.keyAndTags(h)
		if ok && slices.Contains(tags, tag) {
			keys = append(keys, key)
		} else {
			stale = append(stale, h)
		}
	}
	d.tags.Drop(tag, stale)
	return keys
}

// keyAndTags reads the key and tags of the entry file of h.
func (d *Store) keyAndTags(h [md5.Size]byte) (string, []string, bool) {
	f, err := os.Open(d.path(h))
	if err != nil {
		return "", nil, false
	}
	defer f.Close()
	fh, _, err := readHeader(f)
	if err != nil || KeyHash(fh.Key) != h {
		return "", nil, false
	}
	return fh.Key, fh.Tags, true
}

// TagIndexBytes is what the tag index takes in memory.
func (d *Store) TagIndexBytes() int64 { return d.tags.Bytes() }
