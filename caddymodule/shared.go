package caddymodule

import (
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/fleet"
)

// tierPlaceholder names the tier a hit came from: memory, disk or shared
// (empty on a miss), for access logs.
const tierPlaceholder = "http.edge_cache.tier"

// tierValues are the placeholder's values, boxed once: Replacer.Set takes
// an any, and a hit must not allocate for it.
var tierValues = func() (v [cache.TierShared + 1]any) {
	for t := range v {
		v[t] = cache.Tier(t).String()
	}
	return v
}()

// storeShared hands what a fetch stored (e; nil: nothing, and the other
// proxies' waiters hear unstored) to the zone's
// shared tier, which writes it in the background and then releases the
// job's fleet lock. Redis keeps it for the zone's inactive time, or its
// validity and stale window, whichever is longer (fleet.TTL). A purge, or
// an invalidation of its key, since the request began voids the write.
func (h *Handler) storeShared(job fetchJob, e *cache.Entry, unstored cache.Awaited) {
	if e == nil && job.claim == nil {
		return
	}
	shared := h.app.sharedFor(job.zone)
	if shared == nil {
		return
	}
	st := cache.SharedStore{Zone: job.zone.Name(), Key: job.key, Claim: job.claim, Unstored: unstored}
	if e != nil {
		st.Entry = e
		st.TTL = fleet.TTL(e, job.zone.Clock().Now(), h.app.inactive(job.zone.Name()))
		zone, mark := job.zone, job.mark
		st.Current = func() bool { return zone.Kept(e, mark) }
	}
	if h.Refresh && e != nil {
		// The cache buster: once the new entry is in Redis (or known not
		// to be), the other proxies drop their copies (fleetevents.go).
		st.Claim = refreshAnnouncer{inner: st.Claim, fleet: h.app.fleet, zone: job.zone.Name(), key: job.key}
	}
	shared.Store(st)
}

// inactive is how long the zone keeps an entry nobody reads: its
// inactive setting, or nginx's 10 minutes for a memory-only zone.
func (a *App) inactive(zone string) time.Duration {
	if zc := a.Zones[zone]; zc != nil && zc.Inactive > 0 {
		return time.Duration(zc.Inactive)
	}
	return time.Duration(DefaultInactive)
}
