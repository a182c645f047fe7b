package caddymodule

import (
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

// serveEntry answers from a stored entry. The common case (no range, no
// conditional) copies the stored header values in one allocation and writes
// the body in one call: the body is never copied per hit.
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	return h.serveEntryWith(w, r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), zone, e, status)
}

// serveEntryWith is serveEntry for a caller that holds the replacer.
func (h *Handler) serveEntryWith(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, zone *cache.Zone, e *cache.Entry, status cache.Status) error {
	zone.Stats.Requests[status].Add(1)
	copyHeader(w.Header(), e.Header)
	h.setStatus(w, repl, status)

	if e.Status == http.StatusOK && hasRangeOrConditional(r.Header) {
		body, err := e.OpenBody()
		if err != nil {
			return err
		}
		defer body.Close()
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
	if e.InMemory() {
		n, _ := w.Write(e.Body)
		zone.Stats.BytesServed.Add(int64(n))
		return nil
	}
	body, err := e.OpenBody()
	if err != nil {
		// Headers are out: all that is left is to cut the response short.
		panic(http.ErrAbortHandler)
	}
	defer body.Close()
	n, err := io.Copy(w, body)
	zone.Stats.BytesServed.Add(n)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
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
