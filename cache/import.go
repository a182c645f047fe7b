package cache

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// ErrNewerInZone is returned by Import when the zone already holds an entry
// for the key stored at or after the imported one: a resumed import, or a
// response the proxy fetched since.
var ErrNewerInZone = errors.New("cache: the zone holds an entry as new or newer")

// Import stores an entry brought from another cache (nginx's) with its own
// StoredAt and ValidUntil, unless the zone holds one as new or newer
// (ErrNewerInZone). It goes to the disk tier only, so that an import does
// not push the hot entries out of memory; a memory-only zone keeps it in
// memory. m.BodySize must be the body's length: a body that is cut short
// stores nothing.
func (z *Zone) Import(m Meta, body io.Reader) error {
	if m.Key == "" || m.BodySize < 0 {
		return errors.New("cache: import needs a key and a body size")
	}
	if cur, ok := z.current(m.Key); ok && !cur.StoredAt.Before(m.StoredAt) {
		return ErrNewerInZone
	}
	h := make(http.Header, len(m.Header)+1)
	for k, v := range m.Header {
		h[k] = v[:len(v):len(v)]
	}
	h["Content-Length"] = []string{strconv.FormatInt(m.BodySize, 10)}
	m.Header = h
	gen := z.purgeGen.Load()

	if z.disk == nil {
		if m.BodySize > z.mem.maxEntry {
			return fmt.Errorf("cache: body of %d bytes is over the zone's memory_entry_max", m.BodySize)
		}
		b := make([]byte, m.BodySize)
		if _, err := io.ReadFull(body, b); err != nil {
			return fmt.Errorf("cache: reading the body: %w", err)
		}
		z.promoteMu.RLock()
		defer z.promoteMu.RUnlock()
		if z.purgedSince(gen) {
			return errors.New("cache: a purge ran during the import of this entry")
		}
		e := &Entry{Meta: m, Body: b}
		z.index(e)
		z.mem.set(e)
		return nil
	}

	w, err := z.disk.Create(m)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Abort()
		return fmt.Errorf("cache: copying the body: %w", err)
	}
	z.promoteMu.RLock()
	defer z.promoteMu.RUnlock()
	if z.purgedSince(gen) {
		w.Abort()
		return errors.New("cache: a purge ran during the import of this entry")
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	// An older version in memory must not outlive the imported one.
	z.mem.del(m.Key)
	z.keys.add(m.Key)
	return nil
}

// current returns the zone's entry for key without promoting it.
func (z *Zone) current(key string) (*Entry, bool) {
	if e, _, ok := z.mem.lookup(key); ok {
		return e, true
	}
	if de := z.diskGet(key); de != nil {
		return fromDisk(de), true
	}
	return nil, false
}

// DiskMaxSize is the disk tier's max_size (0: none, or no disk tier): with
// Tiers, what an import may still add.
func (z *Zone) DiskMaxSize() int64 {
	return z.diskMax
}
