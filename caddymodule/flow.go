package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/maintenance"
)

// The request flow of the edge_cache handler, one named step at a time
// (as Varnish's recv, lookup, hit, miss, pass, fetch, deliver). Every
// step is a function of this file, and every cache status is assigned
// here; the steps call out only to the fetch (fetch.go, responsewriter.go),
// serve (serve.go, and collapse.go for the answers of fills that store
// nothing) and cache layers.
//
//	step         when                                        then                                  status
//	----         ----                                        ----                                  ------
//	recv         every request (ServeHTTP)                   pass, maintenance, refresh or lookup;
//	                                                         hide_headers wraps the writer first
//	pass         method not cached                           next handler, untouched               (none)
//	             unsafe method, answered 2xx/3xx             invalidate the URL, Location,         (none)
//	                                                         Content-Location (same host)
//	             private: Authorization or private_cookies   next handler, untouched               BYPASS
//	             a body, or X-HTTP-Method-Override & co.     next handler, untouched               BYPASS
//	maintenance  a maintenance gate (serve_cached)           lookup (then the shared tier):        HIT, STALE
//	                                                         hit or expired → deliver
//	                                                         miss, private, refresh → the page     (none)
//	refresh      refresh on                                  fetch, store over the entry           BYPASS
//	lookup       the key's entry, for this request's Vary    hit, expired or miss
//	hit          fresh entry                                 deliver                               HIT
//	             its disk file gone since the look-up        lookup once more: hit, else miss
//	miss         min_uses not reached, or lock off           shared look-up, else fetch            HIT (shared), MISS
//	                                                         (min_uses: without storing)
//	             the key's last fill stored nothing, less    shared look-up, else fetch, no lock   HIT (shared), MISS
//	             than uncacheable_ttl ago (hit-for-miss)     (a stored answer ends it)
//	             no fill under way for the key               fill leader: fleet (in a fleet), or
//	                                                         fetch, store, wake                    MISS
//	             ... one ended since the look-up, stored     deliver its entry                     HIT
//	             a fill under way                            fill waiter: waiter                   below
//	fleet        the shared tier (Redis) holds a fresh entry copy it here; deliver                 HIT (shared)
//	             no proxy fills the key                      take the fleet lock; fetch, store     MISS
//	             another proxy fills it                      wait for its store (pub/sub wake-up,  HIT (shared)
//	                                                         its lock's heartbeat checked)
//	             ... then as the waiter's wait ends (awaited), below
//	             its lock lapsed (its proxy died, or its     look up again, take the lock          as above
//	             release failed), or Redis stopped answering
//	             its fill stored here only (over entry_max)  fetch, store here only                MISS
//	             Redis unavailable (breaker open)            fetch, store here only                MISS
//	waiter       the fill stores (header in, body coming)    deliver the entry as it is written    HIT
//	             ... but another variant, a Range or HEAD    wait for the end, as below
//	             of an unknown length, or failed first
//	             the fill failed mid-body after the answer   cut short (connection broken)         HIT
//	  awaited    the fill stored                             deliver the stored entry              HIT
//	             the fill stored nothing (an error, an       all its waiters at once: its answer,  MISS (EXPIRED)
//	             uncacheable answer, a cut body)             if a 5xx no client header shaped
//	                                                         (collapse.go), else fetch, no lock
//	             ... it answered from the stale entry        deliver the stale entry               STALE
//	             (use_stale)
//	             the fill was abandoned (purged at once,     lead the next fill (in a fleet: the   MISS (EXPIRED)
//	             its lock gone)                              fleet step), or wait on
//	             lock_timeout passed first                   fetch without storing                 MISS (EXPIRED)
//	expired      a fill under way, stale allowed (updating)  deliver the stale entry               UPDATING
//	             a fill under way, else                      waiter (lock on), or fetch            as waiter, EXPIRED
//	             fill leader, a fill ended since the look-up  deliver its entry                     HIT
//	             and stored a fresh entry
//	             fill leader, a fresh entry in the shared    copy it here; deliver                 HIT (shared)
//	             tier (another proxy refreshed it)
//	             fill leader, another proxy updating it      stale allowed (updating): deliver     UPDATING
//	                                                         stale; else fleet (wait for it)       as fleet
//	             fill leader in a fleet, else                take the fleet lock, then as below
//	             fill leader, background_update allowed      background fetch; deliver stale       STALE
//	             (or soft-purged, with use_stale updating)
//	             fill leader, else                           fetch (with validators: revalidate)   EXPIRED
//	             the stale entry's disk file gone since the  wait for the fill (UPDATING, STALE),  as waiter, EXPIRED
//	             look-up                                     or fetch without storing (fleet)
//	fetch        the backend answers (fetch.go): outcome     relayed, stored, stale, revalidated,
//	                                                         failed
//	deliver      after a fetch for a client                  the backend's answer as it came       the job's status
//	             outcome revalidated (304)                   the extended entry                    REVALIDATED
//	             outcome stale (use_stale, stale-if-error)   the stale entry                       STALE
//	             outcome failed, nothing written             the error (handle_errors' page)       the job's status
//	             the answer cut short (the client gone, or   the connection broken                 the job's status
//	             the backend broken mid-body)
//
// A waiter (here, or in the fleet step) from the expired step reports
// EXPIRED where one from the miss step reports MISS. A fetch for a client relays the backend's answer as
// it streams, unless it stores it: then the body is read at the backend's
// speed into the entry being written (memory, or the disk temp file), and
// the client, and the fill's waiters, read that entry at their own pace
// (responsewriter.go, cache.Stream), so a slow client slows no one else; a
// body of unknown length that only memory holds is read only by the
// fill's own client, and one too large for every tier is relayed as it
// streams. A background fetch has no client and only stores. Whatever a
// request stores is void if a purge, or an invalidation of its key, ran
// after its look-up (fetchJob.mark): the backend's answer may predate it
// (the readers of the stream still get the whole body: it is the
// backend's). In a fleet, what a fetch stores goes to Redis too, in the
// background (fetch.go, shared.go), and only then is the fleet lock
// released, its message waking the other proxies' waiters with the fill's
// outcome (stored, or stored nothing: hit-for-miss there too). A hit sets {http.edge_cache.tier} to the tier that answered
// (memory, disk, shared); a miss leaves it empty.

