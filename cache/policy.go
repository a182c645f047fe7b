package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names a Policy may be told to ignore, as nginx's proxy_ignore_headers.
const (
	IgnoreCacheControl = 1 << iota
	IgnoreExpires
	IgnoreSetCookie
	IgnoreVary
	IgnoreXAccelExpires
)

// IgnoreFlag maps a header name to its Ignore bit; ok is false for a header
// that cannot be ignored.
func IgnoreFlag(name string) (flag int, ok bool) {
	switch http.CanonicalHeaderKey(name) {
	case "Cache-Control":
		return IgnoreCacheControl, true
	case "Expires":
		return IgnoreExpires, true
	case "Set-Cookie":
		return IgnoreSetCookie, true
	case "Vary":
		return IgnoreVary, true
	case "X-Accel-Expires":
		return IgnoreXAccelExpires, true
	}
	return 0, false
}

// ValidRule is one proxy_cache_valid line: how long responses with these
// statuses stay fresh. No statuses means any status.
type ValidRule struct {
	Statuses []int
	For      time.Duration
}

// Policy decides which responses are stored and how long they stay fresh.
// With the backend's headers ignored and Valid rules, it has nginx's
// proxy_cache semantics ("aggressive mode": lifetimes are absolute). Where
// the headers are honoured, it follows RFC 9111 ("standards mode"):
// CDN-Cache-Control, then Cache-Control, then Expires set the lifetime,
// less the age the response already has, and a Last-Modified gives a
// heuristic one when nothing else does.
type Policy struct {
	Valid  []ValidRule
	Ignore int // IgnoreCacheControl | IgnoreExpires | ...
	// HeuristicMax caps a heuristic lifetime (RFC 9111 §4.2.2); 0 means
	// DefaultHeuristicMax, a negative value turns heuristics off.
	HeuristicMax time.Duration
}

// DefaultHeuristicMax caps heuristic freshness unless configured.
const DefaultHeuristicMax = 24 * time.Hour

// Decision is the verdict on one response.
type Decision struct {
	Store      bool
	ValidUntil time.Time
	// InitialAge is the response's age on arrival (RFC 9111 §4.2.3).
	InitialAge time.Duration
	// NoCache: stored, but to be revalidated before every use.
	NoCache bool
	// From the backend's Cache-Control (zero when ignored or absent).
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	Reason               string // why not stored, for logs and metrics
}

// validFor returns the validity the configured rules give a status: a line
// naming the status wins over an "any" line, as in nginx.
func (p *Policy) validFor(status int) (time.Duration, bool) {
	var anyRule *ValidRule
	for i := range p.Valid {
		r := &p.Valid[i]
		if len(r.Statuses) == 0 {
			if anyRule == nil {
				anyRule = r
			}
			continue
		}
		for _, s := range r.Statuses {
			if s == status {
				return r.For, true
			}
		}
	}
	if anyRule != nil {
		return anyRule.For, true
	}
	return 0, false
}

// Decide judges a response received at now, for a request sent at now.
func (p *Policy) Decide(status int, h http.Header, now time.Time) Decision {
	return p.DecideResponse(status, h, now, now)
}

