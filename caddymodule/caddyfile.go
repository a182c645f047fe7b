package caddymodule

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/fleet"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("edge_cache", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("edge_cache", parseCaddyfileHandler)
	// Before reverse_proxy, so a plain edge_cache + reverse_proxy site needs
	// no order line; after the directives that set variables (map, vars),
	// which the zone and key templates may use.
	httpcaddyfile.RegisterDirectiveOrder("edge_cache", httpcaddyfile.Before, "reverse_proxy")
}

// parseGlobalOption sets up the edge_cache app from the global options.
// Zones are defined once here and shared by every site, as nginx's
// proxy_cache_path. Syntax:
//
//	{
//	    edge_cache {
//	        zone <name> [<memory size>]   # a zone with defaults, or of that memory size
//	        zone <name> {
//	            memory           <size>   # hot tier (ristretto) in all; default 256MiB
//	            memory_entry_max <size>   # largest body kept in memory; default memory/16, at most 64MiB
//	            path             <dir>    # disk tier folder (persistent); none: memory only
//	            max_size         <size>   # disk tier bound, least recently used first; default unlimited
//	            inactive         <dur>    # remove disk entries unread this long; default 10m
//	            levels           <n>[:<n>[:<n>]]   # subfolder levels of 1 or 2 characters, as nginx's; default 1:2
//	            verify           once|always       # check disk bodies' checksums on an open file's first read, then send with sendfile; or on every read; default once
//	            open_files       <n>|off  # disk entry files kept open with their parsed headers, as nginx's open_file_cache max=; default 512
//	            shared           on|off   # off: kept out of the fleet's shared tier; default on
//	        }
//	        shared {                      # join a fleet of proxies sharing one cache through Redis
//	            redis     <host:port>...  # one address: a single node; several: Redis Cluster seeds
//	            username  <name>          # Redis ACL user, e.g. {env.EDGECACHE_REDIS_USER}
//	            password  <secret>        # e.g. {env.EDGECACHE_REDIS_PASSWORD}
//	            tls       on|off          # default off
//	            prefix    <text>          # every key in Redis starts with it; default edgecache:
//	            timeout   <dur>           # bound on each Redis call; slower counts as a miss; default 100ms
//	            entry_max <size>          # larger bodies stay in this proxy's tiers; default 8MiB
//	            node      <name>          # this proxy's name in logs, metrics and the fleet; default the host name
//	            event_retention <dur>     # how long the log of purges and invalidations keeps an event; default 1h
//	        }
//	    }
//	}
//
// Sizes are as 512MiB or 40GiB, durations as 10m or 180d. max_size,
// inactive, levels, verify and open_files need a path. Entries get three quarters of memory;
// the rest is the garbage collector's headroom (see memlimit.go).
// Caddyfile blocks cannot be written on one line: `zone a { memory 1GiB }`
// is a syntax error; use the shorthand or one option per line.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		if err := json.Unmarshal(existing.(httpcaddyfile.App).Value, app); err != nil {
			return nil, err
		}
	}
	if app.Zones == nil {
		app.Zones = make(map[string]*ZoneConfig)
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "zone":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			name := d.Val()
			if _, dup := app.Zones[name]; dup {
				return nil, d.Errf("zone %s is defined twice", name)
			}
			zc := new(ZoneConfig)
			if d.NextArg() { // shorthand: zone <name> <memory>
				d.Prev()
				n, err := parseSize(d)
				if err != nil {
					return nil, err
				}
				zc.Memory = n
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "memory":
					if err := sizeArg(d, &zc.Memory); err != nil {
						return nil, err
					}
				case "memory_entry_max":
					if err := sizeArg(d, &zc.MemoryEntryMax); err != nil {
						return nil, err
					}
				case "path":
					if err := oneArg(d, &zc.Path); err != nil {
						return nil, err
					}
				case "max_size":
					if err := sizeArg(d, &zc.MaxSize); err != nil {
						return nil, err
					}
				case "inactive":
					if err := durationArg(d, &zc.Inactive); err != nil {
						return nil, err
					}
				case "verify":
					if err := oneArg(d, &zc.Verify); err != nil {
						return nil, err
					}
				case "open_files":
					var v string
					if err := oneArg(d, &v); err != nil {
						return nil, err
					}
					if v == "off" {
						zc.OpenFiles = -1
						break
					}
					n, err := strconv.Atoi(v)
					if err != nil || n < 1 {
						return nil, d.Errf("open_files: want a whole number of at least 1, or off, not %q", v)
					}
					zc.OpenFiles = n
				case "shared":
					on, err := onOffArg(d)
					if err != nil {
						return nil, err
					}
					zc.Shared = &on
				case "levels":
					var v string
					if err := oneArg(d, &v); err != nil {
						return nil, err
					}
					zc.Levels = nil
					for part := range strings.SplitSeq(v, ":") {
						l, err := strconv.Atoi(part)
						if err != nil {
							return nil, d.Errf("levels: bad value %q: want levels such as 1:2", v)
						}
						zc.Levels = append(zc.Levels, l)
					}
				default:
					return nil, d.Errf("unrecognized zone option %q", d.Val())
				}
			}
			if err := zc.validate(name); err != nil {
				return nil, d.Err(err.Error())
			}
			app.Zones[name] = zc
		case "shared":
			if app.Shared != nil {
				return nil, d.Err("shared is defined twice")
			}
			sc, err := parseShared(d)
			if err != nil {
				return nil, err
			}
			app.Shared = sc
		default:
			return nil, d.Errf("unrecognized edge_cache option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "edge_cache", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseShared reads the shared block (see parseGlobalOption), checking
// what can be checked before placeholders are resolved.
func parseShared(d *caddyfile.Dispenser) (*SharedConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	line := d.Line()
	sc := new(SharedConfig)
	for d.NextBlock(1) {
		switch d.Val() {
		case "redis":
			addrs := d.RemainingArgs()
			if len(addrs) == 0 {
				return nil, d.ArgErr()
			}
			for _, a := range addrs {
				if !strings.Contains(a, "{") {
					if err := (fleet.Config{Addrs: []string{a}, Node: "-"}).Validate(); err != nil {
						return nil, d.Errf("redis: %v", err)
					}
				}
			}
			sc.Redis = append(sc.Redis, addrs...)
		case "username":
			if err := oneArg(d, &sc.Username); err != nil {
				return nil, err
			}
		case "password":
			if err := oneArg(d, &sc.Password); err != nil {
				return nil, err
			}
		case "tls":
			on, err := onOffArg(d)
			if err != nil {
				return nil, err
			}
			sc.TLS = on
		case "prefix":
			if err := oneArg(d, &sc.Prefix); err != nil {
				return nil, err
			}
			if err := fleet.CheckPrefix(sc.Prefix); err != nil && !strings.Contains(sc.Prefix, "{env.") {
				return nil, d.Errf("prefix %q: %v", sc.Prefix, err)
			}
		case "timeout":
			if err := durationArg(d, &sc.Timeout); err != nil {
				return nil, err
			}
			if sc.Timeout == 0 {
				return nil, d.Errf("timeout: want a positive duration such as 100ms")
			}
		case "entry_max":
			if err := sizeArg(d, &sc.EntryMax); err != nil {
				return nil, err
			}
		case "node":
			if err := oneArg(d, &sc.Node); err != nil {
				return nil, err
			}
		case "event_retention":
			if err := durationArg(d, &sc.EventRetention); err != nil {
				return nil, err
			}
			if sc.EventRetention <= 0 {
				return nil, d.Errf("event_retention: want a positive duration such as 1h")
			}
		default:
			return nil, d.Errf("unrecognized shared option %q", d.Val())
		}
	}
	if len(sc.Redis) == 0 {
		return nil, d.SyntaxErr(fmt.Sprintf("a redis address in the shared block of line %d", line))
	}
	if sc.Username != "" && sc.Password == "" {
		return nil, d.Errf("shared (line %d): a username needs a password", line)
	}
	return sc, nil
}

// sizeArg reads one size argument into dst.
func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	n, err := parseSize(d)
	if err == nil {
		*dst = n
	}
	return err
}