// lookupResult is what a look-up found for a request.
type lookupResult uint8

const (
	lookupMiss    lookupResult = iota // no entry, or one for another variant
	lookupHit                         // a fresh entry
	lookupExpired                     // an entry past its validity
)

// ServeHTTP is the recv step: it implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.hide != nil {
		// Outermost, so that hide_headers covers every answer below,
		// whatever the method (hideheaders.go).
		hw := newHideWriter(w, h.hide)
		defer hw.release()
		w = hw
	}
	if !h.methods[r.Method] {
		w = h.forwardedWriter(w, cache.FwdMethod)
		if !safeMethod(r.Method) {
			return h.invalidating(w, r, r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer), next)
		}
		return next.ServeHTTP(w, r)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if gate := maintenance.GateFrom(r.Context()); gate != nil {
		return h.maintenance(w, r, repl, gate)
	}
	if reason := h.bypass(r); reason != cache.BypassNone {
		return h.pass(w, r, repl, next, reason)
	}
	zone, err := h.zoneFor(repl)
	if err != nil {
		// A map that yields an undefined zone: the site keeps working,
		// uncached, and the operator hears of it (once per name).
		h.setStatus(w, repl, cache.StatusBypass)
		undefinedZones.seen(h.logger, err)
		return next.ServeHTTP(w, r)
	}
	key := h.CacheKey(r, repl)
	if h.Refresh {
		return h.refresh(w, r, repl, next, zone, key)
	}
	now := zone.Clock().Now()
	switch result, entry, mark, tier := h.lookupTier(zone, key, r, now); result {
	case lookupHit:
		repl.Set(tierPlaceholder, tierValues[tier])
		return h.hit(w, r, repl, next, zone, key, entry, now)
	case lookupExpired:
		repl.Set(tierPlaceholder, tierValues[cache.TierNone])
		return h.expired(w, r, next, fetchJob{zone: zone, key: key, mark: mark}, entry, now)
	default:
		repl.Set(tierPlaceholder, tierValues[cache.TierNone])
		return h.miss(w, r, next, fetchJob{zone: zone, key: key, mark: mark}, now)
	}
}

// pass hands a request the cache must not answer nor store (bypass) to
// the next handler untouched, Set-Cookie included: it may be someone's
// session.
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler, reason cache.BypassReason) error {
	h.setStatus(w, repl, cache.StatusBypass)
	repl.Set(tierPlaceholder, tierValues[cache.TierNone])
	w = h.forwardedWriter(w, cache.FwdBypass)
	if z, err := h.zoneFor(repl); err == nil {
		z.Stats.Requests[cache.StatusBypass].Add(1)
		z.Stats.Bypassed[reason].Add(1)
	}
	return next.ServeHTTP(w, r)
}

