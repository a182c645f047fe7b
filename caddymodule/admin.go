package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves purge and key listing on Caddy's admin endpoint, which
// listens on localhost (or a socket) only: nothing of it is reachable from
// the public listener.
//
//	POST /edge_cache/purge  {"zone": "<name or empty for every zone>", "key": "..." | "prefix": "..." | "all": true}
//	                        -> {"purged": <n>, "shared": <values removed from Redis, in a fleet>}
//	GET  /edge_cache/keys?zone=<name>&prefix=<p>&after=<key>&limit=<n>
//	                        -> {"keys": [...], "next": "<key to pass as after, empty at the end>"}
//	POST /edge_cache/drain  {"draining": true|false} -> the health state (health.go)
//	GET  /edge_cache/drain  -> the health state
//	GET  /edge_cache/fleet  -> {"members": [{"node", "version", "zones", "last_event", "behind", "seen"}...]}
//
// Keys, prefixes and cursors are in their text form (keytext.go): as they
// are, or Go-quoted when they are not printable UTF-8 text.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.edge_cache",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/edge_cache/purge", Handler: caddy.AdminHandlerFunc(a.handlePurge)},
		{Pattern: "/edge_cache/keys", Handler: caddy.AdminHandlerFunc(a.handleKeys)},
		{Pattern: adminDrainPath, Handler: caddy.AdminHandlerFunc(a.handleDrain)},
		{Pattern: adminFleetPath, Handler: caddy.AdminHandlerFunc(a.handleFleet)},
	}
}

const maxKeysPage = 10000

func (adminAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use POST")
	}
	var req purgeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		return adminError(http.StatusBadRequest, "bad purge request: %v", err)
	}
	var err error
	if req.Key, err = parseKeyText(req.Key); err != nil {
		return adminError(http.StatusBadRequest, "key: %v", err)
	}
	if req.Prefix, err = parseKeyText(req.Prefix); err != nil {
		return adminError(http.StatusBadRequest, "prefix: %v", err)
	}
	kinds := 0
	for _, set := range []bool{req.Key != "", req.Prefix != "", req.All} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return adminError(http.StatusBadRequest, "a purge names exactly one of key, prefix (both non-empty) or all")
	}
	zones, err := zonesNamed(req.Zone)
	if err != nil {
		return err
	}
	// Redis first: a miss here or on another proxy after the local purge
	// must not find the purged entry in the shared tier. Its failure does
	// not keep this proxy's entries.
	shared, fleetErr := runningApp().publishPurge(r.Context(), req)
	purged := 0
	for _, z := range zones {
		var n int
		var err error
		switch {
		case req.Key != "":
			if z.Purge(req.Key) {
				n = 1
			}
		case req.Prefix != "":
			n, err = z.PurgePrefix(req.Prefix)
		default:
			n, err = z.PurgeAll()
		}
		if errors.Is(err, cache.ErrIndexLoading) {
			return adminError(http.StatusServiceUnavailable, "zone %s: %v", z.Name(), err)
		}
		if err != nil {
			return adminError(http.StatusInternalServerError, "zone %s: %v", z.Name(), err)
		}
		recordPurge(z, purgeKind(req), req.Key+req.Prefix, n, requester(r))
		purged += n
	}
	if fleetErr != nil {
		return adminError(http.StatusServiceUnavailable, "purged %d entries on this proxy, but not from the fleet (Redis and the other proxies): %v; purge again once Redis answers", purged, fleetErr)
	}
	return writeJSON(w, purgeResponse{Purged: purged, Shared: shared})
}

func (adminAPI) handleKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	q := r.URL.Query()
	if q.Get("zone") == "" {
		return adminError(http.StatusBadRequest, "name a zone: ?zone=<name>")
	}
	zones, err := zonesNamed(q.Get("zone"))
	if err != nil {
		return err
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxKeysPage {
			return adminError(http.StatusBadRequest, "limit: want a number from 1 to %d, not %q", maxKeysPage, v)
		}
	}
	prefix, err := parseKeyText(q.Get("prefix"))
	if err != nil {
		return adminError(http.StatusBadRequest, "prefix: %v", err)
	}
	after, err := parseKeyText(q.Get("after"))
	if err != nil {
		return adminError(http.StatusBadRequest, "after: %v", err)
	}
	keys, more, err := zones[0].Keys(prefix, after, limit)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "%v", err)
	}
	next := ""
	if more && len(keys) > 0 {
		next = keyText(keys[len(keys)-1])
	}
	for i, k := range keys {
		keys[i] = keyText(k)
	}
	if keys == nil {
		keys = []string{}
	}
	return writeJSON(w, keysResponse{Keys: keys, Next: next})
}

// zonesNamed returns the named zone of the running config, or every zone
// when name is empty.
func zonesNamed(name string) ([]*cache.Zone, error) {
	app := runningApp()
	if app == nil {
		return nil, adminError(http.StatusNotFound, "no edge_cache app in the running config")
	}
	if name == "" {
		zones := make([]*cache.Zone, 0, len(app.zones))
		for _, n := range app.ZoneNames() {
			zones = append(zones, app.zones[n])
		}
		return zones, nil
	}
	z := app.Zone(name)
	if z == nil {
		return nil, adminError(http.StatusBadRequest, "unknown zone %q", name)
	}
	return []*cache.Zone{z}, nil
}

// runningApp is the edge_cache app of the running config, or nil.
func runningApp() *App {
	appIface, err := caddy.ActiveContext().AppIfConfigured("edge_cache")
	if err != nil || appIface == nil {
		return nil
	}
	return appIface.(*App)
}

func adminError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