// parseSize reads one size argument such as 256MiB or 1GB.
func parseSize(d *caddyfile.Dispenser) (int64, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	v := d.Val()
	if num, unit, ok := nginxSize(v); ok {
		// nginx's 512m is 512 MiB, but 512M here would be 512 MB: a
		// migrating operator would get a smaller zone than before.
		return 0, d.Errf("bad size %q: nginx's %s%s is %s%siB here; write %s%siB (or %s%sB for powers of ten)",
			v, num, unit, num, strings.ToUpper(unit), num, strings.ToUpper(unit), num, strings.ToUpper(unit))
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, d.Errf("bad size %q: want a positive size such as 256MiB or 10GB", v)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return int64(n), nil
}

// nginxSize reports whether v is written as nginx writes sizes (512m,
// 10g, 64k: binary units), returning the number and the unit.
func nginxSize(v string) (num, unit string, ok bool) {
	if len(v) < 2 {
		return "", "", false
	}
	num, unit = v[:len(v)-1], v[len(v)-1:]
	if !strings.Contains("kKmMgG", unit) {
		return "", "", false
	}
	for _, c := range num {
		if (c < '0' || c > '9') && c != '.' {
			return "", "", false
		}
	}
	return num, unit, num != ""
}

func parseCaddyfileHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	// A zone named outright must be defined in the global options: say so
	// here, where the error can carry the line.
	zone := handler.Zone
	if zone == "" {
		zone = "default"
	}
	if defined := globalZones(h); !strings.Contains(zone, "{") && !slices.Contains(defined, zone) {
		h.Dispenser.Reset()
		h.Dispenser.Next()
		// The suggestion is itself valid Caddyfile: blocks cannot be
		// written on one line.
		return nil, h.Errf("zone %q is not defined (defined: %s); define it in the global options:\n{\n\tedge_cache {\n\t\tzone %s 256MiB\n\t}\n}",
			zone, zoneList(defined), zone)
	}
	return handler, nil
}

