package cache

import (
	"strings"

	"github.com/dunglas/httpsfv"
)

// maxDelta is 2^31 seconds: RFC 9111 §1.2.2 has a delta-seconds value that
// overflows, or any calculation with it that does, count as this.
const maxDelta = 1 << 31

// directives are the response directives of Cache-Control (RFC 9111 §5.2.2)
// or of CDN-Cache-Control (RFC 9213) that a shared cache acts on. Durations
// are in seconds, -1 when absent.
type directives struct {
	noStore, noCache, private, public, mustUnderstand bool
	maxAge, sMaxAge                                   int64
	staleWhileRevalidate, staleIfError                int64
}

func newDirectives() directives {
	return directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}
}

// lifetime is the explicit freshness lifetime for a shared cache, s-maxage
// first (§4.2.1); -1 when neither is given.
func (d *directives) lifetime() int64 {
	if d.sMaxAge >= 0 {
		return d.sMaxAge
	}
	return d.maxAge
}

// parseCacheControl reads Cache-Control field lines. A directive given
// twice keeps its first value, which RFC 9111 §4.2.1 offers (the other
// choice being to treat the response as stale). An argument that is not a
// delta-seconds counts as 0, which makes the response stale, as §4.2.1 asks
// of invalid freshness information. Qualified no-cache and private (with a
// list of field names) act as their unqualified forms, which §5.2.2.4 and
// §5.2.2.7 allow.
func parseCacheControl(lines []string) directives {
	d := newDirectives()
	for _, line := range lines {
		for line != "" {
			var name, arg string
			name, arg, line = nextDirective(line)
			switch strings.ToLower(name) {
			case "no-store":
				d.noStore = true
			case "no-cache":
				d.noCache = true
			case "private":
				d.private = true
			case "public":
				d.public = true
			case "must-understand":
				d.mustUnderstand = true
			case "max-age":
				firstDelta(&d.maxAge, arg)
			case "s-maxage":
				firstDelta(&d.sMaxAge, arg)
			case "stale-while-revalidate":
				firstDelta(&d.staleWhileRevalidate, arg)
			case "stale-if-error":
				firstDelta(&d.staleIfError, arg)
			}
		}
	}
	return d
}

func firstDelta(dst *int64, arg string) {
	if *dst >= 0 {
		return
	}
	n, ok := parseDelta(arg)
	if !ok {
		n = 0
	}
	*dst = n
}

// nextDirective cuts the first directive off a Cache-Control line: its name,
// its argument (a token, or a quoted-string unquoted), and what follows the
// next comma. Commas inside a quoted-string do not end the directive.
func nextDirective(s string) (name, arg, rest string) {
	s = strings.TrimLeft(s, " \t,")
	i := 0
	for i < len(s) && s[i] != '=' && s[i] != ',' {
		i++
	}
	name = strings.TrimSpace(s[:i])
	if i == len(s) || s[i] == ',' {
		return name, "", s[i:]
	}
	s = strings.TrimLeft(s[i+1:], " \t")
	if s != "" && s[0] == '"' {
		var b strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
			}
			b.WriteByte(s[j])
		}
		rest = s[min(j+1, len(s)):]
		if k := strings.IndexByte(rest, ','); k >= 0 {
			rest = rest[k:]
		} else {
			rest = ""
		}
		return name, b.String(), rest
	}
	j := strings.IndexByte(s, ',')
	if j < 0 {
		return name, strings.TrimSpace(s), ""
	}
	return name, strings.TrimSpace(s[:j]), s[j:]
}

// parseDelta reads delta-seconds (1*DIGIT), capped at 2^31 (§1.2.2).
func parseDelta(s string) (int64, bool) {
	n, ok := parseDigits(s)
	return min(n, maxDelta), ok
}

// parseCDNCacheControl reads CDN-Cache-Control (RFC 9213) as the Structured
// Field Dictionary it is. ok is false when the field does not parse, and
// the cache then falls back to Cache-Control (§2.1). A directive whose
// value has the wrong type (max-age="60", no-store=1) is ignored; a Boolean
// false means the directive is absent.
func parseCDNCacheControl(lines []string) (directives, bool) {
	dict, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return directives{}, false
	}
	d := newDirectives()
	for _, name := range dict.Names() {
		m, _ := dict.Get(name)
		switch name {
		case "no-store":
			d.noStore = sfFlag(m, false)
		case "no-cache":
			d.noCache = sfFlag(m, true)
		case "private":
			d.private = sfFlag(m, true)
		case "public":
			d.public = sfFlag(m, false)
		case "must-understand":
			d.mustUnderstand = sfFlag(m, false)
		case "max-age":
			d.maxAge = sfDelta(m)
		case "s-maxage":
			d.sMaxAge = sfDelta(m)
		case "stale-while-revalidate":
			d.staleWhileRevalidate = sfDelta(m)
		case "stale-if-error":
			d.staleIfError = sfDelta(m)
		}
	}
	return d, true
}

// sfFlag reads a Boolean directive; qualified allows the field-name list
// of no-cache and private (a String or an Inner List), which counts as
// the directive given.
func sfFlag(m httpsfv.Member, qualified bool) bool {
	switch v := m.(type) {
	case httpsfv.Item:
		if b, ok := v.Value.(bool); ok {
			return b
		}
		_, isString := v.Value.(string)
		return qualified && isString
	case httpsfv.InnerList:
		return qualified
	}
	return false
}

// sfDelta reads an Integer directive: -1 (absent) when it is not a
// non-negative Integer.
func sfDelta(m httpsfv.Member) int64 {
	if it, ok := m.(httpsfv.Item); ok {
		if n, ok := it.Value.(int64); ok && n >= 0 {
			return min(n, maxDelta)
		}
	}
	return -1
}
