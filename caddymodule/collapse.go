package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
)

// Hit-for-miss, better than Varnish's: a fill that ends without storing
// (an uncacheable answer, a failure, a body cut short) does not hand the
// lock to its waiters one at a time, as nginx does. They are all woken
// with its outcome: each gets the fill's own answer where that is safe (a
// 5xx no client-specific header shaped, kept in memory as it is relayed,
// up to maxCollapsed), or else they all go to the backend at once. The
// key then sends its requests straight to the backend, without the lock,
// for uncacheable_ttl (never longer than the answer's own freshness), and
// in a fleet the other proxies' waiters hear the same, with the answer
// (the fleet lock's release carries it). A later answer that is stored
// ends it.

// maxCollapsed is the largest answer body kept for a fill's waiters: an
// error page, not a payload.
const maxCollapsed = 64 << 10

// unstored is what the waiters of job's fill hear when it stores nothing:
// AwaitUnstored, with the answer they may share when it is whole; and the
// key is marked uncacheable (when the fill may have stored: not after a
// lock_timeout, say).
func (h *Handler) unstored(job fetchJob, cw *captureWriter, whole bool) cache.Awaited {
	end := cache.Awaited{Result: cache.AwaitUnstored}
	if whole && cw.answer != nil && (cw.answer.BodySize < 0 || cw.answer.BodySize == int64(len(cw.answer.Body))) {
		end.Entry = cw.answer
		end.Entry.BodySize = int64(len(end.Entry.Body))
	}
	if !job.cacheable {
		return end
	}
	end.Uncacheable = time.Duration(h.UncacheableTTL)
	if cw.outcome != outcomeNone {
		end.Uncacheable = cw.uncacheable
	}
	if job.fill != nil {
		job.zone.MarkUncacheable(job.key, end.Uncacheable)
	}
	return end
}

// collapsible returns the entry that keeps a fill's relayed answer for
// its waiters, or nil when they may not have it (cache.Collapsible).
func (h *Handler) collapsible(cw *captureWriter, code int, hdr http.Header, now time.Time) *cache.Entry {
	if !cache.Collapsible(code, hdr, slices.Contains(h.hide, "Set-Cookie")) || contentLength(hdr) > maxCollapsed {
		return nil
	}
	meta := cache.Meta{Key: cw.job.key, Status: code, Header: cw.storedHeader(hdr), StoredAt: now, ValidUntil: now,
		Date: dateOf(hdr, now), BodySize: contentLength(hdr)}
	if h.policy.Ignore&cache.IgnoreVary == 0 {
		meta.VaryNames = cache.VaryNames(hdr["Vary"])
		meta.Variant = cache.VariantOf(meta.VaryNames, cw.client.Header)
	}
	return &cache.Entry{Meta: meta}
}

// keepAnswer adds p to the answer kept for the fill's waiters, or drops
// it once it outgrows maxCollapsed: they go to the backend then, not at
// the end of this body.
func (cw *captureWriter) keepAnswer(p []byte) {
	if len(cw.answer.Body)+len(p) > maxCollapsed {
		cw.answer = nil
		cw.job.fill.Finish(cw.h.unstored(cw.job, cw, false))
		cw.fillEnded = true
		return
	}
	cw.answer.Body = append(cw.answer.Body, p...)
}

// unstoredFill answers a waiter (the waiter or fleet step) whose fill
// stored nothing: with the fill's answer when it has one that this
// request may have (its 5xx, or the stale entry it answered from), else
// from the backend at once, without the lock. Told
// by another proxy, the key is marked uncacheable here too.
func (h *Handler) unstoredFill(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob, got cache.Awaited) error {
	if ttl := min(got.Uncacheable, time.Duration(h.UncacheableTTL)); ttl > 0 {
		job.zone.MarkUncacheable(job.key, ttl)
	}
	if e := got.Entry; e != nil && job.stale != nil && e.Key == job.stale.Key && e.StoredAt.Equal(job.stale.StoredAt) {
		// The fill answered from the stale entry (use_stale): so does
		// its waiter, which looked it up too.
		return h.serveStaleOr(w, r, job.zone, job.stale, cache.StatusStale, func() error {
			return h.fetchAndDeliver(w, r, next, job)
		})
	}
	if e := got.Entry; e != nil && e.Status >= 500 && cache.VariantOf(e.VaryNames, r.Header) == e.Variant {
		if job.fill != nil {
			job.fill.Finish(got) // its own waiters, in the fleet step
		}
		return h.serveCollapsed(w, r, job, e)
	}
	return h.fetchAndDeliver(w, r, next, job)
}

// serveCollapsed delivers a fill's answer to one of its waiters, as the
// backend gave it to the fill's client, with the waiter's cache status.
func (h *Handler) serveCollapsed(w http.ResponseWriter, r *http.Request, job fetchJob, e *cache.Entry) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	hdr := w.Header()
	for k, v := range e.Header {
		hdr[k] = v
	}
	hdr["Date"] = []string{e.Date}
	hdr["Content-Length"] = []string{strconv.Itoa(len(e.Body))}
	h.setStatus(w, repl, job.status)
	h.addCacheStatus(w, cache.CacheStatus{Fwd: fwdReason(job.status), FwdStatus: e.Status, Collapsed: true})
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
	job.zone.Stats.CollapsedErrors.Add(1)
	job.zone.CountRequest(job.status, job.key)
	return nil
}