// refresh is the refresh step (the cache buster): it never looks up, and
// stores what the backend answers over the entry.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler, zone *cache.Zone, key string) error {
	recordRefresh(zone, key, byRefresh)
	repl.Set(tierPlaceholder, tierValues[cache.TierNone])
	return h.fetchAndDeliver(w, r, next, fetchJob{zone: zone, key: key, status: cache.StatusBypass, cacheable: true, mark: zone.Mark()})
}

// lookup finds the entry that may answer r under key, and whether it is
// fresh at now, with the zone's Mark from before the look-up (the start of
// whatever the request may store: fetchJob.mark).
func (h *Handler) lookup(zone *cache.Zone, key string, r *http.Request, now time.Time) (lookupResult, *cache.Entry, cache.Mark) {
	result, entry, mark, _ := h.lookupTier(zone, key, r, now)
	return result, entry, mark
}

// lookupTier is lookup, with the local tier that held the entry.
func (h *Handler) lookupTier(zone *cache.Zone, key string, r *http.Request, now time.Time) (lookupResult, *cache.Entry, cache.Mark, cache.Tier) {
	mark := zone.Mark()
	entry, tier := zone.LookupTier(key, r.Header)
	if tier == cache.TierNone {
		return lookupMiss, nil, mark, tier
	}
	if !entry.Fresh(now) {
		return lookupExpired, entry, mark, tier
	}
	return lookupHit, entry, mark, tier
}

// hit delivers a fresh entry. A disk entry whose file was replaced or
// removed since the look-up is looked up once more: a newer version, or
// the backend, answers instead.
func (h *Handler) hit(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler,
	zone *cache.Zone, key string, entry *cache.Entry, now time.Time) error {
	err := h.serveEntryWith(w, r, repl, zone, entry, cache.StatusHit)
	if !errors.Is(err, errEntryGone) {
		return err
	}
	result, entry, mark := h.lookup(zone, key, r, now)
	if result == lookupHit {
		if err := h.serveEntryWith(w, r, repl, zone, entry, cache.StatusHit); !errors.Is(err, errEntryGone) {
			return err
		}
	}
	repl.Set(tierPlaceholder, tierValues[cache.TierNone])
	return h.miss(w, r, next, fetchJob{zone: zone, key: key, mark: mark}, now)
}

// miss fetches the response for job (its zone, key and mark), storing it
// unless min_uses is not reached yet. With the lock on, one request (the
// fill's leader) fetches and the others wait for what it stores; a key
// whose last fill stored nothing goes straight to the backend
// (hit-for-miss: collapse.go).
func (h *Handler) miss(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob, now time.Time) error {
	zone, key := job.zone, job.key
	job.status, job.cacheable = cache.StatusMiss, true
	if h.MinUses > 1 && zone.CountUse(key) < h.MinUses {
		job.cacheable = false
	}
	shared := h.app.sharedFor(zone)
	if !job.cacheable || !h.lock || zone.Uncacheable(key) {
		if shared != nil {
			if e, ok := shared.Get(r.Context(), zone.Name(), key, r.Header); ok && e.Fresh(now) {
				return h.sharedHit(w, r, job, e)
			}
		}
		return h.fetchAndDeliver(w, r, next, job)
	}
	deadline := now.Add(time.Duration(h.LockTimeout))
	fill, leader := zone.JoinFill(key, time.Duration(h.LockAge))
	if !leader {
		return h.waiter(w, r, next, fill, job, deadline)
	}
	// The look-up and the join are two steps: a fill that ended in
	// between has stored its entry (before it ended), and is not fetched
	// again. Its readers finish with the backend, before it commits, so
	// the next requests come in just then.
	if result, entry, _ := h.lookup(zone, key, r, zone.Clock().Now()); result == lookupHit {
		fill.Finish(cache.Awaited{Result: cache.AwaitStored})
		return h.serveEntry(w, r, zone, entry, cache.StatusHit)
	}
	job.fill = fill
	return h.lead(w, r, next, job, deadline)
}

