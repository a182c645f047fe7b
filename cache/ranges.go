package cache

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Range requests (RFC 9110 §14) are answered by these rules on a hit and on
// a miss alike (a miss cuts its window out of the backend's body as it
// streams), so that the same request gets the same answer either way. They
// are hand-written rather than net/http's ServeContent, which answers
// "bytes=-0" with a 206 and an impossible Content-Range, and an empty body
// with a 200 where a miss answers 416.
//
//   - Only a GET of a 200 response whose length is known takes a range; a
//     HEAD, another status or an unknown length gets the whole response.
//   - A Range that is not "bytes=" followed by a valid range set (§14.1.1:
//     digits only, last-pos not below first-pos) is ignored (§14.2).
//   - If-Range (§13.1.5) that does not match sends the whole response. It
//     matches a strong entity-tag equal to the response's (compared
//     strongly; an unquoted ETag, a common backend slip, stands for the
//     quoted one), or a date equal to the Last-Modified value, when that
//     is at least 60 s older than the response (§8.8.2.2, a cache's rule).
//   - A set with no satisfiable range (none starting inside the body; a
//     suffix of length 0; any range of an empty body) is a 416 with
//     "Content-Range: bytes */<size>".
//   - The satisfiable ranges, overlapping or adjacent ones merged, that
//     make one range are a 206 with that range; several make the whole 200
//     (multipart/byteranges is not offered, which §14.2 allows).
//   - A set of more than maxRanges ranges is ignored.

// ByteRange is the part [Start, End) of a body a response carries.
type ByteRange struct{ Start, End int64 }

// RangeAnswer is how a response answers a request's Range.
type RangeAnswer uint8

const (
	// RangeWhole: send the whole response (no Range, or it is ignored).
	RangeWhole RangeAnswer = iota
	// RangePartial: 206 with one range.
	RangePartial
	// RangeUnsatisfiable: 416.
	RangeUnsatisfiable
)

// maxRanges bounds the work a Range header can ask for.
const maxRanges = 100

// EvaluateRange applies a request's Range and If-Range to a response of the
// given status, header and body size (-1 if unknown), received at the given
// time (a stored response's StoredAt; on a miss, now).
func EvaluateRange(method string, req http.Header, status int, hdr http.Header, size int64, received time.Time) (ByteRange, RangeAnswer) {
	spec := req.Get("Range")
	if spec == "" || method != http.MethodGet || status != http.StatusOK || size < 0 {
		return ByteRange{}, RangeWhole
	}
	if ir, ok := req["If-Range"]; ok && (len(ir) != 1 || !ifRangeMatches(ir[0], hdr, received)) {
		return ByteRange{}, RangeWhole
	}
	ranges, ok := parseRange(spec, size)
	switch {
	case !ok:
		return ByteRange{}, RangeWhole
	case len(ranges) == 0:
		return ByteRange{}, RangeUnsatisfiable
	case len(ranges) == 1:
		return ranges[0], RangePartial
	}
	slices.SortFunc(ranges, func(a, b ByteRange) int { return cmp.Compare(a.Start, b.Start) })
	merged := ranges[0]
	for _, r := range ranges[1:] {
		if r.Start > merged.End {
			return ByteRange{}, RangeWhole // several parts
		}
		merged.End = max(merged.End, r.End)
	}
	return merged, RangePartial
}

// parseRange parses a Range value into the satisfiable ranges of a body of
// size bytes, clamped to it. ok is false when the value is not a valid
// byte-range set (or is too long), which makes the header ignored.
func parseRange(spec string, size int64) (ranges []ByteRange, ok bool) {
	unit, set, found := strings.Cut(spec, "=")
	if !found || !strings.EqualFold(unit, "bytes") {
		return nil, false
	}
	specs := 0
	for elem := range strings.SplitSeq(set, ",") {
		elem = strings.Trim(elem, " \t")
		if elem == "" {
			continue // #rule: empty list elements are allowed
		}
		if specs++; specs > maxRanges {
			return nil, false
		}
		first, last, found := strings.Cut(elem, "-")
		if !found {
			return nil, false
		}
		if first == "" { // suffix-range
			n, ok := parseDigits(last)
			if !ok {
				return nil, false
			}
			if n > 0 && size > 0 {
				ranges = append(ranges, ByteRange{size - min(n, size), size})
			}
			continue
		}
		start, ok := parseDigits(first)
		if !ok {
			return nil, false
		}
		end := size
		if last != "" {
			l, ok := parseDigits(last)
			if !ok || l < start {
				return nil, false
			}
			if l < size {
				end = l + 1
			}
		}
		if start < size {
			ranges = append(ranges, ByteRange{start, end})
		}
	}
	return ranges, specs > 0
}

// parseDigits parses 1*DIGIT, saturating at the largest int64: a position
// past any body is valid syntax, just not satisfiable.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-9)/10 {
			n = 1<<63 - 1
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ifRangeMatches evaluates an If-Range value against a response received
// at the given time (RFC 9110 §13.1.5). An entity-tag compares strongly
// (an unquoted stored ETag, a common backend slip, stands for the quoted
// one); a date matches only a strong Last-Modified exactly: one at least a
// second before the response's Date, or the time it was received.
func ifRangeMatches(ir string, hdr http.Header, received time.Time) bool {
	ir = strings.Trim(ir, " \t")
	if t, ok := ParseHTTPDate(ir, received); ok {
		lines := hdr["Last-Modified"]
		if len(lines) != 1 {
			return false
		}
		lm, ok := ParseHTTPDate(lines[0], received)
		if !ok || !t.Equal(lm) {
			return false
		}
		date, ok := ParseHTTPDate(headerValue(hdr, "Date"), received)
		if !ok {
			date = received
		}
		return date.Sub(lm) >= time.Second
	}
	return anyTagMatches([]string{ir}, headerValue(hdr, "Etag"), true)
}

// SetRangeHeader edits a response header for a range answer and returns
// the status to send: Content-Range and Content-Length for a 206; for a
// 416, Content-Range and an empty body (the content's type and coding go,
// as there is none).
func SetRangeHeader(hdr http.Header, r ByteRange, a RangeAnswer, size int64, status int) int {
	switch a {
	case RangePartial:
		hdr["Content-Range"] = []string{"bytes " + strconv.FormatInt(r.Start, 10) + "-" + strconv.FormatInt(r.End-1, 10) + "/" + strconv.FormatInt(size, 10)}
		hdr["Content-Length"] = []string{strconv.FormatInt(r.End-r.Start, 10)}
		hdr["Accept-Ranges"] = []string{"bytes"}
		return http.StatusPartialContent
	case RangeUnsatisfiable:
		hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		hdr["Content-Length"] = []string{"0"}
		delete(hdr, "Content-Type")
		delete(hdr, "Content-Encoding")
		return http.StatusRequestedRangeNotSatisfiable
	}
	return status
}
