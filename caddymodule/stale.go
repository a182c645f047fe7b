package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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

// backendFailure classifies a fetch's outcome for the backend error
// counters: an error as use_stale does, or a 5xx answer. A client that
// went away is no backend failure.
func backendFailure(err error, code int) (cache.BackendError, bool) {
	if err == nil {
		return cache.BackendStatus5xx, code >= 500
	}
	switch staleConditionOfError(err) {
	case 0:
		return 0, false
	case staleTimeout:
		return cache.BackendTimeout, true
	case staleInvalidHeader:
		return cache.BackendInvalidHeader, true
	}
	return cache.BackendFailed, true
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