// lead fetches for the leader of a local fill: through the fleet step in
// a zone that takes part in a fleet.
func (h *Handler) lead(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob, deadline time.Time) error {
	if shared := h.app.sharedFor(job.zone); shared != nil {
		return h.fleet(w, r, next, job, shared, deadline)
	}
	return h.fetchAndDeliver(w, r, next, job)
}

// fleet is the fleet step of a local fill leader in a zone that takes
// part in a fleet: the shared tier is looked up, then the fleet's fill
// lock taken (fetch and store), or another proxy's fill waited for, as
// the waiter step waits for a local one (the same loop: awaited). The
// local waiters wait for this request, as always. An entry found stale in
// Redis is kept for the fetch (use_stale, revalidate), as an expired
// local one is.
func (h *Handler) fleet(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	job fetchJob, shared cache.Shared, deadline time.Time) error {
	ctx, zone, clock := r.Context(), job.zone.Name(), job.zone.Clock()
	fresh := func(e *cache.Entry) bool { return e.Fresh(clock.Now()) }
	for {
		if e, ok := shared.Get(ctx, zone, job.key, r.Header); ok {
			if e.Fresh(clock.Now()) {
				return h.sharedHit(w, r, job, e)
			}
			if job.stale == nil {
				job.stale = e
			}
		}
		claim, result := shared.Claim(ctx, zone, job.key, time.Duration(h.LockAge))
		switch result {
		case cache.ClaimTaken:
			job.claim = claim
			return h.fetchAndDeliver(w, r, next, job)
		case cache.ClaimUnavailable:
			return h.fetchAndDeliver(w, r, next, job)
		}
		got := shared.Await(ctx, zone, job.key, r.Header, deadline, fresh)
		if done, err := h.awaited(w, r, next, &job, got, deadline); done {
			return err
		}
		// Abandoned (its lock lapsed, Redis went): look up again, and
		// take the lock.
	}
}

