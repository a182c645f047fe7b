package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler answers requests from a cache zone and stores what the next
// handler (normally reverse_proxy) answers, with nginx's proxy_cache
// semantics: responses are stored for the configured time per status
// whatever the backend's headers say, when those headers are ignored.
// A request's way through it, step by step, is in flow.go.
type Handler struct {
	// Zone names the zone (defined in the edge_cache app) to use.
	// Placeholders allowed. Default: "default".
	Zone string `json:"zone,omitempty"`
	// Key is the cache key template. Default: {http.request.uri}.
	Key string `json:"key,omitempty"`
	// StripQuery lists query parameters dropped from the key (e.g. jQuery's _).
	StripQuery []string `json:"strip_query,omitempty"`
	// Valid sets how long responses stay fresh, per status
	// (nginx's proxy_cache_valid). A status no rule covers is not stored,
	// unless a backend header the handler honours gives a validity.
	Valid []ValidConfig `json:"valid,omitempty"`
	// IgnoreHeaders lists backend headers that do not affect caching:
	// Cache-Control, Expires, Set-Cookie, Vary, X-Accel-Expires.
	IgnoreHeaders []string `json:"ignore_headers,omitempty"`
	// Methods that are cached. Default: GET and HEAD (HEAD shares the GET entry).
	Methods []string `json:"methods,omitempty"`
	// InvalidateUnsafe makes a request of an unsafe method (POST, PUT,
	// DELETE…) answered 2xx or 3xx drop the stored responses of its URL,
	// and of a same-host Location and Content-Location, as RFC 9111 §4.4
	// asks (in a fleet, on every proxy). Off suits a site whose visitors
	// cannot change what it serves, as a public archive: nginx never
	// invalidates, and anonymous POSTs then cannot empty the cache.
	// Default: on.
	InvalidateUnsafe *bool `json:"invalidate_unsafe,omitempty"`
	// Lock makes concurrent misses for one key wait for a single backend
	// request. Default: on.
	Lock *bool `json:"lock,omitempty"`
	// LockAge is how long a fill may hold others back before one more
	// request may go to the backend. Default: 5s.
	LockAge caddy.Duration `json:"lock_age,omitempty"`
	// LockTimeout is how long a request waits for a fill before it goes to
	// the backend itself, without storing. Default: 5s.
	LockTimeout caddy.Duration `json:"lock_timeout,omitempty"`
	// UncacheableTTL is how long a key whose fill stored nothing (an
	// uncacheable answer, a failure, a body cut short) sends its requests
	// straight to the backend, without the lock (Varnish's hit-for-miss),
	// and never longer than the answer's own freshness. Default: 10s;
	// negative: never.
	UncacheableTTL caddy.Duration `json:"uncacheable_ttl,omitempty"`
	// MinUses is how many requests a key needs before its response is stored.
	MinUses int `json:"min_uses,omitempty"`
	// Refresh makes this handler never look up: every request goes to the
	// backend and its response overwrites the entry (the cache buster).
	Refresh bool `json:"refresh,omitempty"`
	// PrivateCookies names login-session cookies: requests carrying any of
	// them (or an Authorization header) bypass the cache entirely.
	PrivateCookies []string `json:"private_cookies,omitempty"`
	// HideHeaders names response headers removed from every response that
	// passes through the handler, whatever the method, stored or not, from
	// the backend or the cache (nginx's proxy_hide_header). Without it,
	// Set-Cookie is removed only from responses that are stored and never
	// replayed from the cache; a response that is not stored keeps it.
	HideHeaders []string `json:"hide_headers,omitempty"`
	// StatusHeader names the response header carrying the cache status;
	// "off" sends none. Default: X-Cache-Status.
	StatusHeader string `json:"status_header,omitempty"`
	// CacheStatusHeader adds this cache's member, named edgecache, to the
	// standard Cache-Status header (RFC 9211): hit, fwd, fwd-status, ttl,
	// stored, collapsed. Default: off.
	CacheStatusHeader bool `json:"cache_status_header,omitempty"`
	// UseStale lists when a stale entry is served instead of the backend's
	// answer (nginx's proxy_cache_use_stale): error, timeout,
	// invalid_header, updating, http_500, http_502, http_503, http_504,
	// http_403, http_404, http_429.
	UseStale []string `json:"use_stale,omitempty"`
	// BackgroundUpdate answers an expired request from the stale entry
	// while a background request refreshes it (needs use_stale updating,
	// or the backend's stale-while-revalidate). Default: off.
	BackgroundUpdate bool `json:"background_update,omitempty"`
	// BackgroundTimeout bounds a background update. Default: 5m.
	BackgroundTimeout caddy.Duration `json:"background_timeout,omitempty"`
	// Revalidate re-checks an expired entry with If-None-Match /
	// If-Modified-Since; a 304 extends it without a body transfer.
	Revalidate bool `json:"revalidate,omitempty"`
	// HeuristicMax caps the heuristic freshness (10 % of the time since
	// Last-Modified, RFC 9111 §4.2.2) given to a response without an
	// explicit lifetime when no valid rule covers its status. Negative
	// turns heuristics off. Default: 1d.
	HeuristicMax caddy.Duration `json:"heuristic_max,omitempty"`
	// Tags sets the rules that tag stored responses, for purges by tag
	// (tags.go).
	Tags *TagsConfig `json:"tags,omitempty"`

	app              *App
	zone             *cache.Zone // when Zone has no placeholder
	policy           cache.Policy
	defaultKey       bool
	methods          map[string]bool
	lock             bool
	invalidateUnsafe bool
	useStale         staleCondition
	backgroundUpdate bool
	revalidate       bool
	hide             []string // HideHeaders and the tag headers, canonical
	tags             *cache.TagRules
	statusValues     [8][]string
	statusAny        [8]any // the same, boxed once: Replacer.Set takes an any
	logger           *zap.Logger
}

