package cache

import (
	"github.com/edgecache/edgecache/cache/disk"
	"io"
	"net/http"
	"strconv"
	"time"
)

// EntryWriter is a response being written into the zone as it streams to the
// client: into a memory buffer while it fits the hot tier, and into a disk
// file when the zone has one. Nothing is visible until Commit; Abort, or a
// body that is cut short, leaves the zone as it was.
type EntryWriter struct {
	zone     *Zone
	meta     Meta
	body     []byte
	file     *disk.Writer
	n        int64
	inMemory bool   // still buffering for the hot tier
	at       Mark   // when the request began: a purge, or an invalidation of the key, since voids the entry
	primary  string // for a variant (meta.VaryNames set): the key its index goes under
	stream   *Stream
}

// NewEntryWriter starts writing a response into the zone. meta.BodySize is
// the announced length, or -1 when the backend did not announce one. at is
// the zone's Mark from when the request began (before its look-up), not
// from when the answer came: a purge or an invalidation of the key in
// between voids the entry, as the backend may have computed the answer
// before it.
func (z *Zone) NewEntryWriter(meta Meta, at Mark) *EntryWriter {
	ew := &EntryWriter{zone: z, meta: meta, inMemory: meta.BodySize <= z.mem.maxEntry, at: at}
	if len(meta.VaryNames) > 0 {
		ew.primary = meta.Key
		ew.meta.Key = VariantKey(meta.Key, meta.Variant)
	}
	if ew.inMemory && meta.BodySize >= 0 {
		ew.body = make([]byte, 0, meta.BodySize)
	}
	if z.disk != nil {
		w, err := z.disk.Create(ew.meta)
		if err == nil {
			ew.file = w
		} else {
			z.Stats.CountSkip(SkipDisk)
		}
	}
	return ew
}

// Write adds body bytes. It never fails: a writer that cannot continue
// just stops storing, and the response goes on streaming to the client.
// With a Stream, the bytes are readable from it on return, unless the
// entry stopped storing them (the stream is then cut before p).
func (ew *EntryWriter) Write(p []byte) {
	ew.n += int64(len(p))
	if ew.file != nil {
		_, err := ew.file.Write(p)
		if err == nil && ew.stream != nil {
			// Readers read the file: nothing may wait in its buffer.
			err = ew.file.Flush()
		}
		if err != nil {
			ew.file.Abort()
			ew.file = nil
			ew.zone.Stats.CountSkip(SkipDisk)
			if ew.stream != nil {
				ew.stream.end(streamCut)
			}
		}
	}
	if ew.inMemory {
		if ew.n > ew.zone.mem.maxEntry {
			ew.inMemory, ew.body = false, nil
			if ew.stream != nil && ew.stream.file == nil {
				ew.stream.end(streamCut)
			}
		} else {
			ew.body = append(ew.body, p...)
		}
	}
	if ew.stream != nil {
		ew.stream.grow(ew.n, ew.body)
	}
}

// Abandoned reports whether the writer has given up, so the caller can stop
// feeding it.
func (ew *EntryWriter) Abandoned() bool { return !ew.inMemory && ew.file == nil }