// DecideResponse applies nginx's rules, in nginx's order: X-Accel-Expires,
// then Set-Cookie, Cache-Control (or CDN-Cache-Control), Expires and Vary,
// each unless ignored; when no header set a lifetime, the valid rules do,
// then heuristics, and a status none covers is not stored. requested and
// received are when the request went to the backend and when its response
// header came back: the response's age counts from them.
//
// Lifetimes from X-Accel-Expires and valid rules are absolute, as in
// nginx; those from CDN-Cache-Control, Cache-Control, Expires and
// heuristics are less the response's current age (RFC 9111 §4.2).
func (p *Policy) DecideResponse(status int, h http.Header, requested, received time.Time) Decision {
	now := received
	d := Decision{InitialAge: initialAge(h, requested, received)}
	if status == http.StatusPartialContent {
		// A fill never asks for a range: a 206 is an anomaly, and a part
		// must never be served as the whole (RFC 9111 §3.3).
		d.Reason = SkipPartial
		return d
	}
	var valid time.Duration
	validSet := false
	relative := false // valid counts from the response's Date: subtract its age

	// Entries hold the identity encoding: fills ask for it, and whatever
	// the Vary setting, an encoded body would reach clients that did not
	// ask for it. An encoded answer comes from a backend that ignored the
	// fill's Accept-Encoding: identity.
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		d.Reason = SkipEncoded
		return d
	}

	if p.Ignore&IgnoreXAccelExpires == 0 {
		if v := h.Get("X-Accel-Expires"); v != "" {
			if strings.HasPrefix(v, "@") {
				if sec, err := strconv.ParseInt(v[1:], 10, 64); err == nil {
					valid, validSet = time.Unix(sec, 0).Sub(now), true
				}
			} else if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
				valid, validSet = time.Duration(sec)*time.Second, true
			}
			if validSet && valid <= 0 {
				d.Reason = SkipXAccelExpires
				return d
			}
		}
	}
	if p.Ignore&IgnoreSetCookie == 0 && len(h["Set-Cookie"]) > 0 {
		d.Reason = SkipSetCookie
		return d
	}
	cc := newDirectives()
	haveCC, fromCDN := false, false
	if p.Ignore&IgnoreCacheControl == 0 {
		// RFC 9213: a valid CDN-Cache-Control replaces Cache-Control and
		// Expires for this cache; an invalid one is as if absent.
		if lines := h.Values("CDN-Cache-Control"); len(lines) > 0 {
			cc, fromCDN = parseCDNCacheControl(lines)
			haveCC = fromCDN
		}
		if !fromCDN {
			if lines := h.Values("Cache-Control"); len(lines) > 0 {
				cc, haveCC = parseCacheControl(lines), true
			}
		}
	}
	if haveCC {
		if cc.private {
			d.Reason = SkipCacheControl
			return d
		}
		noStore := cc.noStore
		if cc.mustUnderstand {
			// §5.2.2.3: store only a status whose caching rules we
			// implement, and then no-store gives way.
			if !understoodStatus(status) {
				d.Reason = SkipMustUnderstand
				return d
			}
			noStore = false
		}
		if noStore {
			d.Reason = SkipCacheControl
			return d
		}
		if cc.noCache {
			// §5.2.2.4: stored, and revalidated before every use. Without
			// a validator it could never be reused.
			if h.Get("ETag") == "" && h.Get("Last-Modified") == "" {
				d.Reason = SkipNoCache
				return d
			}
			d.NoCache = true
		}
		if lifetime := cc.lifetime(); !validSet && lifetime >= 0 {
			if lifetime == 0 && !d.NoCache {
				d.Reason = SkipCacheControl
				return d
			}
			valid, validSet, relative = time.Duration(lifetime)*time.Second, true, true
		}
		d.StaleWhileRevalidate = time.Duration(max(cc.staleWhileRevalidate, 0)) * time.Second
		d.StaleIfError = time.Duration(max(cc.staleIfError, 0)) * time.Second
	}
	if p.Ignore&IgnoreExpires == 0 && !validSet && !fromCDN {
		if lines := h["Expires"]; len(lines) > 0 {
			// §5.3: an invalid date, and several Expires lines, mean
			// already expired. The lifetime is Expires − Date (§4.2.1).
			exp, ok := ParseHTTPDate(lines[0], now)
			date, dated := dateOf(h, now)
			if !dated {
				date = now
			}
			if !ok || len(lines) > 1 || !exp.After(date) {
				if !d.NoCache {
					d.Reason = SkipExpires
					return d
				}
			} else {
				valid, validSet, relative = exp.Sub(date), true, true
			}
		}
	}
	if p.Ignore&IgnoreVary == 0 && varyStar(h["Vary"]) {
		// §4.1: a Vary of "*" never matches.
		d.Reason = SkipVary
		return d
	}
	if !validSet {
		var ok bool
		if valid, ok = p.validFor(status); ok {
			validSet = valid > 0
		} else if lifetime, ok := p.heuristic(status, h, cc.public, now); ok {
			valid, validSet, relative = lifetime, true, true
		}
	}
	switch {
	case d.NoCache:
		d.ValidUntil = now // stale at once: every use revalidates
	case !validSet:
		d.Reason = SkipStatus
		return d
	case relative:
		valid = min(valid, maxDelta*time.Second) - d.InitialAge
		if valid <= 0 {
			d.Reason = SkipAge
			return d
		}
		d.ValidUntil = now.Add(valid)
	default:
		d.ValidUntil = now.Add(valid)
	}
	d.Store = true
	return d
}