// ValidConfig is one validity rule; no statuses means any status.
type ValidConfig struct {
	Status []int          `json:"status,omitempty"`
	For    caddy.Duration `json:"for"`
}

// Defaults of the key and the status header, as nginx's.
const (
	DefaultKey          = "{http.request.uri}"
	DefaultStatusHeader = "X-Cache-Status"
)

// Defaults, as nginx's.
const (
	defaultLockAge           = caddy.Duration(5 * time.Second)
	defaultLockTimeout       = caddy.Duration(5 * time.Second)
	defaultUncacheableTTL    = caddy.Duration(10 * time.Second)
	defaultBackgroundTimeout = caddy.Duration(5 * time.Minute)
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_cache",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults and binds the handler to its zone.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("edge_cache")
	if err != nil {
		return fmt.Errorf("loading edge_cache app: %v", err)
	}
	h.app = appIface.(*App)
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		h.app.registerConnContext(srv)
	}
	if h.Zone == "" {
		h.Zone = "default"
	}
	if h.Key == "" {
		h.Key = DefaultKey
	}
	h.defaultKey = h.Key == DefaultKey
	if len(h.Methods) == 0 {
		h.Methods = []string{http.MethodGet, http.MethodHead}
	}
	h.methods = make(map[string]bool, len(h.Methods))
	for _, m := range h.Methods {
		h.methods[strings.ToUpper(m)] = true
	}
	h.lock = h.Lock == nil || *h.Lock
	h.invalidateUnsafe = h.InvalidateUnsafe == nil || *h.InvalidateUnsafe
	if h.LockAge == 0 {
		h.LockAge = defaultLockAge
	}
	if h.LockTimeout == 0 {
		h.LockTimeout = defaultLockTimeout
	}
	if h.UncacheableTTL == 0 {
		h.UncacheableTTL = defaultUncacheableTTL
	}
	if h.BackgroundTimeout == 0 {
		h.BackgroundTimeout = defaultBackgroundTimeout
	}
	h.backgroundUpdate, h.revalidate = h.BackgroundUpdate, h.Revalidate
	if h.useStale, err = parseStaleConditions(h.UseStale); err != nil {
		return err
	}
	if h.StatusHeader == "" {
		h.StatusHeader = DefaultStatusHeader
	}
	if h.StatusHeader == "off" {
		h.StatusHeader = ""
	} else {
		h.StatusHeader = http.CanonicalHeaderKey(h.StatusHeader)
	}
	h.hide = nil
	for _, name := range h.HideHeaders {
		h.hide = append(h.hide, http.CanonicalHeaderKey(name))
	}
	if h.tags, err = h.Tags.Compile(); err != nil {
		return err
	}
	if h.tags != nil {
		// The backend's tag list is the proxy's business: no client sees it.
		h.hide = append(h.hide, h.tags.Header...)
	}
	for _, s := range cache.Statuses() {
		h.statusValues[s] = []string{s.String()}
		h.statusAny[s] = s.String()
	}
	h.policy.HeuristicMax = time.Duration(h.HeuristicMax)
	for _, v := range h.Valid {
		h.policy.Valid = append(h.policy.Valid, cache.ValidRule{Statuses: v.Status, For: time.Duration(v.For)})
	}
	if h.policy.Ignore, err = ignoreFlags(h.IgnoreHeaders); err != nil {
		return err
	}
	if !strings.Contains(h.Zone, "{") {
		h.zone = h.app.Zone(h.Zone)
	} else {
		h.checkZoneMaps(ctx)
	}
	return h.Validate()
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if !strings.Contains(h.Zone, "{") && h.app != nil && h.zone == nil {
		return fmt.Errorf("zone %q is not defined in the edge_cache global options (defined: %s)", h.Zone, strings.Join(h.app.ZoneNames(), ", "))
	}
	for _, v := range h.Valid {
		if v.For <= 0 {
			return fmt.Errorf("valid: duration must be positive")
		}
		for _, s := range v.Status {
			if s < 100 || s > 599 {
				return fmt.Errorf("valid: bad status %d", s)
			}
		}
	}
	if h.MinUses < 0 {
		return fmt.Errorf("min_uses must not be negative")
	}
	if h.LockAge < 0 || h.LockTimeout < 0 || h.BackgroundTimeout < 0 {
		return fmt.Errorf("lock_age, lock_timeout and background_timeout must not be negative")
	}
	for _, name := range h.HideHeaders {
		if name == "" || strings.ContainsAny(name, " \t:") {
			return fmt.Errorf("hide_headers: %q is not a header name", name)
		}
	}
	for _, m := range h.Methods {
		if err := checkMethod(m); err != nil {
			return err
		}
	}
	return nil
}