// Commit makes the entry visible, replacing any entry of its key at once:
// concurrent readers get the old or the new entry, never a mix. It refuses
// (false) a body shorter or longer than announced.
func (ew *EntryWriter) Commit() (*Entry, bool) {
	complete := ew.meta.BodySize < 0 || ew.n == ew.meta.BodySize
	if s := ew.stream; s != nil {
		// The body is whole, stored or not (a purge since voids the entry,
		// not the bytes, which are the backend's): its readers finish.
		ew.stream = nil
		if complete {
			s.end(streamComplete)
		} else {
			s.end(streamFailed)
		}
		defer s.release()
	}
	if ew.Abandoned() || !complete {
		if ew.Abandoned() {
			ew.zone.Stats.CountSkip(SkipTooLarge)
		}
		ew.Abort()
		return nil, false
	}
	ew.meta.BodySize = ew.n
	h := ew.meta.Header
	if h == nil {
		h = make(http.Header, 1)
		ew.meta.Header = h
	}
	h["Content-Length"] = []string{strconv.FormatInt(ew.n, 10)}
	for k, v := range h {
		h[k] = v[:len(v):len(v)]
	}
	z := ew.zone
	// A response fetched while a purge ran may be what the purge removed:
	// it is not stored (nginx would store it; a purge here is final).
	z.promoteMu.RLock()
	defer z.promoteMu.RUnlock()
	if z.voided(ew.at, ew.meta.Key) {
		z.Stats.CountSkip(SkipPurged)
		ew.Abort()
		return nil, false
	}
	var onDisk *disk.Entry
	if ew.file != nil {
		e, err := ew.file.Commit()
		ew.file = nil
		if err == nil {
			onDisk = e
		} else {
			z.Stats.CountSkip(SkipDisk)
		}
	}
	var e *Entry
	switch {
	case ew.inMemory:
		body := ew.body
		if cap(body)-len(body) > len(body)/8 {
			// A body of unknown length grew by doubling: keep only what
			// it holds, so the tier's accounting is what memory holds.
			body = append(make([]byte, 0, len(body)), body...)
		}
		e = &Entry{Meta: ew.meta, Body: body}
		if e.Body == nil {
			e.Body = []byte{}
		}
		// The key index holds the memory tier's keys (the disk's are in
		// the entry files).
		z.index(e)
		z.mem.set(e)
	case onDisk != nil:
		// Too large for memory: the old version there must not outlive it.
		z.mem.del(ew.meta.Key)
		z.unindex(ew.meta.Key)
		e = &Entry{Meta: onDisk.Meta, file: onDisk.File}
	default:
		ew.Abort()
		return nil, false
	}
	if ew.primary != "" {
		z.storeVaryIndex(ew.primary, ew.meta.VaryNames, ew.meta.StoredAt)
	}
	z.Stats.Stored.Add(1)
	return e, true
}

// Abort discards what was written; the stream's readers fail.
func (ew *EntryWriter) Abort() {
	if s := ew.stream; s != nil {
		ew.stream = nil
		s.end(streamFailed)
		s.release()
	}
	if ew.file != nil {
		ew.file.Abort()
		ew.file = nil
	}
	ew.inMemory, ew.body = false, nil
}

// Revalidation is a backend's confirmation (304) that a stale entry still
// holds, with the headers it sent and the validity they give.
type Revalidation struct {
	Header   http.Header // the 304's headers that replace stored ones
	Decision Decision
	At       time.Time
	// Mark is the zone's Mark from before the stale entry was read: a
	// purge, or an invalidation of the key, since then wins over the
	// revalidation (the entry is served to this client, not stored).
	Mark Mark
	// Date is the 304's Date, which replaces the stored one.
	Date string
}

// Revalidate stores a copy of old with the new validity and headers, sharing
// its body, and returns it.
func (z *Zone) Revalidate(old *Entry, rv Revalidation) *Entry {
	e := &Entry{Meta: old.Meta, Body: old.Body, file: old.file}
	e.Header = old.Header.Clone()
	for k, v := range rv.Header {
		e.Header[k] = v[:len(v):len(v)]
	}
	e.StoredAt = rv.At
	e.InitialAge = rv.Decision.InitialAge
	if rv.Date != "" {
		e.Date = rv.Date
	}
	e.NoCache = rv.Decision.NoCache
	e.ValidUntil = rv.Decision.ValidUntil
	e.StaleWhileRevalidate = rv.Decision.StaleWhileRevalidate
	e.StaleIfError = rv.Decision.StaleIfError
	e.SoftPurged = false
	z.promoteMu.RLock()
	defer z.promoteMu.RUnlock()
	if z.voided(rv.Mark, e.Key) {
		return e // served to this client, not stored
	}
	if z.disk != nil {
		z.rewriteOnDisk(old, e)
	}
	if e.InMemory() {
		z.index(e)
		z.mem.set(e)
	}
	return e
}

// rewriteOnDisk writes a revalidated entry's new header with its body.
func (z *Zone) rewriteOnDisk(old, e *Entry) {
	body, err := old.OpenBody()
	if err != nil {
		return
	}
	defer body.Close()
	w, err := z.disk.Create(e.Meta)
	if err != nil {
		return
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Abort()
		return
	}
	if onDisk, err := w.Commit(); err == nil && !e.InMemory() {
		e.Meta, e.file = onDisk.Meta, onDisk.File
	}
}