// heuristic is the lifetime RFC 9111 §4.2.2 allows a response without an
// explicit one: 10 % of the time since its Last-Modified, capped. Only
// when neither Cache-Control nor Expires is ignored (an ignored header may
// have given a lifetime), and only for heuristically cacheable statuses
// (RFC 9110 §15.1) or a response marked public.
func (p *Policy) heuristic(status int, h http.Header, public bool, now time.Time) (time.Duration, bool) {
	if p.HeuristicMax < 0 || p.Ignore&(IgnoreCacheControl|IgnoreExpires) != 0 {
		return 0, false
	}
	if !public && !heuristicallyCacheable(status) {
		return 0, false
	}
	lines := h["Last-Modified"]
	if len(lines) != 1 {
		return 0, false
	}
	lm, ok := ParseHTTPDate(lines[0], now)
	if !ok {
		return 0, false
	}
	date, ok := dateOf(h, now)
	if !ok {
		date = now
	}
	if !lm.Before(date) {
		return 0, false
	}
	limit := p.HeuristicMax
	if limit == 0 {
		limit = DefaultHeuristicMax
	}
	return min(date.Sub(lm)/10, limit), true
}

// heuristicallyCacheable lists RFC 9110 §15.1's heuristically cacheable
// statuses (206 aside: a fill never stores a part).
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus reports whether the cache implements the caching rules
// of a status, for must-understand (RFC 9111 §5.2.2.3): the final
// statuses RFC 9110 defines, but 206 (never stored) and 304 (a validation
// answer).
func understoodStatus(status int) bool {
	switch {
	case status >= 200 && status <= 205,
		status >= 300 && status <= 303, status == 305, status == 307, status == 308,
		status >= 400 && status <= 417, status == 421, status == 422, status == 426,
		status >= 500 && status <= 505:
		return true
	}
	return false
}

// Uncacheable is how long a key whose fill stored nothing passes its
// requests straight through (Zone.MarkUncacheable): ttl, but never longer
// than the answer's own freshness lifetime (Cache-Control's max-age or
// s-maxage, or Expires − Date, unless ignored), as a cache would keep the
// answer itself no longer. h is nil when the backend gave no answer.
func (p *Policy) Uncacheable(ttl time.Duration, h http.Header, now time.Time) time.Duration {
	if h == nil || ttl <= 0 {
		return ttl
	}
	if p.Ignore&IgnoreCacheControl == 0 {
		if lines := h.Values("Cache-Control"); len(lines) > 0 {
			if cc := parseCacheControl(lines); cc.lifetime() >= 0 {
				return min(ttl, time.Duration(cc.lifetime())*time.Second)
			}
		}
	}
	if lines := h["Expires"]; p.Ignore&IgnoreExpires == 0 && len(lines) > 0 {
		date, dated := dateOf(h, now)
		if !dated {
			date = now
		}
		exp, ok := ParseHTTPDate(lines[0], now)
		if !ok || len(lines) > 1 {
			return 0
		}
		return max(min(ttl, exp.Sub(date)), 0)
	}
	return ttl
}

// Collapsible reports whether an answer that is not stored may still go
// to the requests that waited for its fill (hit-for-miss, instead of a
// backend request each): a 5xx, which a backend gives whoever asks, that
// no client-specific header shaped: no Set-Cookie (unless cookieHidden:
// hidden from every client), no Cache-Control private or no-store, no
// Vary: * (a Vary on named fields is matched per waiter).
func Collapsible(status int, h http.Header, cookieHidden bool) bool {
	if status < 500 || status > 599 || varyStar(h["Vary"]) {
		return false
	}
	if len(h["Set-Cookie"]) > 0 && !cookieHidden {
		return false
	}
	if lines := h.Values("Cache-Control"); len(lines) > 0 {
		if cc := parseCacheControl(lines); cc.private || cc.noStore {
			return false
		}
	}
	return true
}