// ignoreFlags maps ignore_headers names to the policy's bits.
func ignoreFlags(names []string) (int, error) {
	var flags int
	for _, name := range names {
		flag, ok := cache.IgnoreFlag(name)
		if !ok {
			return 0, fmt.Errorf("ignore_headers: %q cannot be ignored (want Cache-Control, Expires, Set-Cookie, Vary or X-Accel-Expires)", name)
		}
		flags |= flag
	}
	return flags, nil
}

// checkMethod accepts the methods a cache can answer, in any case.
func checkMethod(m string) error {
	if m = strings.ToUpper(m); m != http.MethodGet && m != http.MethodHead {
		return fmt.Errorf("methods: only GET and HEAD can be cached, not %s", m)
	}
	return nil
}

// bypass reports why the request must pass through uncached, or
// BypassNone. A request whose answer may be another than a plain GET's is
// never looked up nor stored: one with a body (Content-Length, or chunked:
// -1), or one asking to be taken for another method (OMERO ignores both,
// but other backends do not, and their answer would be served to all).
func (h *Handler) bypass(r *http.Request) cache.BypassReason {
	switch {
	case h.isPrivate(r):
		return cache.BypassPrivate
	case r.ContentLength != 0:
		return cache.BypassRequestBody
	}
	for _, name := range methodOverrideHeaders {
		if _, ok := r.Header[name]; ok {
			return cache.BypassMethodOverride
		}
	}
	return cache.BypassNone
}

// methodOverrideHeaders are the headers with which frameworks let a GET or
// POST stand for another method.
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// isPrivate reports whether the request carries credentials: an
// Authorization header or a login-session cookie. OMERO gives anonymous
// visitors a session cookie too, so only the configured names count.
func (h *Handler) isPrivate(r *http.Request) bool {
	if _, ok := r.Header["Authorization"]; ok {
		return true
	}
	if len(h.PrivateCookies) == 0 {
		return false
	}
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, _, _ := strings.Cut(part, "=")
			name = strings.TrimSpace(name)
			for _, p := range h.PrivateCookies {
				if name == p {
					return true
				}
			}
		}
	}
	return false
}

func (h *Handler) zoneFor(repl *caddy.Replacer) (*cache.Zone, error) {
	if h.zone != nil {
		return h.zone, nil
	}
	name := repl.ReplaceAll(h.Zone, "")
	if z := h.app.Zone(name); z != nil {
		return z, nil
	}
	return nil, undefinedZoneError{name: name, template: h.Zone, defined: h.app.ZoneNames()}
}

// undefinedZoneError is a zone placeholder that named no defined zone.
type undefinedZoneError struct {
	name, template string
	defined        []string
}

