package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
)

// fetch sends the request to the next handler (the backend) and, when store
// is set, stores the response as it streams to the client. A fill, when
// given, is finished whatever happens, so waiters never hang.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	zone *cache.Zone, key string, status cache.Status, store bool, fill *cache.Fill) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	cw := newCaptureWriter(h, w, r, repl, zone, key, status, store)
	done := false
	defer func() {
		// Reached without done on an error, or while reverse_proxy panics
		// with http.ErrAbortHandler because the backend broke mid-body: the
		// partial entry is dropped and the panic goes on.
		if !done {
			cw.abort()
			if fill != nil {
				fill.Finish(false)
			}
		}
	}()
	if err := next.ServeHTTP(cw, backendRequest(r)); err != nil {
		return err
	}
	stored := cw.commit()
	done = true
	if fill != nil {
		fill.Finish(stored)
	}
	return nil
}

// conditionalHeaders are removed from requests that fill the cache: the
// backend must send the whole object, whatever this one client holds.
var conditionalHeaders = [...]string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"}

// backendRequest is the request that fills an entry: a GET for a HEAD (HEAD
// shares the GET entry), without range or conditional headers.
func backendRequest(r *http.Request) *http.Request {
	needed := r.Method == http.MethodHead
	for _, name := range conditionalHeaders {
		if _, ok := r.Header[name]; ok {
			needed = true
		}
	}
	if !needed {
		return r
	}
	up := r.Clone(r.Context())
	up.Method = http.MethodGet
	for _, name := range conditionalHeaders {
		delete(up.Header, name)
	}
	return up
}
