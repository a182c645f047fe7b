package cache

import "strings"

// StripQuery removes the named parameters from the query of a request URI,
// keeping the order of the others, so that cache-busting parameters such as
// jQuery's `_=<timestamp>` do not split one resource into many keys. It
// returns uri itself (no allocation) when nothing is removed.
func StripQuery(uri string, params []string) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 || len(params) == 0 {
		return uri
	}
	query := uri[q+1:]
	if !hasAnyParam(query, params) {
		return uri
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
