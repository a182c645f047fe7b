// Package omerodemo is a small stand-in for OMERO.web, the backend that
// edgecache fronts. It answers the URL shapes of the Image Data Resource
// (rendered images, thumbnails, metadata, the JSON API, static files, the web
// client and its logins) with the headers OMERO.web (Django) really sends:
// a sessionid Set-Cookie and Vary: Cookie on its pages, images and JSON,
// with no Cache-Control there, and Django's never_cache headers on logins
// (Cache-Control: max-age=0, no-cache, no-store, must-revalidate, private),
// a configurable render delay, and the name of the node that answered, so that
// the demo and the end-to-end tests can see what a cache does in front of it.
// It counts requests per path, so a test can tell how many reached a backend.
package omerodemo

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server.
type Options struct {
	// Delay is how long rendering takes: render_image, render_thumbnail and
	// get_thumbnail answer after it. Other pages answer at once.
	Delay time.Duration

	// Version is written into every body (and changes the rendered pixels),
	// so that after SetVersion a refreshed cache entry shows a new body.
	// Default "1".
	Version string
}

// Request headers that tests may send to steer one request. Headers rather
// than query parameters, so that they do not change a cache key.
const (
	// HeaderDelay overrides the delay of this request (a Go duration, "2s").
	HeaderDelay = "X-Demo-Delay"
	// HeaderStatus makes this request answer with the given status code.
	HeaderStatus = "X-Demo-Status"
	// HeaderCacheControl makes this request's answer carry this
	// Cache-Control, as a view with Django's cache_control decorator would.
	HeaderCacheControl = "X-Demo-Cache-Control"
	// HeaderNode is set on every response to the name of the node.
	HeaderNode = "X-Omero-Node"
)

// SessionCookie is the name of OMERO.web's (Django's) session cookie.
const SessionCookie = "sessionid"

// Server is one OMERO.web-like node. It is an http.Handler.
type Server struct {
	node    string
	delay   time.Duration
	version atomic.Pointer[string]
	mux     *http.ServeMux

	mu    sync.Mutex
	hits  map[string]int
	total int
	// users maps the session ids of logged-in sessions to their user name.
	// Anonymous (public user) sessions are not stored, so a load test
	// without cookies does not grow this map.
	users map[string]string
}

// New returns a node named node (shown in the X-Omero-Node header and in
// bodies).
func New(node string, opts Options) *Server {
	s := &Server{
		node:  node,
		delay: opts.Delay,
		hits:  make(map[string]int),
		users: make(map[string]string),
	}
	if opts.Version == "" {
		opts.Version = "1"
	}
	s.SetVersion(opts.Version)
	s.mux = s.routes()
	return s
}

// Node returns the node's name.
func (s *Server) Node() string { return s.node }

// Version returns the version written into bodies.
func (s *Server) Version() string { return *s.version.Load() }

// SetVersion changes the version written into bodies from now on.
func (s *Server) SetVersion(v string) { s.version.Store(&v) }

// Hits returns how many requests for path (the URL path, without query)
// this node has received.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// Total returns how many requests this node has received.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetHits sets all counters back to zero.
func (s *Server) ResetHits() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.hits)
	s.total = 0
}

// ServeHTTP counts the request, applies the per-request controls and
// dispatches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	s.total++
	s.mu.Unlock()

	w.Header().Set(HeaderNode, s.node)
	if v := r.Header.Get(HeaderCacheControl); v != "" {
		w.Header().Set("Cache-Control", v)
	}

	if v := r.Header.Get(HeaderDelay); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, fmt.Sprintf("bad %s %q", HeaderDelay, v), http.StatusBadRequest)
			return
		}
		if !sleep(r, d) {
			return
		}
	}
	if v := r.Header.Get(HeaderStatus); v != "" {
		code, err := strconv.Atoi(v)
		if err != nil || code < 200 || code > 599 {
			http.Error(w, fmt.Sprintf("bad %s %q", HeaderStatus, v), http.StatusBadRequest)
			return
		}
		s.sessionHeaders(w, r)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d from %s (version %s)\n", code, s.node, s.Version())
		return
	}
	s.mux.ServeHTTP(w, r)
}

// sessionHeaders sets the headers OMERO.web puts on its pages, images and
// JSON: Django's session middleware saves the (anonymous, public user)
// session and sends its cookie, a new one if the request has none, and
// adds Vary: Cookie because the view read the session. Nothing else: these
// views set no Cache-Control and no Expires, so a cache that ignores
// Set-Cookie and Vary (as the production proxy does) may store them.
func (s *Server) sessionHeaders(w http.ResponseWriter, r *http.Request) {
	id := ""
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		id = c.Value
	} else {
		id = newSessionID()
	}
	s.setSession(w, id)
	w.Header().Set("Vary", "Cookie")
}

// NeverCache is the Cache-Control of Django's never_cache views (OMERO's
// logins): add_never_cache_headers sets max-age=0 and then no-cache,
// no-store, must-revalidate and private, with Expires now.
const NeverCache = "max-age=0, no-cache, no-store, must-revalidate, private"

// neverCacheHeaders marks the response as Django's never_cache does.
func neverCacheHeaders(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", NeverCache)
	w.Header().Set("Expires", time.Now().UTC().Format(http.TimeFormat))
}

func (s *Server) setSession(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   86400,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// user returns the name of the logged-in user of the request's session, or
// "" for the public user.
func (s *Server) user(r *http.Request) string {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[c.Value]
}

func (s *Server) login(user string) string {
	id := newSessionID()
	s.mu.Lock()
	s.users[id] = user
	s.mu.Unlock()
	return id
}

func newSessionID() string { return rand.Text() }

// sleep waits for d unless the client goes away first; it reports whether
// the request should still be answered.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}
