package cache

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Meta describes a stored response: everything but its body. It is what the
// disk tier writes in an entry file's header.
type Meta struct {
	Key    string
	Status int
	// Header holds the stored response headers. Values are clipped
	// (len == cap) so that an Add on a copy of the map can never write into
	// the shared backing array: hits assign these slices without copying.
	Header http.Header
	// StoredAt is when the response was received (RFC 9111's
	// response_time); InitialAge is how old it was then (§4.2.3's
	// corrected_initial_age), so its current age is InitialAge plus the
	// time since StoredAt.
	StoredAt   time.Time
	InitialAge time.Duration
	// Date is the origin's Date header, kept apart from Header (it is the
	// message's, not the resource's) and sent as is on every hit; the time
	// received when the origin sent none.
	Date       string
	ValidUntil time.Time // fresh until this instant; stale (but usable) after
	// NoCache: the backend said no-cache, so the entry is revalidated
	// with the backend before every use (RFC 9111 §5.2.2.4).
	NoCache bool
	// StaleWhileRevalidate and StaleIfError come from the backend's
	// Cache-Control when it is honoured; they extend how long a stale entry
	// may be served while updating or while the backend fails.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	BodySize             int64
	// Variant holds the request's values of the headers the response's Vary
	// names, when Vary is honoured (see Variant); empty otherwise.
	Variant string
	// VaryNames, given to BeginStore with Variant, stores the response as
	// one variant among several (see Lookup): under VariantKey(Key,
	// Variant), with an index entry under Key that records the names.
	// On an index entry, the names it records.
	VaryNames []string
	// VaryIndex marks a primary key's index of variants: no response, a
	// Vary header of the names, no body.
	VaryIndex bool
	// Tags name the objects the response is about (tags.go), sorted.
	Tags []string
	// SoftPurged: expired by a soft purge rather than by age, so that a
	// zone serving stale while updating refreshes it in the background
	// (the flow's expired step).
	SoftPurged bool
}

// Entry is a stored response. Its body is either in memory (Body) or in a
// file of the disk tier (File, from BodyOffset on, BodySize bytes).
// Entries are immutable once stored: an overwrite stores a new Entry.
type Entry struct {
	Meta
	Body       []byte
	File       string
	BodyOffset int64
	disk       *DiskStore                // the store File belongs to
	age        atomic.Pointer[ageString] // the last Age value served; see AgeValue
}

// Fresh reports whether the entry may be served without contacting the backend.
func (e *Entry) Fresh(now time.Time) bool { return now.Before(e.ValidUntil) }

// InMemory reports whether the body is held in memory.
func (e *Entry) InMemory() bool { return e.File == "" }

// OpenBody returns a reader over the body. For a disk entry it opens the file;
// on Linux an open file stays readable after a concurrent overwrite (rename)
// or purge (unlink), so a reader gets the old or the new body, never a mix.
func (e *Entry) OpenBody() (io.ReadSeekCloser, error) {
	if e.File == "" {
		return nopCloser{bytes.NewReader(e.Body)}, nil
	}
	if e.disk != nil {
		// Checks the file is still the version e was read from, and the
		// body's checksum as it streams.
		return e.disk.OpenBody(e)
	}
	f, err := os.Open(e.File)
	if err != nil {
		return nil, err
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, e.BodyOffset, e.BodySize), f: f}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }
