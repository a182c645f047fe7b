package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

// captureWriter sits between the backend's response and the client on a
// fetch. At header time it decides the outcome: relayed, stored (then every
// body write goes to the client and into the entry writer at once, so large
// bodies stream with bounded memory and nothing is buffered for the
// client), or swallowed for the stale entry (stale, revalidated).
type captureWriter struct {
	rw     http.ResponseWriter
	h      *Handler
	client *http.Request
	repl   *caddy.Replacer
	zone   *cache.Zone
	job    fetchJob
	before http.Header // header entries set before the backend answered (not the backend's)
	// requested is when the request went to the backend: the response's
	// delay counts in its age (RFC 9111 §4.2.3).
	requested time.Time

	// outcome is what the backend's answer amounts to, from WriteHeader on.
	outcome outcome
	code    int // the backend's status, from WriteHeader on
	// revalidation: the stale entry's new validity (outcomeRevalidated).
	revalidation *cache.Revalidation
	// writer stores the answer (outcomeStored); nil otherwise.
	writer   *cache.EntryWriter
	headOnly bool
	window   *byteWindow
	pos      int64
}

func newCaptureWriter(h *Handler, w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, job fetchJob) *captureWriter {
	cw := &captureWriter{
		rw: w, h: h, client: r, repl: repl, zone: job.zone, job: job,
		headOnly: r.Method == http.MethodHead, requested: job.zone.Clock().Now(),
	}
	if job.mayStore || job.stale != nil {
		cw.before = make(http.Header, len(w.Header()))
		for k, v := range w.Header() {
			cw.before[k] = v
		}
	}
	return cw
}

func (cw *captureWriter) Header() http.Header { return cw.rw.Header() }

// Unwrap lets http.ResponseController reach the connection.
func (cw *captureWriter) Unwrap() http.ResponseWriter { return cw.rw }

func (cw *captureWriter) WriteHeader(code int) {
	if cw.outcome != outcomeNone {
		return
	}
	if code < 200 {
		// 1xx informational: not the response. Its cookie is dropped as the
		// final response's is when stored (below), which is not known yet:
		// the fill's visitor is served as later ones are, with no cookie.
		if cw.job.mayStore {
			delete(cw.rw.Header(), "Set-Cookie")
		}
		cw.rw.WriteHeader(code)
		return
	}
	cw.code = code
	hdr := cw.rw.Header()
	now := cw.zone.Clock().Now()
	if stale := cw.job.stale; stale != nil {
		if code == http.StatusNotModified && (cw.h.revalidate || stale.NoCache) {
			cw.outcome = outcomeStale
			// The 304 updates the stored header (RFC 9111 §4.3.4), and
			// the freshness comes from the result.
			update := cw.storedHeader(hdr)
			merged := stale.Header.Clone()
			for k, v := range update {
				merged[k] = v
			}
			if date, ok := hdr["Date"]; ok {
				merged["Date"] = date
			}
			if d := cw.h.policy.DecideResponse(stale.Status, merged, cw.requested, now); d.Store {
				cw.outcome = outcomeRevalidated
				cw.revalidation = &cache.Revalidation{Header: update, Decision: d, At: now, Date: dateOf(hdr, now),
					PurgeGen: cw.job.mark.Purge, Invalidations: cw.job.mark.Inval}
			}
			cw.discardHeader(hdr)
			return
		}
		if cw.h.staleAllowed(staleConditionOfStatus(code), stale, now) {
			cw.outcome = outcomeStale
			cw.discardHeader(hdr)
			return
		}
	}
	cw.outcome = outcomeRelayed
	cs := cache.CacheStatus{Fwd: fwdReason(cw.job.status), FwdStatus: code}
	if cw.job.mayStore {
		d := cw.h.policy.DecideResponse(code, hdr, cw.requested, now)
		if d.Store {
			cs.Stored, cs.TTL, cs.HasTTL = true, d.ValidUntil.Sub(now), true
			cw.outcome = outcomeStored
			meta := cache.Meta{
				Key:                  cw.job.key,
				Status:               code,
				Header:               cw.storedHeader(hdr),
				StoredAt:             now,
				InitialAge:           d.InitialAge,
				Date:                 dateOf(hdr, now),
				ValidUntil:           d.ValidUntil,
				NoCache:              d.NoCache,
				StaleWhileRevalidate: d.StaleWhileRevalidate,
				StaleIfError:         d.StaleIfError,
				BodySize:             contentLength(hdr),
			}
			if cw.h.policy.Ignore&cache.IgnoreVary == 0 {
				// One variant among several (RFC 9111 §4.1).
				meta.VaryNames = cache.VaryNames(hdr["Vary"])
				meta.Variant = cache.VariantOf(meta.VaryNames, cw.client.Header)
			}
			cw.writer = cw.zone.NewEntryWriter(meta, cw.job.mark)
		} else {
			cw.zone.Stats.CountSkip(d.Reason)
		}
	}
	// A stored response's cookie is never replayed from the cache, and is
	// removed from this answer too, so that the fill's visitor is served as
	// later ones are. One that is not stored keeps it: it is this visitor's
	// own (hide_headers removes it from every response).
	if cw.outcome == outcomeStored {
		delete(hdr, "Set-Cookie")
	}
	cw.h.setStatus(cw.rw, cw.repl, cw.job.status)
	cw.h.addCacheStatus(cw.rw, cs)
	if code == http.StatusOK && !cw.headOnly {
		cw.window, code = rangeWindow(cw.client.Header, hdr)
	}
	cw.rw.WriteHeader(code)
}