// globalZones lists the zones the global options define, in order.
func globalZones(h httpcaddyfile.Helper) []string {
	opt, ok := h.Option("edge_cache").(httpcaddyfile.App)
	if !ok {
		return nil
	}
	var app App
	if err := json.Unmarshal(opt.Value, &app); err != nil {
		return nil
	}
	return app.zoneNames()
}

// zoneList names zones for an error message.
func zoneList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_cache [<matcher>] [<zone>]
//	edge_cache [<matcher>] {
//	    zone <name>                       # default "default"; placeholders allowed ({cache_zone} from map)
//	    key <template>                    # default {http.request.uri}; placeholders allowed
//	    strip_query <param>...            # dropped from the key (production: _)
//	    valid [<status>...|any] <dur>     # as proxy_cache_valid; repeatable; a bare duration means 200 301 302
//	    ignore_headers <name>...          # of Cache-Control Expires Set-Cookie Vary X-Accel-Expires
//	    methods GET [HEAD]                # default GET HEAD; HEAD shares the GET entry
//	    invalidate_unsafe on|off          # an unsafe method answered 2xx/3xx drops its URL (RFC 9111 §4.4);
//	                                      # default on; off for a site read-only to its visitors (as nginx)
//	    lock on|off                       # default on: one backend request per missing key
//	    lock_age <dur>                    # default 5s: then one more request may go to the backend
//	    lock_timeout <dur>                # default 5s: then a waiter fetches for itself, storing nothing
//	    uncacheable_ttl <dur>|off         # default 10s: a key whose fill stored nothing sends its requests
//	                                      # straight to the backend that long (hit-for-miss; at most the answer's
//	                                      # own freshness); the fill's waiters share its 5xx or go together
//	    min_uses <n>                      # store from the n-th request of a key on; default 1
//	    refresh                           # the cache buster: never look up, fetch and overwrite
//	    private_cookies <name>...         # login-session cookies: such requests bypass the cache
//	    hide_headers <name>...            # proxy_hide_header: removed from every response through the handler
//	    tags {                            # tag stored responses, for purges by tag:
//	        path   <regexp> <template>... #   on the request path; $1..$9 are the captures
//	        query  <param> <prefix> [<re>] #  one tag <prefix><value> per value of the parameter (on paths re matches)
//	        header <response header>      #   space-separated tags the backend lists (e.g. Surrogate-Key),
//	    }                                 #   removed before any client sees it
//	    status_header <name>|off          # default X-Cache-Status
//	    cache_status_header on|off        # RFC 9211 Cache-Status (member "edgecache"); default off
//	    use_stale <condition>...|off      # error timeout invalid_header updating http_500 http_502
//	                                      # http_503 http_504 http_403 http_404 http_429; default off
//	    background_update on|off          # serve stale while one background request refreshes; default off
//	    background_timeout <dur>          # bound on a background update; default 5m
//	    revalidate on|off                 # refresh expired entries with If-None-Match / If-Modified-Since; default off
//	    heuristic_max <dur>|off           # cap on heuristic freshness from Last-Modified; default 1d
//	}
//
// The list options (strip_query, valid, ignore_headers, methods,
// private_cookies, use_stale) add up when repeated. Without valid, only
// responses whose headers give a validity (X-Accel-Expires,
// CDN-Cache-Control, Cache-Control s-maxage or max-age, Expires, or a
// Last-Modified for heuristic freshness) are stored, unless those are
// ignored (docs/standards.md).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Zone = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	// Options a refresh handler ignores (it never looks up), by line.
	var lookupOnly []string
	var lookupLines []int
	for d.NextBlock(0) {
		switch d.Val() {
		case "lock", "lock_age", "lock_timeout", "uncacheable_ttl", "use_stale", "background_update", "background_timeout", "revalidate", "min_uses":
			lookupOnly = append(lookupOnly, d.Val())
			lookupLines = append(lookupLines, d.Line())
		}
		switch d.Val() {
		case "zone":
			if err := oneArg(d, &h.Zone); err != nil {
				return err
			}
		case "key":
			if err := oneArg(d, &h.Key); err != nil {
				return err
			}
		case "strip_query":
			h.StripQuery = append(h.StripQuery, d.RemainingArgs()...)
			if len(h.StripQuery) == 0 {
				return d.ArgErr()
			}
		case "valid":
			v, err := parseValid(d)
			if err != nil {
				return err
			}
			h.Valid = append(h.Valid, v)
		case "ignore_headers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, err := ignoreFlags(args); err != nil {
				return d.Err(err.Error())
			}
			h.IgnoreHeaders = append(h.IgnoreHeaders, args...)
		case "methods":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, m := range args {
				if err := checkMethod(m); err != nil {
					return d.Err(err.Error())
				}
				h.Methods = append(h.Methods, strings.ToUpper(m))
			}
		case "invalidate_unsafe":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.InvalidateUnsafe = &on
		case "lock":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.Lock = &on
		case "use_stale":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, err := parseStaleConditions(args); err != nil {
				return d.Err(err.Error())
			}
			h.UseStale = append(h.UseStale, args...)
		case "background_update":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.BackgroundUpdate = on
		case "background_timeout":
			if err := durationArg(d, &h.BackgroundTimeout); err != nil {
				return err
			}
		case "revalidate":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.Revalidate = on
		case "heuristic_max":
			if err := durationOrOffArg(d, &h.HeuristicMax); err != nil {
				return err
			}
		case "lock_age":
			if err := durationArg(d, &h.LockAge); err != nil {
				return err
			}
		case "lock_timeout":
			if err := durationArg(d, &h.LockTimeout); err != nil {
				return err
			}
		case "uncacheable_ttl":
			if err := durationOrOffArg(d, &h.UncacheableTTL); err != nil {
				return err
			}
		case "min_uses":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("min_uses: want a whole number of at least 1, not %q", v)
			}
			h.MinUses = n
		case "refresh":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Refresh = true
		case "private_cookies":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.PrivateCookies = append(h.PrivateCookies, args...)
		case "hide_headers":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, name := range args {
				if strings.ContainsAny(name, " \t:") {
					return d.Errf("hide_headers: %q is not a header name", name)
				}
			}
			h.HideHeaders = append(h.HideHeaders, args...)
		case "tags":
			if h.Tags == nil {
				h.Tags = new(TagsConfig)
			}
			if err := parseTags(d, h.Tags); err != nil {
				return err
			}
		case "status_header":
			if err := oneArg(d, &h.StatusHeader); err != nil {
				return err
			}
		case "cache_status_header":
			on, err := onOffArg(d)
			if err != nil {
				return err
			}
			h.CacheStatusHeader = on
		default:
			return d.Errf("unrecognized edge_cache option %q", d.Val())
		}
	}
	if h.Refresh {
		for i, opt := range lookupOnly {
			caddyfileWarning(d.File(), lookupLines[i], "edge_cache: "+opt+" has no effect with refresh, which never looks up: every request is fetched and stored")
		}
	}
	return nil
}

