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
	zone      *cache.Zone
	key       string
	status    cache.Status // reported when the backend's answer is relayed
	cacheable bool         // store the response if the policy allows
	fill      *cache.Fill  // finished whatever happens, so waiters never hang
	// mark is the zone's Mark from when the request began (before its
	// look-up): a purge, or an invalidation of the key, since voids
	// whatever the job would store, even if the backend answers after it,
	// as the answer may predate it.
	mark cache.Mark
	// stale, when set, is the expired entry: served instead when the
	// backend fails (use_stale), and revalidated when revalidate is on.
	stale *cache.Entry
	// claim, when set, is the fleet's fill lock for the key (flow.go's
	// fleet step): released once what the fetch stored is in Redis.
	claim cache.SharedClaim
}

// outcome is what a fetch ended in. The capture writer sets it when the
// backend's answer comes (relayed, stored, stale or revalidated); fetch
// settles it at the end (failed, or relayed when the entry is not
// complete).
type outcome uint8

const (
	outcomeNone        outcome = iota // no answer from the backend (yet)
	outcomeRelayed                    // the backend's answer went to the client, not stored
	outcomeStored                     // the backend's answer went to the client and into the zone
	outcomeStale                      // the backend's answer was swallowed: the stale entry answers
	outcomeRevalidated                // the backend confirmed the stale entry (304): the extended entry answers
	outcomeFailed                     // the backend failed: the error is the answer
)

// fetch sends the request to the next handler (the backend); the capture
// writer relays the answer to w or, when the job may store, stores it and
// feeds w from the entry as it is written. It reports the outcome, with the
// entry a revalidation made. The job's fill is finished in every case, so
// waiters never hang, before the client has had all of a stored answer.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, job fetchJob) (outcome, *cache.Entry, error) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	cw := newCaptureWriter(h, w, r, repl, job)
	finished := false
	defer func() {
		// Reached unfinished on a panic: reverse_proxy panics with
		// http.ErrAbortHandler when the backend breaks mid-body. The partial
		// entry is dropped (its readers fail), waiters are released, and
		// the panic goes on once the client's writer is ours again.
		if !finished {
			// A backend that broke mid-body is a backend failure; a
			// backend request cancelled because its client left is not.
			if cw.keep.Load() != keepCancelled {
				job.zone.Stats.BackendErrors[cache.BackendFailed].Add(1)
			}
			cw.abort()
			end := h.unstored(job, cw, false)
			h.storeShared(job, nil, end)
			if job.fill != nil && !cw.fillEnded {
				job.fill.Finish(end)
			}
			cw.awaitDelivery()
		}
	}()

	backend := backendRequest(r)
	if job.stale != nil && (h.revalidate || job.stale.NoCache) {
		backend = withValidators(backend, r, job.stale)
	}
	if _, background := w.(discardWriter); !background {
		// A client that goes away ends the backend request, unless the
		// body flows into the entry by then: the fill goes on to store it,
		// for its waiters and the next requests, bounded by the backend's
		// timeouts. (nginx aborts a fill whose client went away unless
		// proxy_ignore_client_abort is on; here other requests read the
		// entry as it is written, so abandoning it would fail them.)
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		abandon := func() {
			if cw.keep.CompareAndSwap(keepUndecided, keepCancelled) {
				cancel()
			}
		}
		defer context.AfterFunc(r.Context(), abandon)()
		if r.Context().Err() != nil {
			abandon() // gone already: AfterFunc would cancel only later
		}
		backend = backend.WithContext(ctx)
	}
	start := time.Now()
	cw.requested = job.zone.Clock().Now()
	err := next.ServeHTTP(cw, backend)
	job.zone.Stats.FetchLatency.Observe(time.Since(start))
	now := job.zone.Clock().Now()
	if kind, failed := backendFailure(err, cw.code); failed {
		job.zone.Stats.BackendErrors[kind].Add(1)
	}

	result := cw.outcome
	if err != nil {
		result = outcomeFailed
		if cw.outcome == outcomeNone && job.stale != nil && h.staleAllowed(staleConditionOfError(err), job.stale, now) {
			result = outcomeStale
		}
	}
	var entry, stored *cache.Entry
	refused := false // stored whole, but a purge since the mark voided it
	switch result {
	case outcomeStored:
		refused = !cw.writer.Abandoned()
		if stored = cw.commit(); stored == nil {
			result = outcomeRelayed
		} else {
			refused = false
		}
	case outcomeRevalidated:
		entry = job.zone.Revalidate(job.stale, *cw.revalidation)
		stored = entry
	default:
		cw.abort()
	}
	finished = true
	var end cache.Awaited
	switch {
	case stored != nil:
		end.Result = cache.AwaitStored
		job.zone.MarkUncacheable(job.key, 0) // cacheable again
	case refused:
		end.Result = cache.AwaitAbandoned
	case result == outcomeStale:
		// The stale entry answered (use_stale): its waiters, which hold
		// it too, answer from it (collapse.go).
		end = cache.Awaited{Result: cache.AwaitUnstored, Entry: job.stale}
	default:
		end = h.unstored(job, cw, err == nil)
	}
	// The shared store first: it only starts in the background, and the
	// local waiters woken next would otherwise hold the processor.
	h.storeShared(job, stored, end)
	if job.fill != nil && !cw.fillEnded {
		job.fill.Finish(end)
	}
	if !cw.awaitDelivery() && err == nil {
		// The client went away, or the fill failed, before it had the
		// whole body: cut the response short, as reverse_proxy does.
		panic(http.ErrAbortHandler)
	}
	return result, entry, err
}

// conditionalHeaders are removed from requests that fill the cache: the
// backend must send the whole object, whatever this one client holds.
var conditionalHeaders = [...]string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"}

// backendRequest is the request that fills an entry: a GET for a HEAD (HEAD
// shares the GET entry), without range or conditional headers, asking for
// the identity encoding. An entry is served to every client, whatever it
// accepts and whatever the Vary setting, so it holds the one encoding all
// of them can read; Caddy's encode handler, placed before edge_cache,
// compresses per client (docs/configuration.md, "Encodings").
func backendRequest(r *http.Request) *http.Request {
	needed := r.Method == http.MethodHead
	for _, name := range conditionalHeaders {
		if _, ok := r.Header[name]; ok {
			needed = true
		}
	}
	if ae := r.Header["Accept-Encoding"]; len(ae) != 1 || ae[0] != "identity" {
		needed = true
	}
	if !needed {
		return r
	}
	up := r.Clone(r.Context())
	up.Method = http.MethodGet
	for _, name := range conditionalHeaders {
		delete(up.Header, name)
	}
	// Explicit, so that Go's transport does not ask for gzip itself.
	up.Header["Accept-Encoding"] = []string{"identity"}
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

// discardWriter receives a background update's response: the store is the
// only reader.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
func (d discardWriter) Flush()                      {}
