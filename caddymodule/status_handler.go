package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(StatusPage{})
	httpcaddyfile.RegisterHandlerDirective("edge_cache_status", parseCaddyfileStatusPage)
	httpcaddyfile.RegisterDirectiveOrder("edge_cache_status", httpcaddyfile.After, "request_header")
}

// StatusPage serves the status page (admin_status.go) to browsers, on a
// site of its own: a request whose path ends in status.json gets the
// status as JSON (adminapi.Status), any other the page, which polls
// status.json beside it. Caddy's admin endpoint serves the same, but
// refuses a browser's typed URL. The page tells what the proxy does to
// whoever reaches it: bind its site to localhost and reach it over SSH,
// as the admin endpoint, e.g.
//
//	http://localhost:2020 {
//	    bind 127.0.0.1
//	    edge_cache_status
//	}
type StatusPage struct{}

// CaddyModule returns the Caddy module information.
func (StatusPage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_cache_status",
		New: func() caddy.Module { return new(StatusPage) },
	}
}

// ServeHTTP serves the page or status.json; it never calls next.
func (StatusPage) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	var err error
	if strings.HasSuffix(r.URL.Path, "status.json") {
		err = serveStatusJSON(w, r)
	} else {
		err = servePage(w, r)
	}
	if ae, ok := err.(caddy.APIError); ok {
		return caddyhttp.Error(ae.HTTPStatus, ae.Err)
	}
	return err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_cache_status [<matcher>]
//
// It takes no options.
func (*StatusPage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("edge_cache_status takes no options, got %q", d.Val())
	}
	return nil
}

func parseCaddyfileStatusPage(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(StatusPage)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return s, nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*StatusPage)(nil)
	_ caddyfile.Unmarshaler       = (*StatusPage)(nil)
)
