package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
)

// safeMethods do not change the resource (RFC 9110 §9.2.1); any other
// method's success invalidates what the cache holds for it.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// invalidating passes an unsafe request (POST, PUT, DELETE, PATCH, …) to
// the next handler and, when the answer is not an error, invalidates the
// stored responses for its URL and for the Location and Content-Location
// URLs of the same host (RFC 9111 §4.4). It does so when the answer's
// header is written, before the client can see it and ask again. Only the
// key (with its variants) goes: fills of other keys are not disturbed.
// In a fleet, the key's shared entry goes too, and the other proxies are
// told when some tier held it (fleetevents.go). With invalidate_unsafe
// off (an archive read-only to its visitors, as nginx, which never
// invalidates), the request only passes.
func (h *Handler) invalidating(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	if !h.invalidateUnsafe {
		return next.ServeHTTP(w, r)
	}
	zone, err := h.zoneFor(repl)
	if err != nil {
		return next.ServeHTTP(w, r)
	}
	return next.ServeHTTP(&headerHook{ResponseWriter: w, onHeader: func(code int, header http.Header) {
		if code >= 400 {
			return // an error changed nothing
		}
		key := h.CacheKey(r, repl)
		h.app.publishInvalidation(r.Context(), zone, key, zone.Invalidate(key))
		for _, name := range [...]string{"Location", "Content-Location"} {
			if key, ok := h.sameHostKey(r, header.Get(name)); ok {
				h.app.publishInvalidation(r.Context(), zone, key, zone.Invalidate(key))
			}
		}
	}}, r)
}

// sameHostKey is the cache key of a URL reference in an answer to r, when
// it names the same host. Only the default key (the request URI) can be
// derived for another URL; other key templates read placeholders of the
// request itself.
func (h *Handler) sameHostKey(r *http.Request, ref string) (string, bool) {
	if ref == "" || !h.defaultKey {
		return "", false
	}
	u, err := url.Parse(ref)
	if err != nil {
		return "", false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
	abs := base.ResolveReference(u)
	if !strings.EqualFold(abs.Host, r.Host) || (abs.Scheme != "http" && abs.Scheme != "https") {
		return "", false
	}
	return cache.StripQuery(abs.RequestURI(), h.StripQuery), true
}
