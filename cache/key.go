package cache

import "strings"

// StripQuery removes the named parameters from the query of a request URI,
// keeping the order of the others, so that cache-busting parameters such as
// jQuery's `_=<timestamp>` do not split one resource into many keys. It
// returns uri itself, or a prefix of it (no allocation), when nothing is
// removed or only what ends the query is, as jQuery appends its `_`.
func StripQuery(uri string, params []string) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 || len(params) == 0 {
		return uri
	}
	query := uri[q+1:]
	end, removed, prefix := q, false, true // uri[:end]: the key so far, while prefix
	for part := range strings.SplitSeq(query, "&") {
		switch {
		case part == "" || isParam(part, params):
			removed = true
		case removed:
			prefix = false
		default:
			end += 1 + len(part)
		}
	}
	switch {
	case !removed || !hasAnyParam(query, params):
		return uri // empty parts alone are left as sent
	case prefix:
		return uri[:end]
	}
	var b strings.Builder
	b.Grow(len(uri))
	b.WriteString(uri[:q])
	sep := byte('?')
	for part := range strings.SplitSeq(query, "&") {
		if part == "" || isParam(part, params) {
			continue
		}
		b.WriteByte(sep)
		b.WriteString(part)
		sep = '&'
	}
	return b.String()
}

func hasAnyParam(query string, params []string) bool {
	for part := range strings.SplitSeq(query, "&") {
		if isParam(part, params) {
			return true
		}
	}
	return false
}

// isParam reports whether a query part ("name=value" or "name") names one
// of params. Names are compared as sent; a percent-encoded name is another name.
func isParam(part string, params []string) bool {
	name, _, _ := strings.Cut(part, "=")
	for _, p := range params {
		if name == p {
			return true
		}
	}
	return false
}