// sharedHit delivers an entry from the shared tier, copied into the local
// tiers first, and ends the request's local fill with it, so that the
// local waiters find it.
func (h *Handler) sharedHit(w http.ResponseWriter, r *http.Request, job fetchJob, e *cache.Entry) error {
	e, stored := job.zone.Adopt(e, job.mark)
	if job.fill != nil {
		end := cache.Awaited{Result: cache.AwaitAbandoned}
		if stored {
			end.Result = cache.AwaitStored
		}
		job.fill.Finish(end)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(tierPlaceholder, tierValues[cache.TierShared])
	return h.serveEntryWith(w, r, repl, job.zone, e, cache.StatusHit)
}

// waiter is the waiter step: it waits for the local fill under way for
// job's key and delivers what it stores: as it is written, once the fill
// has an answer it stores (a streaming miss: the waiter is not held back
// by the fill's own client), else once it is stored. A fill that ends
// without storing wakes all its waiters at once (awaited). After
// lock_timeout a waiter goes to the backend without storing, as nginx
// does: the fill may still be running.
func (h *Handler) waiter(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	fill *cache.Fill, job fetchJob, deadline time.Time) error {
	for {
		got := fill.Wait(r.Context(), deadline)
		if got.Result == cache.AwaitStreaming {
			// Served as a hit, as the entry will be.
			if err := h.serveStream(w, h.collapsed(r), job.zone, got.Stream, cache.StatusHit); !errors.Is(err, errNotStreamed) {
				return err
			}
			got = fill.WaitEnd(r.Context(), deadline)
		}
		if done, err := h.awaited(w, r, next, &job, got, deadline); done {
			return err
		}
		// Abandoned: lead the next fill, or wait for the one who does.
		var leader bool
		if fill, leader = job.zone.JoinFill(job.key, time.Duration(h.LockAge)); leader {
			job.fill = fill
			return h.lead(w, r, next, job, deadline)
		}
	}
}

// awaited answers a request after its wait for a fill, the waiter step's
// (a local fill) or the fleet step's (another proxy's), alike: the entry
// stored, the fill's answer or the backend at once when it stored nothing
// (hit-for-miss: collapse.go), the backend without storing after
// lock_timeout. done is false when the fill was abandoned with time left:
// the caller leads the next one.
func (h *Handler) awaited(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	job *fetchJob, got cache.Awaited, deadline time.Time) (done bool, err error) {
	clock := job.zone.Clock()
	switch got.Result {
	case cache.AwaitStored:
		// Just stored: served as a hit even if already past its validity.
		if got.Entry != nil {
			return true, h.sharedHit(w, r, *job, got.Entry)
		}
		if result, entry, _, tier := h.lookupTier(job.zone, job.key, r, clock.Now()); result != lookupMiss {
			r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set(tierPlaceholder, tierValues[tier])
			return true, h.serveEntry(w, h.collapsed(r), job.zone, entry, cache.StatusHit)
		}
		// Gone since (purged, evicted), or another variant: as abandoned.
	case cache.AwaitUnstored:
		return true, h.unstoredFill(w, r, next, *job, got)
	case cache.AwaitAlone:
		return true, h.fetchAndDeliver(w, r, next, *job)
	case cache.AwaitTimeout:
		job.cacheable = false
		return true, h.fetchAndDeliver(w, r, next, *job)
	}
	if clock.Now().After(deadline) {
		job.cacheable = false
		return true, h.fetchAndDeliver(w, r, next, *job)
	}
	return false, nil
}

// expired answers a request whose entry is stale: from the stale entry
// while another request or a background update refreshes it (UPDATING,
// STALE), else by fetching anew (EXPIRED), falling back to the stale entry
// when the backend fails (STALE). job has the zone, key and mark.
func (h *Handler) expired(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	job fetchJob, stale *cache.Entry, now time.Time) error {
	zone := job.zone
	// Joined even with the lock off: one update per key at a time.
	fill, leader := zone.JoinFill(job.key, time.Duration(h.LockAge))
	job.status, job.cacheable, job.stale = cache.StatusExpired, true, stale
	if !leader {
		waiter := func() error {
			if h.lock {
				return h.waiter(w, r, next, fill, job, now.Add(time.Duration(h.LockTimeout)))
			}
			return h.fetchAndDeliver(w, r, next, job)
		}
		if h.staleAllowed(staleUpdating, stale, now) {
			return h.serveStaleOr(w, r, zone, stale, cache.StatusUpdating, waiter)
		}
		return waiter()
	}
	// As in the miss step: a fill that ended between the look-up and the
	// join has stored a fresh entry, which is not fetched again (under
	// load, a second background update of a key just refreshed).
	if result, entry, _ := h.lookup(zone, job.key, r, zone.Clock().Now()); result == lookupHit {
		fill.Finish(cache.Awaited{Result: cache.AwaitStored})
		return h.serveEntry(w, r, zone, entry, cache.StatusHit)
	}
	job.fill = fill
	if shared := h.app.sharedFor(zone); shared != nil {
		// Another proxy may have refreshed it.
		if e, ok := shared.Get(r.Context(), zone.Name(), job.key, r.Header); ok && e.Fresh(now) && e.StoredAt.After(stale.StoredAt) {
			return h.sharedHit(w, r, job, e)
		}
		// One update for the whole fleet, as for a miss.
		claim, result := shared.Claim(r.Context(), zone.Name(), job.key, time.Duration(h.LockAge))
		switch {
		case result == cache.ClaimTaken:
			job.claim = claim
		case result != cache.ClaimHeld:
		case h.staleAllowed(staleUpdating, stale, now):
			fill.Finish(cache.Awaited{Result: cache.AwaitAbandoned})
			return h.serveStaleOr(w, r, zone, stale, cache.StatusUpdating, func() error {
				job.fill, job.cacheable = nil, false
				return h.fetchAndDeliver(w, r, next, job)
			})
		case h.lock:
			return h.fleet(w, r, next, job, shared, now.Add(time.Duration(h.LockTimeout)))
		}
	}
	// The backend's own stale-while-revalidate (RFC 5861 §3) asks for a
	// background update; use_stale updating does with background_update,
	// or for an entry a soft purge expired (which must not cost its next
	// visitor a wait).
	backendSWR := now.Sub(stale.ValidUntil) < stale.StaleWhileRevalidate
	if (h.backgroundUpdate || backendSWR || stale.SoftPurged) && h.staleAllowed(staleUpdating, stale, now) && !stale.NoCache {
		h.startBackgroundUpdate(r, next, job)
		return h.serveStaleOr(w, r, zone, stale, cache.StatusStale, func() error {
			// The update leads the fill (and holds the fleet's claim):
			// this request waits for it as any other would.
			job.fill, job.claim = nil, nil
			return h.waiter(w, r, next, fill, job, now.Add(time.Duration(h.LockTimeout)))
		})
	}
	return h.fetchAndDeliver(w, r, next, job)
}

// serveStaleOr delivers the stale entry with status. A disk entry whose
// file went (evicted, purged or replaced) since the look-up is no error for
// the client: orElse answers instead, as the hit step falls back to a miss.
func (h *Handler) serveStaleOr(w http.ResponseWriter, r *http.Request, zone *cache.Zone, stale *cache.Entry,
	status cache.Status, orElse func() error) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if err := h.serveEntryWith(w, r, repl, zone, stale, status); !errors.Is(err, errEntryGone) {
		return err
	}
	return orElse()
}

