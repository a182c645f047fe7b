package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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
// the body in one call: the body is never copied per hit. A caller that can
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
	// A disk body is opened before anything is written, so that a file
	// replaced or removed since the look-up is a clean error, not a cut
	// response.
	var body io.ReadSeekCloser
	if !e.InMemory() {
		var err error
		if body, err = e.OpenBody(); err != nil {
			return fmt.Errorf("%w: %s: %v", errEntryGone, e.Key, err)
		}
		defer body.Close()
	}
	zone.Stats.Requests[status].Add(1)
	copyHeader(w.Header(), e.Header)
	h.setStatus(w, repl, status)

	if e.Status == http.StatusOK && hasRangeOrConditional(r.Header) {
		if body == nil {
			body, _ = e.OpenBody() // in memory: cannot fail
		}
		var modtime time.Time
		if lm := e.Header.Get("Last-Modified"); lm != "" {
			modtime, _ = http.ParseTime(lm)
		}
		http.ServeContent(w, r, "", modtime, body)
		return nil
	}

	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return nil
	}
	if body == nil {
		holdFirstWrite(r, len(e.Body))
		n, _ := w.Write(e.Body)
		zone.Stats.BytesServed.Add(int64(n))
		return nil
	}
	n, err := io.Copy(w, body)
	zone.Stats.BytesServed.Add(n)
	if err != nil {
		// Headers are out (a corrupt body is found at its end): all that
		// is left is to cut the response short.
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

// hasRangeOrConditional reports whether serving needs http.ServeContent.
func hasRangeOrConditional(h http.Header) bool {
	for _, name := range [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if _, ok := h[name]; ok {
			return true
		}
	}
	return false
}

// variantMatches reports whether an entry stored under a honoured Vary was
// stored for a request like r.
func (h *Handler) variantMatches(e *cache.Entry, r *http.Request) bool {
	return e.Variant == "" || e.Variant == cache.Variant(e.Header["Vary"], r.Header)
}
