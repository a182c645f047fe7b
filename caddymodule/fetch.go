package caddymodule

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"

	"github.com/edgecache/edgecache/cache"
)

// fetchJob is what one trip to the backend is for.
type fetchJob struct {
	zone     *cache.Zone
	key      string
	status   cache.Status // reported when the backend's response is served
	mayStore bool         // store the response if the policy allows
	fill     *cache.Fill  // finished whatever happens, so waiters never hang
	// stale, when set, is the expired entry: served instead when the
	// backend fails (use_stale), and revalidated when revalidate is on.
	stale      *cache.Entry
	background bool // a background update: no client, not counted as a request
}

// fetch sends the request to the next handler (the backend) and, when the
// job stores, stores the response as it streams to the client.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	cw := newCaptureWriter(h, w, r, repl, job)
	finished := false
	finish := func(stored bool) {
		finished = true
		if job.fill != nil {
			job.fill.Finish(stored)
		}
	}
	defer func() {
		// Reached unfinished on a panic: reverse_proxy panics with
		// http.ErrAbortHandler when the backend breaks mid-body. The partial
		// entry is dropped, waiters are released, and the panic goes on.
		if !finished {
			cw.abort()
			finish(false)
		}
	}()

	backend := backendRequest(r)
	if job.stale != nil && h.revalidate {
		backend = withValidators(backend, r, job.stale)
	}
	start := time.Now()
	err := next.ServeHTTP(cw, backend)
	now := time.Now()
	job.zone.Stats.FetchLatency.Observe(now.Sub(start))
	if job.background {
		// No client: store what came, count nothing as served.
		switch {
		case err != nil:
			cw.abort()
			finish(false)
			return err
		case cw.revalidated != nil:
			job.zone.Revalidate(job.stale, *cw.revalidated)
			finish(true)
		default:
			finish(cw.commit()) // false for a swallowed answer: nothing was begun
		}
		return nil
	}
	if err != nil {
		cw.abort()
		if job.stale != nil && !cw.wroteHeader && h.staleAllowed(staleConditionOfError(err), job.stale, now) {
			finish(false)
			return h.serveEntry(w, r, job.zone, job.stale, cache.StatusStale)
		}
		finish(false)
		job.zone.Stats.Requests[job.status].Add(1)
		return err
	}
	switch {
	case cw.revalidated != nil:
		e := job.zone.Revalidate(job.stale, *cw.revalidated)
		finish(true)
		return h.serveEntry(w, r, job.zone, e, cache.StatusRevalidated)
	case cw.swallowed:
		finish(false)
		return h.serveEntry(w, r, job.zone, job.stale, cache.StatusStale)
	}
	finish(cw.commit())
	job.zone.Stats.Requests[job.status].Add(1)
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

// withValidators asks the backend whether a stale entry is still good
// (nginx's proxy_cache_revalidate): a 304 then extends it without a body.
func withValidators(backend, client *http.Request, stale *cache.Entry) *http.Request {
	etag, lastModified := stale.Header.Get("ETag"), stale.Header.Get("Last-Modified")
	if etag == "" && lastModified == "" {
		return backend
	}
	if backend == client {
		backend = client.Clone(client.Context())
	}
	if etag != "" {
		backend.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		backend.Header.Set("If-Modified-Since", lastModified)
	}
	return backend
}

// backgroundRequest is the copy of the client's request r that a background
// update sends, on ctx (detached: Caddy cancels the client's once the
// response is written). Like every request Caddy's server prepares, it has
// its own variables, log fields and replacer, since the client's request
// is being served and logged meanwhile.
func backgroundRequest(ctx context.Context, r *http.Request) *http.Request {
	start := time.Now()
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, maps.Clone(vars))
	}
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	client := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl := caddy.NewReplacer()
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, repl)
	br := r.Clone(ctx)
	br.Body, br.ContentLength = http.NoBody, 0
	caddyhttp.SetVar(ctx, "start_time", start)
	// Caddy's provider of the request placeholders is not exported (only
	// through caddyhttp.NewTestReplacer, which is meant for tests), so the
	// client's replacer answers them: br is a copy of the client's request.
	// The few that read or write the client's variables, body or response
	// are answered here for br.
	id := sync.OnceValue(uuid.NewString)
	repl.Map(func(key string) (any, bool) {
		switch {
		case strings.HasPrefix(key, "http.vars."):
			return caddyhttp.GetVar(ctx, key[len("http.vars."):]), true
		case key == "http.request.duration":
			return time.Since(start), true
		case key == "http.request.duration_ms":
			return time.Since(start).Seconds() * 1e3, true
		case key == "http.request.uuid":
			return id(), true
		case key == "http.request.body", key == "http.request.body_base64":
			return "", true
		case strings.HasPrefix(key, "http.request."), key == "http.shutting_down", key == "http.time_until_shutdown":
			return client.Get(key)
		}
		return nil, false
	})
	return br
}
