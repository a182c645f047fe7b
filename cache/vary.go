package cache

import (
	"net/http"
	"strings"
)

// Variant encodes a request's values of the headers a response's Vary names,
// so an entry stored for one variant is not served to a request of another.
// The zone keeps one variant per key: a request of another variant misses,
// and its response replaces the entry. Returns "" when Vary names nothing.
func Variant(vary []string, req http.Header) string {
	var b strings.Builder
	for _, line := range vary {
		for name := range strings.SplitSeq(line, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" || name == "Accept-Encoding" {
				// Entries hold the identity encoding whatever the client
				// accepts (fills ask for it): one variant serves all.
				continue
			}
			b.WriteString(name)
			b.WriteByte(':')
			b.WriteString(strings.Join(req.Values(name), ","))
			b.WriteByte('\n')
		}
	}
	return b.String()
}
