package caddymodule

import (
	"context"
	"errors"
	"net/http"

	"github.com/edgecache/edgecache/cache"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// purge runs a purge on this proxy's zones and, in a fleet, on Redis and
// the other proxies (through the event log): the admin API's and the
// edge_cache_purge handler's. Keys and prefixes are in their text form.
// Its errors are caddy.APIErrors carrying the HTTP status.
func purge(ctx context.Context, req adminapi.PurgeRequest, by string) (adminapi.PurgeResponse, error) {
	var err error
	if req.Key, err = adminapi.ParseKeyText(req.Key); err != nil {
		return adminapi.PurgeResponse{}, adminError(http.StatusBadRequest, "key: %v", err)
	}
	if req.Prefix, err = adminapi.ParseKeyText(req.Prefix); err != nil {
		return adminapi.PurgeResponse{}, adminError(http.StatusBadRequest, "prefix: %v", err)
	}
	for _, t := range req.Tags {
		if err := cache.CheckTag(t); err != nil {
			return adminapi.PurgeResponse{}, adminError(http.StatusBadRequest, "tags: %v", err)
		}
	}
	kinds := 0
	for _, set := range []bool{req.Key != "", req.Prefix != "", len(req.Tags) > 0, req.All} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return adminapi.PurgeResponse{}, adminError(http.StatusBadRequest, "a purge names exactly one of key, prefix (both non-empty), tags (a non-empty list) or all")
	}
	zones, err := zonesNamed(req.Zone)
	if err != nil {
		return adminapi.PurgeResponse{}, err
	}
	// Redis first: a miss here or on another proxy after the local purge
	// must not find the purged entry in the shared tier. Its failure does
	// not keep this proxy's entries.
	shared, fleetErr := runningApp().publishPurge(ctx, req)
	n := 0
	for _, z := range zones {
		c, err := purgeZone(z, req)
		if errors.Is(err, cache.ErrIndexLoading) {
			return adminapi.PurgeResponse{}, adminError(http.StatusServiceUnavailable, "zone %s: %v", z.Name(), err)
		}
		if err != nil {
			return adminapi.PurgeResponse{}, adminError(http.StatusInternalServerError, "zone %s: %v", z.Name(), err)
		}
		recordPurge(z, purgeKind(req), purgeTarget(req), c, by)
		n += c
	}
	resp := adminapi.PurgeResponse{Purged: n, Shared: shared}
	what := "purged"
	if req.Soft {
		resp.Purged, resp.Marked, what = 0, &n, "marked"
	}
	if fleetErr != nil {
		return resp, adminError(http.StatusServiceUnavailable, "%s %d entries on this proxy, but not in the fleet (Redis and the other proxies): %v; purge again once Redis answers", what, n, fleetErr)
	}
	return resp, nil
}

// purgeZone runs req's purge, or soft purge, on one zone.
func purgeZone(z *cache.Zone, req adminapi.PurgeRequest) (int, error) {
	switch {
	case req.Key != "" && req.Soft:
		return z.SoftPurge(req.Key), nil
	case req.Key != "":
		if z.Purge(req.Key) {
			return 1, nil
		}
		return 0, nil
	case req.Prefix != "" && req.Soft:
		return z.SoftPurgePrefix(req.Prefix)
	case req.Prefix != "":
		return z.PurgePrefix(req.Prefix)
	case len(req.Tags) > 0 && req.Soft:
		return z.SoftPurgeTags(req.Tags)
	case len(req.Tags) > 0:
		return z.PurgeTags(req.Tags)
	case req.Soft:
		return z.SoftPurgeAll()
	}
	return z.PurgeAll()
}
