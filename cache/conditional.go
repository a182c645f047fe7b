package cache

import (
	"net/http"
	"strings"
	"time"
)

// Precondition is what a request's conditional header fields make of a
// stored response (RFC 9110 §13.2.2, RFC 9111 §4.3.2).
type Precondition uint8

const (
	// ServeStored: send the stored response (honouring Range if RangeOK).
	ServeStored Precondition = iota
	// NotModified: answer 304 (GET and HEAD).
	NotModified
	// PreconditionFailed: answer 412.
	PreconditionFailed
)

// Preconditions evaluates a request's If-Match, If-Unmodified-Since,
// If-None-Match, If-Modified-Since and If-Range against a stored response,
// in RFC 9110 §13.2.2's order. The cache does this itself rather than
// through http.ServeContent, which never matches an unquoted ETag and
// knows nothing of a stored response's Date. rangeOK reports whether a
// Range header may be honoured (If-Range absent or matching): when it is
// false, the whole response is sent.
//
// Entity-tags compare as RFC 9110 §8.8.3.2 says: weakly for
// If-None-Match, strongly for If-Match and If-Range. An unquoted ETag (a
// common backend slip) stands for the quoted one with the same characters,
// so that a client echoing it back still matches.
func Preconditions(method string, req http.Header, e *Entry) (p Precondition, rangeOK bool) {
	etag := headerValue(e.Header, "Etag")
	lastModified, hasLM := e.lastModified()
	getOrHead := method == http.MethodGet || method == http.MethodHead

	if im, ok := req["If-Match"]; ok {
		if !anyTagMatches(im, etag, true) {
			return PreconditionFailed, false
		}
	} else if ius, ok := singleDate(req, "If-Unmodified-Since"); ok && hasLM && lastModified.After(ius) {
		return PreconditionFailed, false
	}
	if inm, ok := req["If-None-Match"]; ok {
		if anyTagMatches(inm, etag, false) {
			if getOrHead {
				return NotModified, false
			}
			return PreconditionFailed, false
		}
	} else if ims, ok := singleDate(req, "If-Modified-Since"); ok && getOrHead {
		// §4.3.2: without a Last-Modified, the stored Date, else the time
		// the response was received.
		modified := lastModified
		if !hasLM {
			var dated bool
			if modified, dated = ParseHTTPDate(e.Date, e.StoredAt); !dated {
				modified = e.StoredAt.Truncate(time.Second)
			}
		}
		if !modified.After(ims) {
			return NotModified, false
		}
	}
	rangeOK = true
	if ir := headerValue(req, "If-Range"); ir != "" && headerValue(req, "Range") != "" {
		received := e.StoredAt
		if d, ok := ParseHTTPDate(e.Date, e.StoredAt); ok {
			received = d // the origin's Date, kept apart from the header
		}
		rangeOK = ifRangeMatches(ir, e.Header, received)
	}
	return ServeStored, rangeOK
}

func (e *Entry) lastModified() (time.Time, bool) {
	lines := e.Header["Last-Modified"]
	if len(lines) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(lines[0], e.StoredAt)
}

func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// singleDate reads a request's date condition; an invalid one, or several,
// is ignored (RFC 9110 §13.1.3, §13.1.4).
func singleDate(h http.Header, name string) (time.Time, bool) {
	lines := h[name]
	if len(lines) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(lines[0], time.Now())
}

// anyTagMatches reports whether a list of entity-tags (or "*") in field
// lines matches the stored ETag; strong asks for strong comparison.
func anyTagMatches(lines []string, stored string, strong bool) bool {
	storedWeak, storedTag, ok := parseETag(stored)
	for _, line := range lines {
		for s := line; ; {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				// "*" matches any current representation: there is one.
				return true
			}
			var weak bool
			var tag string
			weak, tag, s = nextETag(s)
			if !ok || tag == "" {
				continue
			}
			if strong && (weak || storedWeak) {
				continue
			}
			if tag == storedTag {
				return true
			}
		}
	}
	return false
}

// parseETag splits a stored ETag into its weakness and opaque tag.
func parseETag(v string) (weak bool, tag string, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return false, "", false
	}
	weak, tag, rest := nextETag(v)
	return weak, tag, tag != "" && strings.TrimSpace(rest) == ""
}

// nextETag reads one entity-tag from the front of s: W/ and the quotes
// come off (an unquoted one runs to the next comma or space), and the
// rest of s follows.
func nextETag(s string) (weak bool, tag, rest string) {
	if strings.HasPrefix(s, "W/") {
		weak, s = true, s[2:]
	}
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return weak, "", ""
		}
		return weak, s[1 : 1+end], s[2+end:]
	}
	end := strings.IndexAny(s, ", \t")
	if end < 0 {
		end = len(s)
	}
	return weak, s[:end], s[end:]
}
