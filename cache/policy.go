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

// Policy decides which responses are stored and how long they stay fresh,
// with nginx's proxy_cache semantics.
type Policy struct {
	Valid  []ValidRule
	Ignore int // IgnoreCacheControl | IgnoreExpires | ...
}

// Decision is the verdict on one response.
type Decision struct {
	Store      bool
	ValidUntil time.Time
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

// Decide applies nginx's rules, in nginx's order: X-Accel-Expires, then
// Set-Cookie, Cache-Control, Expires and Vary, each unless ignored; when no
// header set a validity, the valid rules do, and a status none covers is not
// stored.
func (p *Policy) Decide(status int, h http.Header, now time.Time) Decision {
	var d Decision
	var valid time.Duration
	validSet := false

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
	if p.Ignore&IgnoreCacheControl == 0 {
		if cc := h.Values("Cache-Control"); len(cc) > 0 {
			directives := parseCacheControl(cc)
			if directives.noStore || directives.noCache || directives.private {
				d.Reason = SkipCacheControl
				return d
			}
			if !validSet && directives.maxAge >= 0 {
				if directives.maxAge == 0 {
					d.Reason = SkipCacheControl
					return d
				}
				valid, validSet = time.Duration(directives.maxAge)*time.Second, true
			}
			d.StaleWhileRevalidate = time.Duration(max(directives.staleWhileRevalidate, 0)) * time.Second
			d.StaleIfError = time.Duration(max(directives.staleIfError, 0)) * time.Second
		}
	}
	if p.Ignore&IgnoreExpires == 0 && !validSet {
		if v := h.Get("Expires"); v != "" {
			t, err := http.ParseTime(v)
			if err != nil || !t.After(now) {
				d.Reason = SkipExpires
				return d
			}
			valid, validSet = t.Sub(now), true
		}
	}
	if p.Ignore&IgnoreVary == 0 {
		for _, v := range h.Values("Vary") {
			if strings.TrimSpace(v) == "*" {
				d.Reason = SkipVary
				return d
			}
		}
	}
	if !validSet {
		var ok bool
		valid, ok = p.validFor(status)
		if !ok || valid <= 0 {
			d.Reason = SkipStatus
			return d
		}
	}
	d.Store = true
	d.ValidUntil = now.Add(valid)
	return d
}

type cacheControl struct {
	noStore, noCache, private bool
	maxAge                    int64 // s-maxage when present; -1 when absent
	staleWhileRevalidate      int64
	staleIfError              int64
}

func parseCacheControl(values []string) cacheControl {
	cc := cacheControl{maxAge: -1}
	sMaxAge := int64(-1)
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(part), "=")
			arg = strings.Trim(arg, `"`)
			switch strings.ToLower(name) {
			case "no-store":
				cc.noStore = true
			case "no-cache":
				cc.noCache = true
			case "private":
				cc.private = true
			case "max-age":
				cc.maxAge = parseSeconds(arg)
			case "s-maxage":
				sMaxAge = parseSeconds(arg)
			case "stale-while-revalidate":
				cc.staleWhileRevalidate = parseSeconds(arg)
			case "stale-if-error":
				cc.staleIfError = parseSeconds(arg)
			}
		}
	}
	if sMaxAge >= 0 {
		cc.maxAge = sMaxAge
	}
	return cc
}

// parseSeconds reads a delta-seconds value; a malformed one counts as 0,
// which RFC 9111 says to treat as stale.
func parseSeconds(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
