package maintenance

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("maintenance", parseCaddyfile)
	// After the variables (map, vars) and request rewriting, before the
	// routing directives (handle, route) and every handler that responds,
	// so that a top-level maintenance also covers handle blocks, and before
	// edge_cache, which is ordered later (before reverse_proxy).
	httpcaddyfile.RegisterDirectiveOrder("maintenance", httpcaddyfile.After, "request_header")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	maintenance [<matcher>] {
//	    flag         <file>       # required: maintenance is on while this file exists
//	    page         <file>       # the HTML page; default a built-in page
//	    status       <code>       # 200 to 599; default 503
//	    retry_after  <duration>   # sent in seconds in Retry-After; default 5m
//	    serve_cached              # cached responses are still served
//	}
//
// While the flag file exists, matching requests get the page (an HTML file;
// a built-in page if it cannot be read) with the status (default 503) and
// a Retry-After header (default 5m, sent in seconds). With serve_cached,
// responses that an edge_cache handler has in its cache are still served;
// only requests that would reach a backend get the page.
func (m *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "flag":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.FlagFile = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			// The flag is looked for once a second; in a folder that does
			// not exist, nobody will ever create it.
			if dir := filepath.Dir(m.FlagFile); !strings.Contains(m.FlagFile, "{") {
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					return d.Errf("maintenance: flag %s: folder %s does not exist", m.FlagFile, dir)
				}
			}
		case "page":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.PageFile = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "status":
			if !d.NextArg() {
				return d.ArgErr()
			}
			code, err := strconv.Atoi(d.Val())
			if err != nil {
				return d.Errf("bad status code %q: %v", d.Val(), err)
			}
			if code < 200 || code > 599 {
				return d.Errf("status code %d is not between 200 and 599", code)
			}
			m.StatusCode = code
			if d.NextArg() {
				return d.ArgErr()
			}
		case "retry_after":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("bad retry_after duration %q: %v", d.Val(), err)
			}
			if dur < 0 {
				return d.Errf("retry_after %q is negative", d.Val())
			}
			m.RetryAfter = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		case "serve_cached":
			if d.NextArg() {
				return d.ArgErr()
			}
			m.ServeCached = true
		default:
			return d.Errf("unrecognized maintenance option %q", d.Val())
		}
	}
	if m.FlagFile == "" {
		return d.Err("maintenance needs a flag file: flag <file>")
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