func (e undefinedZoneError) Error() string {
	return fmt.Sprintf("edge_cache: zone %q (from %s) is not defined (defined: %s): proxied uncached", e.name, e.template, zoneList(e.defined))
}

// undefinedZones counts the requests of undefined zones (for the metric)
// and logs each name once, up to a bound: a placeholder may carry what
// clients send.
var undefinedZones undefinedZoneLog

type undefinedZoneLog struct {
	requests atomic.Int64
	mu       sync.Mutex
	logged   map[string]bool
}

const maxLoggedZoneNames = 64

func (u *undefinedZoneLog) seen(logger *zap.Logger, err error) {
	u.requests.Add(1)
	var uz undefinedZoneError
	if !errors.As(err, &uz) {
		return
	}
	u.mu.Lock()
	first := !u.logged[uz.name] && len(u.logged) < maxLoggedZoneNames
	if first {
		if u.logged == nil {
			u.logged = make(map[string]bool)
		}
		u.logged[uz.name] = true
	}
	u.mu.Unlock()
	if first {
		logger.Error("requests of an undefined zone are proxied uncached (logged once per zone name)",
			zap.String("zone", uz.name), zap.String("template", uz.template), zap.Strings("defined", uz.defined))
	}
}

// CacheKey returns the key the handler stores r under: its key template
// (default DefaultKey) filled by repl, less the strip_query parameters.
// It reads only Key and StripQuery, so a handler read from a config and
// never provisioned keys requests as the live one does: import-nginx
// stores nginx's entries under the keys their requests get here.
func (h *Handler) CacheKey(r *http.Request, repl *caddy.Replacer) string {
	var key string
	if (h.Key == "" || h.Key == DefaultKey) && strings.HasPrefix(r.RequestURI, "/") {
		key = r.RequestURI // what {http.request.uri} gives, without building it
	} else {
		key = repl.ReplaceAll(cmp.Or(h.Key, DefaultKey), "")
	}
	return cache.StripQuery(key, h.StripQuery)
}

// setStatus announces the cache status in the header and the placeholder.
func (h *Handler) setStatus(w http.ResponseWriter, repl *caddy.Replacer, s cache.Status) {
	if h.StatusHeader != "" {
		w.Header()[h.StatusHeader] = h.statusValues[s]
	}
	repl.Set(statusPlaceholder, h.statusAny[s])
}

// addCacheStatus appends this cache's member to the response's
// Cache-Status (RFC 9211 §2: each cache adds its own, after those of the
// caches nearer the origin), when cache_status_header is on.
func (h *Handler) addCacheStatus(w http.ResponseWriter, cs cache.CacheStatus) {
	if !h.CacheStatusHeader {
		return
	}
	hdr := w.Header()
	prior := hdr["Cache-Status"]
	hdr["Cache-Status"] = append(prior[:len(prior):len(prior)], cs.String())
}

// forwardedWriter adds the Cache-Status member of a request passed to the
// next handler untouched, once its answer's header is written (after the
// backend's own members); w itself when cache_status_header is off.
func (h *Handler) forwardedWriter(w http.ResponseWriter, fwd string) http.ResponseWriter {
	if !h.CacheStatusHeader {
		return w
	}
	return &headerHook{ResponseWriter: w, onHeader: func(code int, hdr http.Header) {
		h.addCacheStatus(w, cache.CacheStatus{Fwd: fwd, FwdStatus: code})
	}}
}

// headerHook calls onHeader once, when the final (non-1xx) status is
// written, before the header goes out.
type headerHook struct {
	http.ResponseWriter
	onHeader func(code int, hdr http.Header)
	done     bool
}

func (hw *headerHook) WriteHeader(code int) {
	if !hw.done && code >= 200 {
		hw.done = true
		hw.onHeader(code, hw.Header())
	}
	hw.ResponseWriter.WriteHeader(code)
}

func (hw *headerHook) Write(p []byte) (int, error) {
	if !hw.done {
		hw.WriteHeader(http.StatusOK)
	}
	return hw.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (hw *headerHook) Unwrap() http.ResponseWriter { return hw.ResponseWriter }

// statusSet reports whether the request's cache status is announced
// already (the backend's answer began, or an entry was served).
func (h *Handler) statusSet(repl *caddy.Replacer) bool {
	_, ok := repl.Get(statusPlaceholder)
	return ok
}

// statusPlaceholder carries the cache status to access logs.
const statusPlaceholder = "http.edge_cache.status"

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
