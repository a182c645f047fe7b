package caddymodule

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

// captureWriter sits between the backend's response and the client on a
// fetch. At header time it decides the outcome: relayed, stored, or
// swallowed for the stale entry (stale, revalidated).
//
// A stored body goes into the entry writer as fast as the backend sends it,
// and the client is fed from the entry being written (cache.Stream) by a
// delivery goroutine, at the client's own pace: a slow client never slows
// the fill, nor the waiters that read the same stream (nginx reads the
// backend into its temp file; Varnish streams a miss). The memory this
// takes is the entry's own: a body that only memory could hold and that
// outgrows the memory tier's entry limit is handed back to the client
// directly, at its pace, once the delivery has caught up (as before: passed
// through unstored). A relayed body goes to the client as it comes.
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
	pos      int64 // body offset of the next Write

	// stream is the entry being written, when the client and the fill's
	// waiters are fed from it; nil once the entry stopped storing the body
	// (the client then gets the rest directly), and for other outcomes.
	stream *cache.Stream
	// header stands for the client's header while the delivery goroutine
	// owns the client's writer: what the backend adds late (trailers) is
	// not the entry's, nor sent.
	header http.Header
	// delivered is closed when the delivery goroutine has ended (nil: none
	// runs), with deliveryErr (io.EOF: the client got all it asked for) and
	// deliveryPanic set before.
	delivered     chan struct{}
	deliveryErr   error
	deliveryPanic any
	// uncacheable is how long the key passes requests straight through
	// if this fill stores nothing (Handler.unstored), from the answer's
	// freshness; answer is the fill's 5xx answer as it is relayed, for its
	// waiters (collapse.go): nil when there is none they may have.
	uncacheable time.Duration
	answer      *cache.Entry
	fillEnded   bool // the fill was finished at header time
	// keep, on a fetch for a client: 0 until the body flows into the entry
	// (keepFilling), then 1; or 2 once the client went away first, which
	// cancelled the backend request.
	keep atomic.Int32
}

const (
	keepUndecided int32 = iota
	keepFilling
	keepCancelled
)

func newCaptureWriter(h *Handler, w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, job fetchJob) *captureWriter {
	cw := &captureWriter{
		rw: w, h: h, client: r, repl: repl, zone: job.zone, job: job,
		headOnly: r.Method == http.MethodHead, requested: job.zone.Clock().Now(),
	}
	if job.cacheable || job.stale != nil {
		cw.before = make(http.Header, len(w.Header()))
		for k, v := range w.Header() {
			cw.before[k] = v
		}
	}
	return cw
}

func (cw *captureWriter) Header() http.Header {
	if cw.header != nil {
		return cw.header
	}
	return cw.rw.Header()
}

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
		if cw.job.cacheable {
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
					Mark: cw.job.mark}
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
	cw.uncacheable = cw.h.policy.Uncacheable(time.Duration(cw.h.UncacheableTTL), hdr, now)
	cs := cache.CacheStatus{Fwd: fwdReason(cw.job.status), FwdStatus: code}
	if cw.job.cacheable {
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
				Tags:                 cw.h.tags.Tags(cw.client.URL.Path, cw.client.URL.RawQuery, hdr),
			}
			if cw.h.policy.Ignore&cache.IgnoreVary == 0 {
				// One variant among several (RFC 9111 §4.1).
				meta.VaryNames = cache.VaryNames(hdr["Vary"])
				meta.Variant = cache.VariantOf(meta.VaryNames, cw.client.Header)
			}
			cw.writer = cw.zone.NewEntryWriter(meta, cw.job.mark)
			cw.stream = cw.writer.Stream()
		} else {
			cw.zone.Stats.CountSkip(d.Reason)
		}
	}
	if cw.outcome == outcomeRelayed && cw.job.fill != nil {
		if cw.answer = cw.h.collapsible(cw, code, hdr, now); cw.answer == nil {
			// Nothing its waiters may share: they go to the backend now,
			// not at the end of this body.
			cw.job.fill.Finish(cw.h.unstored(cw.job, cw, false))
			cw.fillEnded = true
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
	if cw.stream != nil {
		cw.startStream(code)
	}
}

// startStream feeds the client, and the fill's waiters, from the entry
// being written, once the client's header is written.
func (cw *captureWriter) startStream(code int) {
	if cw.job.fill != nil && cw.stream.Shared() {
		cw.job.fill.Publish(cw.stream)
	}
	// The client going away no longer ends the fill (see fetch).
	cw.keep.CompareAndSwap(keepUndecided, keepFilling)
	if _, background := cw.rw.(discardWriter); background || cw.headOnly || code == http.StatusRequestedRangeNotSatisfiable {
		return
	}
	start, end := int64(0), int64(-1)
	if cw.window != nil {
		start, end = cw.window.start, cw.window.end
	}
	reader, ok := cw.stream.Open(cw.client.Context(), start)
	if !ok {
		return
	}
	cw.header = cw.rw.Header().Clone()
	cw.delivered = make(chan struct{})
	go cw.deliver(reader, end)
}

// deliver is the delivery goroutine: it sends the client the body from the
// entry being written, up to end (-1: its end). It owns the client's
// writer until it ends.
func (cw *captureWriter) deliver(body *cache.StreamReader, end int64) {
	defer close(cw.delivered)
	defer body.Close()
	defer func() {
		if p := recover(); p != nil {
			cw.deliveryPanic = p
		}
	}()
	_, cw.deliveryErr = copyStream(cw.rw, body, end)
}

// awaitDelivery waits for the delivery goroutine to end, so that the
// client's writer is this goroutine's again, and reports whether the client
// got all it asked for. A panic of the delivery goes on here.
func (cw *captureWriter) awaitDelivery() (complete bool) {
	if cw.delivered == nil {
		return true
	}
	<-cw.delivered
	cw.delivered, cw.header = nil, nil
	if p := cw.deliveryPanic; p != nil {
		cw.deliveryPanic = nil
		panic(p)
	}
	return cw.deliveryErr == io.EOF
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
		if cw.h.tags != nil && slices.Contains(cw.h.tags.Header, k) {
			continue // stored as the entry's tags
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
		if cw.stream != nil {
			if !cw.stream.Cut() {
				cw.pos += int64(len(p))
				return len(p), nil
			}
			// The entry stopped storing the body before p: the client gets
			// the rest directly, after what the stream held.
			cw.stream = nil
			if !cw.awaitDelivery() && cw.deliveryErr != cache.ErrStreamCut {
				cw.abort()
				return 0, cw.deliveryErr
			}
		}
	}
	if cw.answer != nil {
		cw.keepAnswer(p)
	}
	pos := cw.pos
	cw.pos += int64(len(p))
	if cw.headOnly {
		return len(p), nil
	}
	if cw.window != nil {
		part := cw.window.clip(pos, p)
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
		// The client went away mid-body, on a body not stored (or no
		// longer): nothing else reads it, so the fetch ends.
		cw.abort()
	}
	return n, err
}

// Flush streams what the backend has sent so far (reverse_proxy flushes
// for event streams and long polls). A client fed from the entry is flushed
// by its delivery instead, whenever it catches up.
func (cw *captureWriter) Flush() {
	if cw.outcome == outcomeNone {
		cw.WriteHeader(http.StatusOK)
	}
	if !cw.swallowed() && cw.stream == nil {
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