// caddyfileWarning reports a configuration that loads but does not do what
// it says, with its place (tests replace it to see the warnings).
var caddyfileWarning = func(file string, line int, msg string) {
	caddy.Log().Named("caddyfile").Warn(msg, zap.String("file", file), zap.Int("line", line))
}

// parseValid reads `valid [<status>...|any] <dur>`.
func parseValid(d *caddyfile.Dispenser) (ValidConfig, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return ValidConfig{}, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(args[len(args)-1])
	if err != nil || dur <= 0 {
		return ValidConfig{}, d.Errf("valid: bad duration %q: want a positive duration such as 10m or 1d", args[len(args)-1])
	}
	v := ValidConfig{For: caddy.Duration(dur)}
	codes := args[:len(args)-1]
	if len(codes) == 0 {
		v.Status = []int{200, 301, 302}
		return v, nil
	}
	if len(codes) == 1 && codes[0] == "any" {
		return v, nil
	}
	for _, c := range codes {
		s, err := strconv.Atoi(c)
		if err != nil || s < 100 || s > 599 {
			return ValidConfig{}, d.Errf("valid: bad status %q: want a status code from 100 to 599, or any", c)
		}
		v.Status = append(v.Status, s)
	}
	return v, nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func onOffArg(d *caddyfile.Dispenser) (bool, error) {
	option := d.Val()
	var v string
	if err := oneArg(d, &v); err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: want on or off, not %q", option, v)
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	option := d.Val()
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur < 0 {
		return d.Errf("%s: bad duration %q: want a duration such as 5s or 1m", option, v)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// durationOrOffArg reads an option's one argument: a positive duration,
// or off (-1 in JSON).
func durationOrOffArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	option := d.Val()
	if d.NextArg() && d.Val() == "off" {
		if d.NextArg() {
			return d.ArgErr()
		}
		*dst = -1
		return nil
	}
	d.Prev()
	if err := durationArg(d, dst); err != nil {
		return err
	}
	if *dst == 0 {
		return d.Errf("%s: want a positive duration, or off", option)
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
