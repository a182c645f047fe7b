package caddymodule

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/edgecache/edgecache/cache"
)

// TagsConfig is the tags block of the edge_cache handler: the rules that
// tag a stored response with the objects it is about (cache/tags.go), so
// that a purge by tag removes all of them.
type TagsConfig struct {
	// Path rules tag a request whose path matches Regexp with each of
	// Tags, in which $1..$9, ${n} and ${name} are the regexp's captures.
	Path []PathTagConfig `json:"path,omitempty"`
	// Query rules tag a request with Prefix plus each value of Param
	// (values may be comma-separated lists), on the paths Path matches
	// (every path when empty).
	Query []QueryTagConfig `json:"query,omitempty"`
	// Header names response headers in which the backend lists the tags,
	// space-separated (e.g. Surrogate-Key). They are removed from every
	// response before any client sees it, as CDNs do.
	Header []string `json:"header,omitempty"`
}

// PathTagConfig is one path rule.
type PathTagConfig struct {
	Regexp string   `json:"regexp"`
	Tags   []string `json:"tags"`
}

// QueryTagConfig is one query rule.
type QueryTagConfig struct {
	Param  string `json:"param"`
	Prefix string `json:"prefix,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Compile checks the rules and compiles them (nil: no rules).
func (c *TagsConfig) Compile() (*cache.TagRules, error) {
	if c == nil {
		return nil, nil
	}
	rules := &cache.TagRules{}
	for _, p := range c.Path {
		r, err := cache.NewPathTagRule(p.Regexp, p.Tags)
		if err != nil {
			return nil, fmt.Errorf("tags: path: %v", err)
		}
		rules.Path = append(rules.Path, r)
	}
	for _, q := range c.Query {
		if q.Param == "" {
			return nil, fmt.Errorf("tags: query: name a parameter")
		}
		if strings.ContainsAny(q.Prefix, " \t\r\n") {
			return nil, fmt.Errorf("tags: query %s: the prefix %q is not one word", q.Param, q.Prefix)
		}
		rule := cache.QueryTagRule{Param: q.Param, Prefix: q.Prefix}
		if q.Path != "" {
			re, err := regexp.Compile(q.Path)
			if err != nil {
				return nil, fmt.Errorf("tags: query %s: bad regexp %q: %v", q.Param, q.Path, err)
			}
			rule.Path = re
		}
		rules.Query = append(rules.Query, rule)
	}
	for _, name := range c.Header {
		if name == "" || strings.ContainsAny(name, " \t:") {
			return nil, fmt.Errorf("tags: header: %q is not a header name", name)
		}
		rules.Header = append(rules.Header, http.CanonicalHeaderKey(name))
	}
	if rules.Empty() {
		return nil, nil
	}
	return rules, nil
}

// parseTags reads the tags block:
//
//	tags {
//	    path   <regexp> <template>...   # on the request path; $1..$9 are the captures
//	    query  <param> <prefix> [<path regexp>]  # one tag <prefix><value> per value of the parameter,
//	                                             # on the paths the regexp matches (default: all)
//	    header <response header>        # space-separated tags the backend lists (e.g. Surrogate-Key)
//	}
//
// Each rule is checked here, so that an error names its line.
func parseTags(d *caddyfile.Dispenser, c *TagsConfig) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		rule := d.Val()
		args := d.RemainingArgs()
		var one TagsConfig
		switch rule {
		case "path":
			if len(args) < 2 {
				return d.Errf("tags: path: want a regexp and at least one tag template")
			}
			one.Path = []PathTagConfig{{Regexp: args[0], Tags: args[1:]}}
		case "query":
			if len(args) != 2 && len(args) != 3 {
				return d.Errf("tags: query: want a parameter, a tag prefix and optionally a path regexp")
			}
			one.Query = []QueryTagConfig{{Param: args[0], Prefix: args[1]}}
			if len(args) == 3 {
				one.Query[0].Path = args[2]
			}
		case "header":
			if len(args) != 1 {
				return d.Errf("tags: header: want one response header name")
			}
			one.Header = args
		default:
			return d.Errf("tags: unrecognized rule %q (want path, query or header)", rule)
		}
		if _, err := one.Compile(); err != nil {
			return d.Err(err.Error())
		}
		c.Path = append(c.Path, one.Path...)
		c.Query = append(c.Query, one.Query...)
		c.Header = append(c.Header, one.Header...)
	}
	return nil
}
