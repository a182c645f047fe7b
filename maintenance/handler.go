// Package maintenance is the maintenance handler of Caddy
// (http.handlers.maintenance, Caddyfile directive maintenance): while a flag
// file exists it answers with a maintenance page, and with serve_cached it
// lets a cache further down the route (edge_cache) answer what it holds,
// through the Gate it puts in the request context.
package maintenance

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler answers requests with a maintenance page while a flag file
// exists: `touch` the file to start maintenance, remove it to end it; no
// reload or restart is needed. The handler notices either change within
// about a second: a goroutine polls the file once a second, and the request
// path only loads an atomic boolean, so normal operation costs nothing.
//
// The page is a local HTML file, re-read when it changes; while it is
// missing or unreadable a built-in page titled "Maintenance" is served
// instead, so maintenance never turns into an error. The page is sent with
// the configured status (503 by default), a Retry-After header and
// Cache-Control: no-store.
//
// With ServeCached, responses that an edge_cache handler further down the
// route can answer from its cache (fresh or stale) are still served during
// maintenance; only requests that would reach a backend get the page. The
// handler then does not answer itself: it puts a gate in the request
// context, which the edge_cache handler claims (see Gate).
// Requests that no edge_cache handler claims get the page too, but note the
// limitation: such a GET or HEAD request does reach its handler (usually
// a backend) before its response is thrown away for the page. Requests
// with other methods, and upgrade (websocket) requests, are never passed on
// during maintenance.
type Handler struct {
	// FlagFile is the file whose existence means maintenance. Required.
	// Global placeholders ({env.*}) are replaced once, at provisioning.
	FlagFile string `json:"flag_file,omitempty"`

	// PageFile is the HTML page to serve during maintenance. If empty,
	// missing or unreadable, a built-in page is served.
	PageFile string `json:"page_file,omitempty"`

	// StatusCode is the status of maintenance responses. Default 503.
	StatusCode int `json:"status_code,omitempty"`

	// RetryAfter is sent, in seconds, in the Retry-After header. Default 5m.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`

	// ServeCached lets cached responses be served during maintenance;
	// only requests that would reach a backend get the page.
	ServeCached bool `json:"serve_cached,omitempty"`

	watch      *watcher
	retryAfter string
}

// pollInterval is how often the flag and page files are checked.
const pollInterval = time.Second

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.maintenance",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills defaults, reads the current state of the flag and page
// files, and starts watching them.
func (m *Handler) Provision(ctx caddy.Context) error {
	if m.StatusCode == 0 {
		m.StatusCode = http.StatusServiceUnavailable
	}
	if m.RetryAfter == 0 {
		m.RetryAfter = caddy.Duration(5 * time.Minute)
	}
	m.retryAfter = strconv.FormatInt(int64(time.Duration(m.RetryAfter)/time.Second), 10)

	repl := caddy.NewReplacer()
	m.FlagFile = repl.ReplaceKnown(m.FlagFile, "")
	m.PageFile = repl.ReplaceKnown(m.PageFile, "")

	// Validate runs after Provision; do not start a watcher for a config
	// that will be refused.
	if err := m.Validate(); err != nil {
		return err
	}
	m.watch = newWatcher(m.FlagFile, m.PageFile, pollInterval, ctx.Logger())
	return nil
}

// Validate checks the configuration.
func (m *Handler) Validate() error {
	if m.FlagFile == "" {
		return fmt.Errorf("maintenance: flag file is required")
	}
	if m.StatusCode < 200 || m.StatusCode > 599 {
		// 1xx are interim responses and cannot carry the page.
		return fmt.Errorf("maintenance: status %d is not between 200 and 599", m.StatusCode)
	}
	if m.RetryAfter < 0 {
		return fmt.Errorf("maintenance: retry_after %s is negative", time.Duration(m.RetryAfter))
	}
	return nil
}

// Cleanup stops watching the files.
func (m *Handler) Cleanup() error {
	if m.watch != nil {
		m.watch.close()
	}
	return nil
}

// Active reports whether maintenance is on.
func (m *Handler) Active() bool { return m.watch.active.Load() }

// ServeHTTP passes requests on, or serves the maintenance page while the
// flag file exists.
func (m *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !m.watch.active.Load() {
		return next.ServeHTTP(w, r)
	}
	if !m.ServeCached || (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.Header.Get("Upgrade") != "" {
		return m.servePage(w, r)
	}

	gate := &Gate{m: m}
	gw := newGateWriter(w, gate)
	openGates.Add(1)
	defer openGates.Add(-1)
	err := next.ServeHTTP(gw, r.WithContext(context.WithValue(r.Context(), gateKey{}, gate)))
	if gate.claimed.Load() {
		return err
	}
	// Nothing took charge: whatever next did was discarded, errors included.
	return m.servePage(w, r)
}

// servePage writes the maintenance response.
func (m *Handler) servePage(w http.ResponseWriter, r *http.Request) error {
	page := m.watch.page()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", m.retryAfter)
	w.WriteHeader(m.StatusCode)
	if r.Method == http.MethodHead {
		return nil
	}
	w.Write(page) // a failed write means the client left; nothing to do
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
