package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/maintenance"
)

// errEntryGone reports a disk entry whose file was replaced (by a refresh),
// purged or evicted between its look-up and the opening of its body.
// Nothing has been written to the response then.
var errEntryGone = errors.New("cache entry vanished before it could be served")

// serveEntry answers from a stored entry. The common case (no range, no
// conditional) copies the stored header values in one allocation and writes
// the body in one call: the body is never copied per hit. A disk body is
// verified block by block as it is sent (disk.BodyReader). A caller that can
// fall back to the backend uses serveEntryWith and handles errEntryGone;
// here it becomes a 503 for this rare race, or, during maintenance, the
// maintenance page that a miss gets.
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	err := h.serveEntryWith(w, r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), zone, e, status)
	if errors.Is(err, errEntryGone) {
		if gate := maintenance.GateFrom(r.Context()); gate != nil {
			return gate.ServePage(w, r)
		}
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	return err
}

// serveEntryWith is serveEntry for a caller that holds the replacer.
func (h *Handler) serveEntryWith(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	size := e.BodySize
	if e.InMemory() {
		size = int64(len(e.Body))
	}
	window, answer, send := entryWindow(r, e, size)
	// A disk body is opened, and the first block it sends verified, before
	// anything is written: a file replaced, removed or damaged since the
	// look-up is then a clean error (a miss for the caller), not a cut
	// response.
	var body *disk.BodyReader
	if !e.InMemory() {
		var err error
		start, end := window.Start, window.End
		if !send {
			start, end = 0, 0
		}
		if body, err = e.OpenRange(start, end); err != nil {
			return fmt.Errorf("%w: %s: %v", errEntryGone, e.Key, err)
		}
		defer body.Close()
	}
	if !h.writeEntryHeader(w, r, repl, zone, e, status, window, answer, size) || !send {
		return nil
	}
	if body == nil {
		part := e.Body[window.Start:window.End]
		holdFirstWrite(r, len(part))
		n, _ := writeMemoryBody(w, r, part)
		zone.Stats.BytesServed.Add(int64(n))
		return nil
	}
	n, err := sendBody(w, r, body)
	zone.Stats.BytesServed.Add(n)
	if err != nil {
		// Headers are out (a damaged block past the first, or the client
		// gone): all that is left is to cut the response short.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// smallSend is the largest trusted disk body read into memory and sent
// with the headers in one write: below it, a read and a writev cost less
// than sendfile after a write of the headers.
const smallSend = 64 << 10

// sendBody sends a disk body. A trusted one (its blocks all verified by an
// earlier hit, see disk.Options.VerifyAlways) goes out with the headers in
// one write when small, else through the connection's ReadFrom, where the
// edge_cache listener wrapper sends it with sendfile. Others are verified
// block by block as they are sent, the headers going out with the first.
func sendBody(w http.ResponseWriter, r *http.Request, body *disk.BodyReader) (int64, error) {
	size := body.Remaining()
	if !body.Trusted() {
		holdFirstWrite(r, int(min(size, 1<<30)))
		return io.Copy(w, body)
	}
	if size <= smallSend {
		buf := sendBuffers.Get().(*[]byte)
		defer sendBuffers.Put(buf)
		p := (*buf)[:size]
		if _, err := io.ReadFull(body, p); err != nil {
			return 0, err
		}
		holdFirstWrite(r, len(p))
		n, err := w.Write(p)
		return int64(n), err
	}
	if _, wrapped := r.Context().Value(coalescingConnKey{}).(*coalescingConn); wrapped && r.TLS == nil && r.ProtoMajor == 1 {
		if rf, ok := w.(io.ReaderFrom); ok {
			if done := sendWhole(r, size); done != nil {
				defer done()
			}
			return rf.ReadFrom(body)
		}
	}
	// No sendfile on this connection: a copy through a pooled buffer.
	return body.WriteTo(w)
}

var sendBuffers = sync.Pool{New: func() any { b := make([]byte, smallSend); return &b }}

// entryWindow applies r's Range to an entry's body of size bytes, by the
// same rules as a miss (cache/ranges.go): the part to send, the answer,
// and whether a body is sent at all.
func entryWindow(r *http.Request, e *cache.Entry, size int64) (cache.ByteRange, cache.RangeAnswer, bool) {
	window, answer := cache.ByteRange{End: size}, cache.RangeWhole
	if _, ok := r.Header["Range"]; ok {
		if window, answer = cache.EvaluateRange(r.Method, r.Header, e.Status, e.Header, size, e.StoredAt); answer == cache.RangeWhole {
			window = cache.ByteRange{End: size}
		}
	}
	send := r.Method != http.MethodHead && answer != cache.RangeUnsatisfiable && window.End > window.Start
	return window, answer, send
}

// writeEntryHeader writes the header of an answer from e, counting it as
// served with status. It reports false when the request's preconditions
// made it a 304 or a 412, which have no body.
func (h *Handler) writeEntryHeader(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, zone *cache.Zone,
	e *cache.Entry, status cache.Status, window cache.ByteRange, answer cache.RangeAnswer, size int64) bool {
	zone.CountRequest(status, e.Key)
	now := zone.Clock().Now()
	copyEntryHeader(w.Header(), e, now)
	h.setStatus(w, repl, status)
	if h.CacheStatusHeader {
		h.addCacheStatus(w, entryCacheStatus(status, e, now, r))
	}
	if e.Status >= 200 && e.Status < 300 && hasConditional(r.Header) {
		// The cache evaluates conditionals itself (RFC 9110 §13.2.2): it
		// knows the stored Date, and unquoted ETags, which
		// http.ServeContent never matches. If-Range is the range
		// evaluator's (cache/ranges.go).
		switch precondition, _ := cache.Preconditions(r.Method, r.Header, e); precondition {
		case cache.NotModified:
			notModified(w.Header())
			w.WriteHeader(http.StatusNotModified)
			return false
		case cache.PreconditionFailed:
			w.WriteHeader(http.StatusPreconditionFailed)
			return false
		}
	}
	w.WriteHeader(cache.SetRangeHeader(w.Header(), window, answer, size, e.Status))
	return true
}

// errNotStreamed: the entry a fill is writing cannot answer this request
// as it is written (another variant, a Range or a HEAD of a body whose
// length is not known yet, or the fill failed or finished first). Nothing was written:
// the caller waits for the fill's end instead.
var errNotStreamed = errors.New("the entry being written cannot answer this request yet")

// serveStream answers from the entry a fill is writing, as its bytes come,
// as serveEntry answers from a stored one. A fill that fails mid-body cuts
// the response short (a broken connection, never a short body that looks
// complete).
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, zone *cache.Zone, s *cache.Stream, status cache.Status) error {
	e := s.Entry()
	if !s.Matches(r.Header) {
		return errNotStreamed
	}
	size := e.BodySize
	window, answer, send := cache.ByteRange{End: size}, cache.RangeWhole, r.Method != http.MethodHead
	if size >= 0 {
		window, answer, send = entryWindow(r, e, size)
	} else if _, ok := r.Header["Range"]; ok || !send {
		// A Range's answer depends on the length, and a HEAD's header
		// carries it, as a hit's does.
		return errNotStreamed
	}
	body, ok := s.Open(r.Context(), window.Start)
	if !ok {
		return errNotStreamed
	}
	defer body.Close()
	if s.Failed() {
		return errNotStreamed
	}
	if !h.writeEntryHeader(w, r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), zone, e, status, window, answer, size) || !send {
		return nil
	}
	n, err := copyStream(w, body, window.End)
	zone.Stats.BytesServed.Add(n)
	if err != io.EOF {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// copyStream sends w the body being written from body's offset up to end
// (-1: its end), flushing whenever it has caught up with the backend, as a
// relayed body would be. err is io.EOF once all was sent; else the
// client's or the stream's error (cache.ErrStreamFailed, ErrStreamCut).
func copyStream(w http.ResponseWriter, body *cache.StreamReader, end int64) (written int64, err error) {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	rc := http.NewResponseController(w)
	for end < 0 || body.Offset() < end {
		if !body.Ready() {
			_ = rc.Flush()
		}
		p := *buf
		if end >= 0 {
			p = p[:min(int64(len(p)), end-body.Offset())]
		}
		n, err := body.Read(p)
		if n > 0 {
			n, werr := w.Write(p[:n])
			written += int64(n)
			if werr != nil {
				return written, werr
			}
		}
		if err != nil {
			return written, err
		}
	}
	return written, io.EOF
}

// copyBuffers hold a body on its way from a stream to a client.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// holdFirstWrite asks the connection, when the edge_cache listener wrapper
// made it, to send this response's headers and body in one writev.
// Responses that fit net/http's 4 KiB buffer take one write anyway; a disk
// body goes out through the connection's ReadFrom, which sends the headers
// first.
func holdFirstWrite(r *http.Request, bodySize int) {
	if bodySize < heldWriteSize/2 || r.TLS != nil || r.ProtoMajor != 1 {
		return
	}
	if c, ok := r.Context().Value(coalescingConnKey{}).(*coalescingConn); ok {
		c.holdNextWrite(bodySize)
	}
}

// writeMemoryBody writes a memory hit's body. One of more than one of Caddy's
// write chunks goes out whole on a connection the edge_cache listener
// wrapper made (see wholeWrite): Caddy's idle-timeout writer hands it in one
// piece and the connection keeps write_idle per chunk itself. Elsewhere,
// or with a minimum write rate (counted by Caddy's writer), it is a plain
// Write.
func writeMemoryBody(w http.ResponseWriter, r *http.Request, p []byte) (int, error) {
	if done := sendWhole(r, int64(len(p))); done != nil {
		defer done()
	}
	return w.Write(p)
}

// sendWhole readies r's connection, when the edge_cache listener wrapper
// made it, to send a body of size bytes whole rather than in Caddy's write
// chunks (see wholeWrite), and returns the function that ends it; nil
// when it does not apply: a body of one chunk, TLS, HTTP/2, a minimum
// write rate (Caddy's writer counts it), no wrapper, or not on Linux.
func sendWhole(r *http.Request, size int64) (done func()) {
	if r.TLS != nil || r.ProtoMajor != 1 {
		return nil
	}
	_, iw := caddyhttp.IdleTimeoutsFromContext(r.Context())
	if iw == nil || iw.Deadline.MinRate > 0 || iw.ClearBetweenWrites {
		return nil
	}
	chunk := cmp.Or(iw.MaxChunk, caddyhttp.DefaultMaxWriteChunk)
	if size <= int64(chunk) {
		return nil
	}
	c, ok := r.Context().Value(coalescingConnKey{}).(*coalescingConn)
	if !ok || !c.writeWholes(iw.Deadline.Timeout, chunk, iw.Deadline.HardDeadline) {
		return nil
	}
	// One byte more than the body: Caddy's ReadFrom loop ends on a short
	// read, not a full chunk.
	restore := iw.Override(iw.Deadline.Timeout, 0, int(min(size+1, math.MaxInt32)))
	return func() {
		restore()
		c.endWholeWrites()
	}
}

// copyEntryHeader puts the stored header values into the response header,
// with the origin's Date and the entry's current Age (RFC 9111 §5.1: a
// response served from the cache carries one). The values are copied, into
// one slice for all (one allocation, as http.Header.Clone does): handlers
// after this one may edit values in place (Caddy's header replace does),
// and the entry is shared by every hit. The Date and Age strings are made
// at store time and once a second (Entry.AgeValue): nothing is parsed or
// formatted per hit.
func copyEntryHeader(dst http.Header, e *cache.Entry, now time.Time) {
	n := 2
	for _, v := range e.Header {
		n += len(v)
	}
	values := make([]string, n)
	for k, v := range e.Header {
		n := copy(values, v)
		dst[k] = values[:n:n]
		values = values[n:]
	}
	values[1] = e.AgeValue(now)
	dst["Age"] = values[1:2:2]
	if e.Date != "" {
		values[0] = e.Date
		dst["Date"] = values[0:1:1]
	}
}

// entryCacheStatus is the Cache-Status member of an answer from an entry:
// a hit (a negative ttl when stale), or a validation that went forward.
func entryCacheStatus(status cache.Status, e *cache.Entry, now time.Time, r *http.Request) cache.CacheStatus {
	cs := cache.CacheStatus{TTL: e.ValidUntil.Sub(now), HasTTL: true}
	switch {
	case status == cache.StatusRevalidated:
		cs.Fwd, cs.FwdStatus = cache.FwdStale, http.StatusNotModified
	case collapsedFrom(r):
		cs.Fwd, cs.FwdStatus, cs.Collapsed = cache.FwdURIMiss, e.Status, true
	default:
		cs.Hit = true
	}
	return cs
}

// collapsedKey marks a request that waited on another one's fill.
type collapsedKey struct{}

// collapsed marks r as served from another request's fill, for its
// Cache-Status (only then: it costs a copy of the request).
func (h *Handler) collapsed(r *http.Request) *http.Request {
	if !h.CacheStatusHeader {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), collapsedKey{}, true))
}

func collapsedFrom(r *http.Request) bool {
	c, _ := r.Context().Value(collapsedKey{}).(bool)
	return c
}

// fwdReason is why a fetch with the given cache status went forward.
func fwdReason(s cache.Status) string {
	switch s {
	case cache.StatusBypass:
		return cache.FwdBypass
	case cache.StatusExpired:
		return cache.FwdStale
	}
	return cache.FwdURIMiss
}

// notModified trims a 304's header to what RFC 9110 §15.4.5 has it carry:
// no content headers.
func notModified(h http.Header) {
	for _, name := range [...]string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding"} {
		delete(h, name)
	}
}

// hasConditional reports whether the request has preconditions.
func hasConditional(h http.Header) bool {
	for _, name := range [...]string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if _, ok := h[name]; ok {
			return true
		}
	}
	return false
}
