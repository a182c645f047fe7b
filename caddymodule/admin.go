package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves purge, key listing, drain and the fleet view on Caddy's
// admin endpoint, which listens on localhost (or a socket) only: nothing
// of it is reachable from the public listener. The routes, their bodies
// and the text form of keys are package adminapi's (its doc lists them);
// the import's are in admin_import.go.
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
		{Pattern: adminapi.PurgePath, Handler: caddy.AdminHandlerFunc(a.handlePurge)},
		{Pattern: adminapi.KeysPath, Handler: caddy.AdminHandlerFunc(a.handleKeys)},
		{Pattern: adminapi.DrainPath, Handler: caddy.AdminHandlerFunc(a.handleDrain)},
		{Pattern: adminapi.FleetPath, Handler: caddy.AdminHandlerFunc(a.handleFleet)},
	}
}

func (adminAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use POST")
	}
	var req adminapi.PurgeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		return adminError(http.StatusBadRequest, "bad purge request: %v", err)
	}
	resp, err := purge(r.Context(), req, requester(r))
	if err != nil {
		return err
	}
	return writeJSON(w, resp)
}

func (adminAPI) handleKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	q, err := adminapi.ParseKeysRequest(r.URL.Query())
	if err != nil {
		return adminError(http.StatusBadRequest, "%v", err)
	}
	zones, err := zonesNamed(q.Zone)
	if err != nil {
		return err
	}
	prefix, err := adminapi.ParseKeyText(q.Prefix)
	if err != nil {
		return adminError(http.StatusBadRequest, "prefix: %v", err)
	}
	after, err := adminapi.ParseKeyText(q.After)
	if err != nil {
		return adminError(http.StatusBadRequest, "after: %v", err)
	}
	var keys []string
	var more bool
	if q.Tag != "" {
		keys, more, err = taggedPage(zones, q.Tag, prefix, after, q.Limit)
	} else {
		keys, more, err = zones[0].Keys(prefix, after, q.Limit)
	}
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "%v", err)
	}
	next := ""
	if more && len(keys) > 0 {
		next = adminapi.KeyText(keys[len(keys)-1])
	}
	for i, k := range keys {
		keys[i] = adminapi.KeyText(k)
	}
	if keys == nil {
		keys = []string{}
	}
	return writeJSON(w, adminapi.KeysResponse{Keys: keys, Next: next})
}

// taggedPage is a page of the keys of the zones' entries that carry tag,
// in order: a tag names few entries, so the list is made whole and cut.
func taggedPage(zones []*cache.Zone, tag, prefix, after string, limit int) ([]string, bool, error) {
	var all []string
	for _, z := range zones {
		keys, err := z.Tagged(tag)
		if err != nil {
			return nil, false, fmt.Errorf("zone %s: %v", z.Name(), err)
		}
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) && (after == "" || k > after) {
				all = append(all, k)
			}
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
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
