package cache

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Tags name the objects a response is about (image:42, dataset:7), so that
// everything about one object is purged at once, as Varnish's xkey and the
// CDNs' surrogate keys do. The proxy's own rules set them: from the request
// path (a regexp and templates of its captures), from a query parameter
// (one tag per value), or from a response header the backend lists them in
// (space-separated, as Surrogate-Key). They are stored with the entry.

// TagRules compute a response's tags.
type TagRules struct {
	Path   []PathTagRule
	Query  []QueryTagRule
	Header []string // canonical header names
}

// PathTagRule tags a request whose path matches Pattern with each
// template, its $1..$9 and ${name} replaced by the captures.
type PathTagRule struct {
	Pattern   *regexp.Regexp
	Templates []string
}

// QueryTagRule tags a request with Prefix plus each value of Param (a
// value may be a comma-separated list), on
// the paths Path matches (all when nil): one parameter name means another
// object on another page (OMERO's id is an image in get_thumbnails, a
// dataset in api/images).
type QueryTagRule struct {
	Param, Prefix string
	Path          *regexp.Regexp
}

// maxTagLen bounds one tag: a tag is an index key held in memory.
const maxTagLen = 256

// NewPathTagRule compiles a path rule. A template naming a capture the
// pattern does not have is an error, as is an unclosed ${.
func NewPathTagRule(pattern string, templates []string) (PathTagRule, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return PathTagRule{}, fmt.Errorf("bad regexp %q: %v", pattern, err)
	}
	if len(templates) == 0 {
		return PathTagRule{}, fmt.Errorf("path %s: want at least one tag template", pattern)
	}
	for _, t := range templates {
		if err := checkTemplate(re, t); err != nil {
			return PathTagRule{}, fmt.Errorf("tag template %q: %v", t, err)
		}
	}
	return PathTagRule{Pattern: re, Templates: templates}, nil
}

// checkTemplate parses t as expand does and checks every capture it names.
func checkTemplate(re *regexp.Regexp, t string) error {
	if t == "" || strings.ContainsAny(t, " \t\r\n") {
		return fmt.Errorf("a tag is one word")
	}
	var err error
	expandTemplate(t, func(ref string) string {
		if err == nil {
			if ref == "" {
				err = fmt.Errorf("a $ must name a capture: $1..$9, ${n} or ${name} ($$ for a $)")
			} else if captureIndex(re, ref) < 0 {
				err = fmt.Errorf("the regexp %s has no capture %s (it has %d)", re, ref, re.NumSubexp())
			}
		}
		return ""
	})
	return err
}

// captureIndex is the index of the capture ref names (a number or a name),
// or -1.
func captureIndex(re *regexp.Regexp, ref string) int {
	if n, err := strconv.Atoi(ref); err == nil {
		if n >= 1 && n <= re.NumSubexp() {
			return n
		}
		return -1
	}
	if i := re.SubexpIndex(ref); i > 0 {
		return i
	}
	return -1
}

// expandTemplate replaces $1..$9 and ${ref} in t by capture(ref), and $$
// by $. A $ followed by anything else calls capture with "".
func expandTemplate(t string, capture func(ref string) string) string {
	if !strings.Contains(t, "$") {
		return t
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '$')
		if i < 0 {
			b.WriteString(t)
			return b.String()
		}
		b.WriteString(t[:i])
		t = t[i+1:]
		switch {
		case t != "" && t[0] == '$':
			b.WriteByte('$')
			t = t[1:]
		case t != "" && t[0] >= '1' && t[0] <= '9':
			b.WriteString(capture(t[:1]))
			t = t[1:]
		case strings.HasPrefix(t, "{") && strings.Contains(t, "}"):
			end := strings.IndexByte(t, '}')
			b.WriteString(capture(t[1:end]))
			t = t[end+1:]
		default:
			capture("")
		}
	}
}

// Tags returns the tags of a response to a request for path?rawQuery with
// the response header hdr (nil: header rules do not apply), sorted and
// without duplicates. A template whose capture matched nothing, or a value
// that is not one word, gives no tag.
func (r *TagRules) Tags(path, rawQuery string, hdr http.Header) []string {
	if r == nil {
		return nil
	}
	var tags []string
	add := func(t string) {
		if t != "" && len(t) <= maxTagLen && !strings.ContainsAny(t, " \t\r\n") {
			tags = append(tags, t)
		}
	}
	for _, rule := range r.Path {
		m := rule.Pattern.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		for _, t := range rule.Templates {
			empty := false
			tag := expandTemplate(t, func(ref string) string {
				v := m[captureIndex(rule.Pattern, ref)]
				empty = empty || v == ""
				return v
			})
			if !empty {
				add(tag)
			}
		}
	}
	if len(r.Query) > 0 && rawQuery != "" {
		q, _ := url.ParseQuery(rawQuery) // the values that parse
		for _, rule := range r.Query {
			if rule.Path != nil && !rule.Path.MatchString(path) {
				continue
			}
			for _, vs := range q[rule.Param] {
				// OMERO lists ids with commas too (?images=1,2).
				for v := range strings.SplitSeq(vs, ",") {
					if v != "" {
						add(rule.Prefix + v)
					}
				}
			}
		}
	}
	for _, name := range r.Header {
		for _, line := range hdr[name] {
			for _, t := range strings.Fields(line) {
				add(t)
			}
		}
	}
	if len(tags) == 0 {
		return nil
	}
	slices.Sort(tags)
	return slices.Clip(slices.Compact(tags))
}

// KeyTags returns the tags the path and query rules give a key that is a
// request URI (an imported nginx entry's, whose response headers are
// not the backend's to list tags in any more).
func (r *TagRules) KeyTags(key string) []string {
	if r == nil || !strings.HasPrefix(key, "/") {
		return nil
	}
	path, query, _ := strings.Cut(key, "?")
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	return r.Tags(path, query, nil)
}

// Empty reports whether no rule is set.
func (r *TagRules) Empty() bool {
	return r == nil || len(r.Path)+len(r.Query)+len(r.Header) == 0
}

// CheckTag reports whether t can be a tag: non-empty, one word, at most
// 256 bytes.
func CheckTag(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("empty tag")
	case len(t) > maxTagLen:
		return fmt.Errorf("tag %.40q...: longer than %d bytes", t, maxTagLen)
	case strings.ContainsAny(t, " \t\r\n"):
		return fmt.Errorf("tag %q: a tag is one word", t)
	}
	return nil
}
