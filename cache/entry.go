package cache

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"

	"github.com/edgecache/edgecache/cache/disk"
)

// Meta describes a stored response: everything but its body. It is the
// disk tier's (an entry file's header holds it); the zone's entries carry
// it too.
type Meta = disk.Meta

// Entry is a stored response. Its body is either in memory (Body) or in a
// file of the disk tier (file). Entries are immutable once stored: an
// overwrite stores a new Entry.
type Entry struct {
	Meta
	Body []byte
	// file is where a disk entry's body is, and which version of the file
	// it was read from: a revalidated copy of the entry, with new times,
	// reads the same body.
	file disk.File
	age  atomic.Pointer[ageString] // the last Age value served; see AgeValue
}

// Fresh reports whether the entry may be served without contacting the backend.
func (e *Entry) Fresh(now time.Time) bool { return now.Before(e.ValidUntil) }

// InMemory reports whether the body is held in memory.
func (e *Entry) InMemory() bool { return e.file.IsZero() }

// OpenBody returns a reader over the body. A disk entry's is its file's,
// checked to be the version the entry was read from and verified block by
// block as it streams (see disk.File.Open).
func (e *Entry) OpenBody() (io.ReadSeekCloser, error) {
	if e.InMemory() {
		return nopCloser{bytes.NewReader(e.Body)}, nil
	}
	r, err := e.file.Open()
	if err != nil {
		return nil, err // not a nil *BodyReader in a non-nil interface
	}
	return r, nil
}

// OpenRange opens a disk entry's body for a response that sends the bytes
// [start, end) of it (see disk.File.OpenRange).
func (e *Entry) OpenRange(start, end int64) (*disk.BodyReader, error) {
	return e.file.OpenRange(start, end)
}

// fromDisk is the zone's entry for one the disk tier read: while the store
// keeps its file open, the one made for the file's first hit (entries are
// immutable, and every hit of a memory entry shares it too), which also
// keeps its Age string from one hit to the next.
func fromDisk(de *disk.Entry) *Entry {
	memo := de.Memo()
	if memo == nil {
		return newFromDisk(de)
	}
	if e, ok := memo.Load().(*Entry); ok {
		return e
	}
	e := newFromDisk(de)
	memo.Store(e)
	return e
}

// newFromDisk makes the zone's entry for one the disk tier read, its own.
// An index of variants records their names in its Vary header.
func newFromDisk(de *disk.Entry) *Entry {
	e := &Entry{Meta: de.Meta, file: de.File}
	if e.VaryIndex {
		e.VaryNames = VaryNames(e.Header["Vary"])
	}
	return e
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
