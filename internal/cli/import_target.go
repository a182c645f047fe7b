package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/caddymodule"
	"github.com/edgecache/edgecache/internal/nginximport"
)

// importTarget is what the configuration says about the zone imported into.
type importTarget struct {
	zone         *caddymodule.ZoneConfig
	handler      caddymodule.Handler // key and strip_query of the zone's handlers
	tags         *cache.TagRules     // their tags block: an entry gets the tags its key gives
	honourVary   bool
	statusHeader string
	warnings     []string
}

func (t *importTarget) maxBody() int64 {
	if t.zone.Path != "" {
		return t.zone.MaxSize
	}
	if t.zone.MemoryEntryMax > 0 {
		return t.zone.MemoryEntryMax
	}
	return cache.DefaultMemoryEntryMax(cmp.Or(t.zone.Memory, caddymodule.DefaultZoneMemory))
}

// importTargetFromConfig finds the zone and the edge_cache handlers that may
// store into it (those naming it, and those whose zone is a placeholder).
// They must agree on the key: an imported entry has one key.
func importTargetFromConfig(cfgJSON []byte, zoneName string) (*importTarget, error) {
	var cfg struct {
		Apps struct {
			EdgeCache *caddymodule.App `json:"edge_cache"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading the configuration: %v", err)
	}
	app := cfg.Apps.EdgeCache
	if app == nil || app.Zones[zoneName] == nil && !(zoneName == "default" && app != nil && len(app.Zones) == 0) {
		var names []string
		if app != nil {
			names = app.ZoneNames()
		}
		return nil, fmt.Errorf("zone %q is not defined in the configuration's edge_cache options (defined: %s)", zoneName, strings.Join(names, ", "))
	}
	t := &importTarget{zone: app.Zones[zoneName], honourVary: true}
	if t.zone == nil {
		t.zone = new(caddymodule.ZoneConfig)
	}
	var raw []json.RawMessage
	collectHandlers(cfgJSON, &raw)
	var chosen []caddymodule.Handler
	for _, r := range raw {
		var h caddymodule.Handler
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, fmt.Errorf("reading an edge_cache handler: %v", err)
		}
		if h.Zone == "" {
			h.Zone = "default"
		}
		if h.Zone != zoneName && !strings.Contains(h.Zone, "{") {
			continue
		}
		chosen = append(chosen, h)
	}
	if len(chosen) == 0 {
		t.statusHeader = caddymodule.DefaultStatusHeader
		t.warnings = append(t.warnings, fmt.Sprintf("no edge_cache handler stores into zone %q: keys are imported as nginx's, with no strip_query", zoneName))
		return t, nil
	}
	t.handler = chosen[0]
	for _, h := range chosen {
		if importKeyTemplate(h) != importKeyTemplate(t.handler) || !slices.Equal(h.StripQuery, t.handler.StripQuery) {
			return nil, fmt.Errorf("the edge_cache handlers of zone %q key requests differently (key %q strip_query %v, and key %q strip_query %v): an imported entry can have only one key",
				zoneName, t.handler.Key, t.handler.StripQuery, h.Key, h.StripQuery)
		}
		for _, name := range h.IgnoreHeaders {
			if http.CanonicalHeaderKey(name) == "Vary" {
				t.honourVary = false
			}
		}
	}
	var err error
	if t.tags, err = t.handler.Tags.Compile(); err != nil {
		return nil, err
	}
	switch t.handler.StatusHeader {
	case "off":
	case "":
		t.statusHeader = caddymodule.DefaultStatusHeader
	default:
		t.statusHeader = http.CanonicalHeaderKey(t.handler.StatusHeader)
	}
	return t, nil
}

// taggingSink gives each imported entry the tags the handlers' path and
// query rules give its key (the backend's header is not there to read).
type taggingSink struct {
	nginximport.Sink
	rules *cache.TagRules
}

func (s taggingSink) Import(ctx context.Context, m cache.Meta, body io.Reader) error {
	m.Tags = s.rules.KeyTags(m.Key)
	return s.Sink.Import(ctx, m, body)
}

// importKeyTemplate is a handler's key template as the import sees it:
// nginx stored the request as the client sent it, before any rewrite, so
// the original URI and the URI are the same thing there
// (Caddyfile.example keys grafana's rewritten requests by
// {http.request.orig_uri}, the others by {http.request.uri}).
func importKeyTemplate(h caddymodule.Handler) string {
	return strings.ReplaceAll(cmp.Or(h.Key, caddymodule.DefaultKey), "{http.request.orig_uri}", "{http.request.uri}")
}

// collectHandlers finds every JSON object with "handler": "edge_cache",
// wherever routes and subroutes nest it.
func collectHandlers(data []byte, out *[]json.RawMessage) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) == nil {
		if h, ok := obj["handler"]; ok && bytes.Equal(bytes.TrimSpace(h), []byte(`"edge_cache"`)) {
			*out = append(*out, data)
		}
		for _, v := range obj {
			collectHandlers(v, out)
		}
		return
	}
	var arr []json.RawMessage
	if json.Unmarshal(data, &arr) == nil {
		for _, v := range arr {
			collectHandlers(v, out)
		}
	}
}

// importKeyer turns nginx keys into the keys edgecache gives the same
// requests, through the handler's own CacheKey.
type importKeyer struct {
	handler caddymodule.Handler
	host    string // --key-prefix-strip
}

func (k importKeyer) key(nginxKey string) (string, error) {
	uri := nginxKey
	host := "localhost"
	if k.host != "" {
		rest, ok := strings.CutPrefix(uri, "https")
		if !ok {
			rest, ok = strings.CutPrefix(uri, "http")
		}
		if rest, ok = strings.CutPrefix(rest, k.host); !ok {
			return "", nginximport.KeyError{Reason: "key not of $scheme" + k.host + "$request_uri (--key-prefix-strip)"}
		}
		uri, host = rest, k.host
	}
	if !strings.HasPrefix(uri, "/") {
		return "", nginximport.KeyError{Reason: "key is not a request URI (see --key-prefix-strip)"}
	}
	uri = restoreStripped(uri, k.handler.StripQuery)
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", nginximport.KeyError{Reason: "key is not a valid request URI"}
	}
	req := &http.Request{Method: http.MethodGet, URL: u, RequestURI: uri, Host: host, Header: http.Header{},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	// The request as received: {http.request.orig_*} read it.
	req = req.WithContext(context.WithValue(context.Background(), caddyhttp.OriginalRequestCtxKey, *req))
	repl := caddyhttp.NewTestReplacer(req)
	return k.handler.CacheKey(req, repl), nil
}

// restoreStripped undoes what production's nginx map leaves of a removed
// parameter: `~^(.+[\?\&])_=\d+(.*)$ $1$2` keeps the separator, so /x?_=1
// has the key /x? and /x?a=1&_=2&b=3 the key /x?a=1&&b=3. An empty query
// part is that trace: putting the first strip_query parameter back there
// gives a request that edgecache keys as it keys the original (strip_query
// drops the parameter and empty parts). Without strip_query, or without
// such a trace, the URI is left as it is.
func restoreStripped(uri string, params []string) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 || len(params) == 0 {
		return uri
	}
	parts := strings.Split(uri[q+1:], "&")
	for i, p := range parts {
		if p == "" {
			parts[i] = params[0]
			return uri[:q+1] + strings.Join(parts, "&")
		}
	}
	return uri
}