// storedHeader is the part of the response header that is the backend's
// and the resource's: not hop-by-hop, not a session, not set by handlers
// that run again on every hit.
func (cw *captureWriter) storedHeader(hdr http.Header) http.Header {
	stored := make(http.Header, len(hdr))
	for k, v := range hdr {
		if before, ok := cw.before[k]; ok && slices.Equal(before, v) {
			continue
		}
		switch k {
		case "Set-Cookie", "Date", "Age", "Content-Length", "Connection", "Keep-Alive", "Proxy-Connection",
			"Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Authenticate", cw.h.StatusHeader:
			continue
		}
		stored[k] = append([]string(nil), v...)
	}
	return stored
}

// dateOf is the origin's Date as it came, or the time received when it
// sent none (RFC 9110 §6.6.1: a recipient adds one).
func dateOf(hdr http.Header, now time.Time) string {
	if d := hdr["Date"]; len(d) == 1 && d[0] != "" {
		return d[0]
	}
	return now.UTC().Format(http.TimeFormat)
}

func (cw *captureWriter) Write(p []byte) (int, error) {
	if cw.outcome == outcomeNone {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.swallowed() {
		return len(p), nil
	}
	if cw.writer != nil {
		cw.writer.Write(p)
	}
	if cw.headOnly {
		return len(p), nil
	}
	if cw.window != nil {
		part := cw.window.clip(cw.pos, p)
		cw.pos += int64(len(p))
		if len(part) > 0 {
			if _, err := cw.rw.Write(part); err != nil {
				cw.abort()
				return 0, err
			}
		}
		return len(p), nil
	}
	n, err := cw.rw.Write(p)
	if err != nil {
		// The client went away mid-body: what we hold may be complete for
		// all we know, but nginx's rule is that an interrupted fill stores
		// nothing, and the backend copy is about to be cut short anyway.
		cw.abort()
	}
	return n, err
}

// Flush streams what the backend has sent so far (reverse_proxy flushes
// for event streams and long polls).
func (cw *captureWriter) Flush() {
	if cw.outcome == outcomeNone {
		cw.WriteHeader(http.StatusOK)
	}
	if !cw.swallowed() {
		_ = http.NewResponseController(cw.rw).Flush()
	}
}

// swallowed reports whether the backend's answer is replaced by the stale
// entry (kept or revalidated), so nothing of it reaches the client.
func (cw *captureWriter) swallowed() bool {
	return cw.outcome == outcomeStale || cw.outcome == outcomeRevalidated
}

// discardHeader undoes what the backend's swallowed answer put in the
// header, so the stale entry is served with its own.
func (cw *captureWriter) discardHeader(hdr http.Header) {
	for k, v := range hdr {
		if before, ok := cw.before[k]; !ok || !slices.Equal(before, v) {
			delete(hdr, k)
		}
	}
	for k, v := range cw.before {
		hdr[k] = v
	}
}

// commit stores the entry if the response was complete and storable,
// and returns it (nil if not).
func (cw *captureWriter) commit() *cache.Entry {
	if cw.writer == nil {
		return nil
	}
	e, _ := cw.writer.Commit()
	cw.writer = nil
	return e
}

// abort drops what was stored so far; the answer goes on to the client.
func (cw *captureWriter) abort() {
	if cw.writer != nil {
		cw.writer.Abort()
		cw.writer = nil
		cw.outcome = outcomeRelayed
	}
}

func contentLength(hdr http.Header) int64 {
	if v := hdr.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	return -1
}
