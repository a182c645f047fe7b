package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
)

// errEntryGone reports a disk entry whose file was replaced (by a refresh),
// purged or evicted between its look-up and the opening of its body.
// Nothing has been written to the response then.
var errEntryGone = errors.New("cache entry vanished before it could be served")

// serveEntry answers from a stored entry. The common case (no range, no
// conditional) copies the stored header values in one allocation and writes
// the body in one call: the body is never copied per hit. A disk body is
// verified block by block as it is sent (cache.BodyReader). A caller that can
// fall back to the backend uses serveEntryWith and handles errEntryGone;
// here it becomes a 503 for this rare race.
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	err := h.serveEntryWith(w, r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), zone, e, status)
	if errors.Is(err, errEntryGone) {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	return err
}

// serveEntryWith is serveEntry for a caller that holds the replacer.
func (h *Handler) serveEntryWith(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	// The same range rules as a miss (cache/ranges.go).
	size := e.BodySize
	if e.InMemory() {
		size = int64(len(e.Body))
	}
	window, answer := cache.ByteRange{End: size}, cache.RangeWhole
	if _, ok := r.Header["Range"]; ok {
		if window, answer = cache.EvaluateRange(r.Method, r.Header, e.Status, e.Header, size, e.StoredAt); answer == cache.RangeWhole {
			window = cache.ByteRange{End: size}
		}
	}
	send := r.Method != http.MethodHead && answer != cache.RangeUnsatisfiable && window.End > window.Start
	// A disk body is opened, and the first block it sends verified, before
	// anything is written: a file replaced, removed or damaged since the
	// look-up is then a clean error (a miss for the caller), not a cut
	// response.
	var body *cache.BodyReader
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
	zone.Stats.Requests[status].Add(1)
	copyHeader(w.Header(), e.Header)
	h.setStatus(w, repl, status)
	if e.Status == http.StatusOK && hasConditional(r.Header) && answerPreconditions(w, r, e) {
		return nil
	}
	w.WriteHeader(cache.SetRangeHeader(w.Header(), window, answer, size, e.Status))
	if !send {
		return nil
	}
	if body == nil {
		part := e.Body[window.Start:window.End]
		holdFirstWrite(r, len(part))
		n, _ := w.Write(part)
		zone.Stats.BytesServed.Add(int64(n))
		return nil
	}
	n, err := io.Copy(w, body)
	zone.Stats.BytesServed.Add(n)
	if err != nil {
		// Headers are out (a damaged block past the first, or the client
		// gone): all that is left is to cut the response short.
		panic(http.ErrAbortHandler)
	}
	return nil
}

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

// copyHeader puts the stored header values into the response header. The
// values are copied, into one slice for all (one allocation, as
// http.Header.Clone does): handlers after this one may edit values in place
// (Caddy's header replace does), and the entry is shared by every hit.
func copyHeader(dst, src http.Header) {
	n := 0
	for _, v := range src {
		n += len(v)
	}
	values := make([]string, n)
	for k, v := range src {
		n := copy(values, v)
		dst[k] = values[:n:n]
		values = values[n:]
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

// answerPreconditions answers a request whose preconditions fail (304 Not
// Modified, 412 Precondition Failed) and reports whether it did. It lets
// net/http's ServeContent evaluate them on an empty body, with Range and
// If-Range hidden: ranges are ours (cache/ranges.go) and come after.
func answerPreconditions(w http.ResponseWriter, r *http.Request, e *cache.Entry) bool {
	var modtime time.Time
	if lm := e.Header.Get("Last-Modified"); lm != "" {
		modtime, _ = http.ParseTime(lm)
	}
	rc := *r
	rc.Header = r.Header.Clone()
	delete(rc.Header, "Range")
	delete(rc.Header, "If-Range")
	rec := &statusRecorder{header: w.Header().Clone()}
	http.ServeContent(rec, &rc, "", modtime, strings.NewReader(""))
	if rec.status != http.StatusNotModified && rec.status != http.StatusPreconditionFailed {
		return false
	}
	clear(w.Header())
	maps.Copy(w.Header(), rec.header)
	w.WriteHeader(rec.status)
	return true
}

// statusRecorder keeps the header and status of a response, not its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
func (s *statusRecorder) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}

// variantMatches reports whether an entry stored under a honoured Vary was
// stored for a request like r.
func (h *Handler) variantMatches(e *cache.Entry, r *http.Request) bool {
	return e.Variant == "" || e.Variant == cache.Variant(e.Header["Vary"], r.Header)
}
