package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
)

// staleCondition is a reason to serve a stale entry, as in nginx's
// proxy_cache_use_stale.
type staleCondition uint16

const (
	staleError staleCondition = 1 << iota
	staleTimeout
	staleInvalidHeader
	staleUpdating
	staleHTTP500
	staleHTTP502
	staleHTTP503
	staleHTTP504
	staleHTTP403
	staleHTTP404
	staleHTTP429
)

var staleConditionNames = map[string]staleCondition{
	"error": staleError, "timeout": staleTimeout, "invalid_header": staleInvalidHeader,
	"updating": staleUpdating, "http_500": staleHTTP500, "http_502": staleHTTP502,
	"http_503": staleHTTP503, "http_504": staleHTTP504, "http_403": staleHTTP403,
	"http_404": staleHTTP404, "http_429": staleHTTP429,
}

// staleIfErrorConditions are those RFC 5861's stale-if-error covers.
const staleIfErrorConditions = staleError | staleTimeout | staleInvalidHeader |
	staleHTTP500 | staleHTTP502 | staleHTTP503 | staleHTTP504

func parseStaleConditions(names []string) (staleCondition, error) {
	var c staleCondition
	for _, n := range names {
		if n == "off" {
			continue
		}
		flag, ok := staleConditionNames[n]
		if !ok {
			return 0, fmt.Errorf("use_stale: unknown condition %q (want error, timeout, invalid_header, updating, http_500, http_502, http_503, http_504, http_403, http_404, http_429 or off)", n)
		}
		c |= flag
	}
	return c, nil
}

// staleConditionOfStatus maps a backend status to its use_stale condition.
func staleConditionOfStatus(code int) staleCondition {
	switch code {
	case 500:
		return staleHTTP500
	case 502:
		return staleHTTP502
	case 503:
		return staleHTTP503
	case 504:
		return staleHTTP504
	case 403:
		return staleHTTP403
	case 404:
		return staleHTTP404
	case 429:
		return staleHTTP429
	}
	return 0
}

// staleConditionOfError tells apart the ways reverse_proxy fails without a
// response: deadlines are timeouts, a malformed response is invalid_header,
// anything else (refused, reset, no upstream) is an error. A client that
// went away gets nothing.
func staleConditionOfError(err error) staleCondition {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode == 499 {
		return 0
	}
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &he) && he.StatusCode == http.StatusGatewayTimeout) {
		return staleTimeout
	}
	if strings.Contains(err.Error(), "malformed HTTP") {
		return staleInvalidHeader
	}
	return staleError
}

// staleAllowed reports whether a stale entry may be served for cond: always
// when use_stale names it, and within the backend's stale-while-revalidate
// or stale-if-error window otherwise.
func (h *Handler) staleAllowed(cond staleCondition, e *cache.Entry, now time.Time) bool {
	if cond == 0 {
		return false
	}
	if h.useStale&cond != 0 {
		return true
	}
	past := now.Sub(e.ValidUntil)
	switch {
	case cond == staleUpdating:
		return past < e.StaleWhileRevalidate
	case cond&staleIfErrorConditions != 0:
		return past < e.StaleIfError
	}
	return false
}

// serveExpired answers a request whose entry is stale: from the stale entry
// while another request or a background update refreshes it (UPDATING,
// STALE), else by fetching anew (EXPIRED), falling back to the stale entry
// when the backend fails (STALE).
func (h *Handler) serveExpired(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	zone *cache.Zone, key string, stale *cache.Entry, now time.Time) error {
	// Joined even with the lock off: one update per key at a time.
	fill, leader := zone.JoinFill(key, time.Duration(h.LockAge))
	job := fetchJob{zone: zone, key: key, status: cache.StatusExpired, mayStore: true, stale: stale}
	if !leader {
		if h.staleAllowed(staleUpdating, stale, now) {
			return h.serveEntry(w, r, zone, stale, cache.StatusUpdating)
		}
		if h.lock {
			return h.awaitFill(w, r, next, fill, job, now.Add(time.Duration(h.LockTimeout)))
		}
		return h.fetch(w, r, next, job)
	}
	job.fill = fill
	if h.backgroundUpdate && h.staleAllowed(staleUpdating, stale, now) {
		h.startBackgroundUpdate(r, next, job)
		return h.serveEntry(w, r, zone, stale, cache.StatusStale)
	}
	return h.fetch(w, r, next, job)
}

// startBackgroundUpdate refreshes an entry after the client has its answer.
// Caddy cancels the request's context once the response is written, so the
// update runs on a detached context with its own timeout, and on a copy of
// the request with its own replacer and variables: the client's request is
// being logged meanwhile.
func (h *Handler) startBackgroundUpdate(r *http.Request, next caddyhttp.Handler, job fetchJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Duration(h.BackgroundTimeout))
	br := backgroundRequest(ctx, r)
	job.background = true
	job.zone.Stats.BackgroundUpdates.Add(1)
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				h.logger.Error("background update panicked", zap.String("key", job.key), zap.Any("panic", p))
			}
		}()
		if err := h.fetch(discardWriter{header: make(http.Header)}, br, next, job); err != nil {
			h.logger.Warn("background update failed", zap.String("key", job.key), zap.Error(err))
		}
	}()
}

// discardWriter receives a background update's response: the store is the
// only reader.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
func (d discardWriter) Flush()                      {}
