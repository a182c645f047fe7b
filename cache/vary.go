package cache

import (
	"net/http"
	"slices"
	"strings"
)

// varyStar reports whether a Vary lists "*" anywhere (RFC 9111 §4.1: such
// a response never matches a later request).
func varyStar(lines []string) bool {
	for _, line := range lines {
		for name := range strings.SplitSeq(line, ",") {
			if strings.TrimSpace(name) == "*" {
				return true
			}
		}
	}
	return false
}

// VaryNames is the list of request header names a response's Vary lines
// name, canonical, in order, without repeats. It is parsed once, when the
// response is stored.
func VaryNames(lines []string) []string {
	var names []string
	for _, line := range lines {
		for name := range strings.SplitSeq(line, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "Accept-Encoding" {
				// Entries hold the identity encoding whatever the client
				// accepts (fills ask for it): one variant serves all.
				continue
			}
			if name != "" && name != "*" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names
}

// Variant encodes a request's values of the headers a response's Vary names,
// so an entry stored for one variant is not served to a request of another.
// Values are normalised as RFC 9111 §4.1 allows: whitespace around list
// separators goes, and Accept-Language, Accept-Encoding and Accept-Charset
// (lists of case-insensitive tokens whose order carries no meaning beyond
// their weights) are lower-cased and sorted. A header the request lacks
// differs from one it sends empty. Returns "" when Vary names nothing.
func Variant(vary []string, req http.Header) string {
	return VariantOf(VaryNames(vary), req)
}

// VariantOf is Variant for names already parsed by VaryNames.
func VariantOf(names []string, req http.Header) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		lines, sent := req[name]
		if !sent {
			b.WriteString("!\n") // absent
			continue
		}
		b.WriteByte(':')
		switch name {
		case "Accept-Language", "Accept-Encoding", "Accept-Charset":
			writeTokenSet(&b, lines)
		default:
			writeList(&b, lines)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// writeList writes field lines as one list, without the optional
// whitespace around its commas.
func writeList(b *strings.Builder, lines []string) {
	first := true
	for _, line := range lines {
		for member := range strings.SplitSeq(line, ",") {
			member = strings.TrimSpace(member)
			if member == "" {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			b.WriteString(member)
			first = false
		}
	}
}

// writeTokenSet writes a list of case-insensitive tokens with optional
// parameters (gzip;q=0.8) in one order and case, without whitespace.
func writeTokenSet(b *strings.Builder, lines []string) {
	var members []string
	for _, line := range lines {
		for member := range strings.SplitSeq(line, ",") {
			member = strings.ToLower(strings.Join(strings.Fields(member), ""))
			if member != "" {
				members = append(members, member)
			}
		}
	}
	slices.Sort(members)
	b.WriteString(strings.Join(members, ","))
}