// startBackgroundUpdate fetches and stores a fresh copy after the client
// has its answer. Caddy cancels the request's context once the response is
// written, so the update runs on a detached context with its own timeout,
// and on its own copy of the request (backgroundRequest).
func (h *Handler) startBackgroundUpdate(r *http.Request, next caddyhttp.Handler, job fetchJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Duration(h.BackgroundTimeout))
	br := backgroundRequest(ctx, r)
	job.zone.Stats.BackgroundUpdates.Add(1)
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				h.logger.Error("background update panicked", zap.String("key", job.key), zap.Any("panic", p))
			}
		}()
		// No client: nothing is delivered, and nothing counted as served.
		if _, _, err := h.fetch(discardWriter{header: make(http.Header)}, br, next, job); err != nil {
			h.logger.Warn("background update failed", zap.String("key", job.key), zap.Error(err))
		}
	}()
}

// fetchAndDeliver is the fetch step for a client, then the deliver step.
// A fetch whose answer was cut short (the client gone before the whole
// body, the backend broken mid-body) panics with http.ErrAbortHandler
// past the deliver step: the request is counted with its status all the
// same, as nginx logs it.
func (h *Handler) fetchAndDeliver(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob) error {
	fetched := false
	defer func() {
		if !fetched {
			job.zone.CountRequest(job.status, job.key)
		}
	}()
	result, entry, err := h.fetch(w, r, next, job)
	fetched = true
	return h.deliver(w, r, job, result, entry, err)
}

// deliver is the deliver step: the backend's answer has reached the client
// as it streamed, unless the fetch ended in a stale or revalidated entry,
// delivered here instead.
func (h *Handler) deliver(w http.ResponseWriter, r *http.Request, job fetchJob, result outcome, entry *cache.Entry, err error) error {
	switch result {
	case outcomeRevalidated:
		if job.stale.NoCache {
			// no-cache: validated on every use, and a 304 makes it a hit.
			return h.serveEntry(w, r, job.zone, entry, cache.StatusHit)
		}
		return h.serveEntry(w, r, job.zone, entry, cache.StatusRevalidated)
	case outcomeStale:
		return h.serveEntry(w, r, job.zone, job.stale, cache.StatusStale)
	case outcomeFailed:
		if repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); !h.statusSet(repl) {
			// The backend gave no answer: the error page that follows
			// carries the status, and so does the access log, as nginx's
			// 502 does (MISS, or BYPASS on the cache buster).
			h.setStatus(w, repl, job.status)
		}
	}
	job.zone.CountRequest(job.status, job.key)
	return err
}

// maintenance is the maintenance step: it answers from the cache, fresh
// or stale, and shows the maintenance page for anything that would reach a
// backend (a maintenance handler with serve_cached is in charge).
func (h *Handler) maintenance(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, gate *maintenance.Gate) error {
	if h.Refresh || h.bypass(r) != cache.BypassNone {
		return gate.ServePage(w, r)
	}
	zone, err := h.zoneFor(repl)
	if err != nil {
		undefinedZones.seen(h.logger, err)
		return gate.ServePage(w, r)
	}
	key, now := h.CacheKey(r, repl), zone.Clock().Now()
	result, entry, mark := h.lookup(zone, key, r, now)
	if shared := h.app.sharedFor(zone); result == lookupMiss && shared != nil {
		if e, ok := shared.Get(r.Context(), zone.Name(), key, r.Header); ok {
			entry, _ = zone.Adopt(e, mark)
			result = lookupExpired
			if entry.Fresh(now) {
				result = lookupHit
			}
			repl.Set(tierPlaceholder, tierValues[cache.TierShared])
		}
	}
	switch result {
	case lookupHit:
		gate.Claim()
		return h.serveEntry(w, r, zone, entry, cache.StatusHit)
	case lookupExpired:
		gate.Claim()
		return h.serveEntry(w, r, zone, entry, cache.StatusStale)
	}
	return gate.ServePage(w, r)
}
