package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/maintenance"
)

func init() {
	caddy.RegisterModule(Health{})
	httpcaddyfile.RegisterHandlerDirective("edge_cache_health", parseCaddyfileHealth)
	// Before a top-level maintenance handler, whose page would otherwise
	// answer the load balancer's check (with a 503 too, but not saying
	// why). Only standard directives can be named here: maintenance is
	// ordered right after request_header too, by its package, which this
	// one imports (so its init ran first); inserting after request_header
	// now lands just before it.
	httpcaddyfile.RegisterDirectiveOrder("edge_cache_health", httpcaddyfile.After, "request_header")
}

// Health answers a load balancer's health check for this proxy: 200 while
// it can serve, 503 while it is draining for a restart (edgecache drain)
// or while maintenance is on for it (a maintenance handler of the running
// config has its flag file). The body says which, as JSON
// (adminapi.HealthState):
//
//	{"status": "ok" | "draining" | "maintenance", "node": "...", "draining": false, "maintenance": ["/flag/file"],
//	 "shared": "up" | "down" (in a fleet: whether Redis answers)}
//
// A Redis that is down does not make a proxy unhealthy: it still serves
// from its own tiers and the backend. The handler answers every method
// and never passes the request on; it is meant for a private port or
// path, e.g.
//
//	:8081 {
//	    bind 10.0.0.5
//	    edge_cache_health
//	}
type Health struct{}

// draining is set by the admin API (adminapi.DrainPath) until unset or
// the process ends: a drain is for one restart, and the restarted process
// starts healthy. It outlives config reloads.
var draining atomic.Bool

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_cache_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// currentHealth is this proxy's state now.
func currentHealth() adminapi.HealthState {
	s := adminapi.HealthState{Status: adminapi.HealthOK, Draining: draining.Load(), Maintenance: maintenance.ActiveFlags()}
	if s.Maintenance == nil {
		s.Maintenance = []string{}
	}
	switch {
	case s.Draining:
		s.Status = adminapi.HealthDraining
	case len(s.Maintenance) > 0:
		s.Status = adminapi.HealthMaintenance
	}
	s.Node = nodeName()
	if app := runningApp(); app != nil && app.fleet != nil {
		s.Shared = "down"
		if app.fleet.Up() {
			s.Shared = "up"
		}
	}
	return s
}

// nodeName is this proxy's name: the fleet's node name when the running
// config has a shared tier, else the host name.
func nodeName() string {
	if app := runningApp(); app != nil && app.fleet != nil {
		return app.fleet.Node()
	}
	name, _ := os.Hostname()
	return name
}

// logDrain says when draining starts or stops, once per change.
func logDrain(on bool) {
	log := caddy.Log().Named("edge_cache.health")
	if on {
		log.Info("draining: the health check answers 503 until edgecache drain --off or a restart")
	} else {
		log.Info("draining ended: the health check answers as before")
	}
}

// ServeHTTP answers the check; it never calls next.
func (Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	s := currentHealth()
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	code := http.StatusOK
	if s.Status != adminapi.HealthOK {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_cache_health [<matcher>]
//
// It takes no options: the state comes from `edgecache drain` and from the
// maintenance handlers' flag files.
func (*Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("edge_cache_health takes no options, got %q", d.Val())
	}
	return nil
}

func parseCaddyfileHealth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hh := new(Health)
	if err := hh.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return hh, nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
	_ caddyfile.Unmarshaler       = (*Health)(nil)
)
