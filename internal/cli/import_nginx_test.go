package cli

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/caddymodule"
	"github.com/edgecache/edgecache/internal/nginximport"
)

// nginxKeyMap is production's `map $request_uri $cache_key`.
var nginxKeyMap = regexp.MustCompile(`^(.+[\?\&])_=\d+(.*)$`)

// TestImportKeyIsTheLiveKey checks that an imported entry lands under the
// key the handler gives the request nginx stored it for.
func TestImportKeyIsTheLiveKey(t *testing.T) {
	h := caddymodule.Handler{StripQuery: []string{"_"}}
	for _, uri := range []string{
		"/x", "/x?_=1", "/x?a=1", "/x?a=1&_=2", "/x?_=1&a=2", "/x?a=1&_=2&b=3",
		"/webgateway/render_image/1/0/0/?c=1|0:255$FF0000&_=1700000000000",
		"/api/v0/m/images/?limit=5", "/a%20b?_=3",
	} {
		nginxKey := nginxKeyMap.ReplaceAllString(uri, "$1$2")
		req := httptest.NewRequest("GET", uri, nil)
		live := h.CacheKey(req, caddyhttp.NewTestReplacer(req))

		for _, k := range []struct {
			keyer importKeyer
			key   string
		}{
			{importKeyer{handler: h}, nginxKey},
			{importKeyer{handler: h, host: "idr.example.org"}, "http" + "idr.example.org" + nginxKey},
			{importKeyer{handler: h, host: "idr.example.org"}, "https" + "idr.example.org" + nginxKey},
		} {
			got, err := k.keyer.key(k.key)
			if err != nil || got != live {
				t.Errorf("request %s, nginx key %s: imported as %q (%v), the live key is %q", uri, k.key, got, err, live)
			}
		}
	}
	// A key without the host, or without a URI, is skipped with a reason.
	for _, c := range []struct {
		keyer importKeyer
		key   string
	}{
		{importKeyer{handler: h, host: "idr.example.org"}, "httpother.org/x"},
		{importKeyer{handler: h}, "httpidr.example.org/x"},
	} {
		if _, err := c.keyer.key(c.key); !errors.As(err, new(nginximport.KeyError)) {
			t.Errorf("key %s: error %v, want a KeyError", c.key, err)
		}
	}
	// Without strip_query, the nginx key is the key.
	plain := importKeyer{handler: caddymodule.Handler{}}
	if got, _ := plain.key("/x?&a=1"); got != "/x?&a=1" {
		t.Errorf("without strip_query: %q", got)
	}
	// A template with the host gets --key-prefix-strip's host.
	withHost := importKeyer{handler: caddymodule.Handler{Key: "{http.request.host}{http.request.uri}"}, host: "idr.example.org"}
	if got, _ := withHost.key("httpsidr.example.org/y?b=1"); got != "idr.example.org/y?b=1" {
		t.Errorf("host template: %q", got)
	}
}

func TestImportTargetFromCaddyfileExample(t *testing.T) {
	cfg, _, _, err := caddycmd.LoadConfig("../../Caddyfile.example", "caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	target, err := importTargetFromConfig(cfg, "thumbnails")
	if err != nil {
		t.Fatal(err)
	}
	if target.honourVary || len(target.handler.StripQuery) != 1 || target.handler.StripQuery[0] != "_" ||
		target.zone.MaxSize != 10<<30 || target.statusHeader != "X-Cache-Status" || len(target.warnings) > 0 {
		t.Errorf("target %+v, zone %+v", target, target.zone)
	}
	// Every zone of the production layout can be imported into; grafana's
	// handler keys by the original URI, which is the same for an import.
	for _, zone := range []string{"images", "metadata", "api", "viewers", "static", "default", "grafana"} {
		if _, err := importTargetFromConfig(cfg, zone); err != nil {
			t.Errorf("zone %s: %v", zone, err)
		}
	}
	orig := importKeyer{handler: caddymodule.Handler{Key: "{http.request.orig_uri}", StripQuery: []string{"_"}}}
	if got, err := orig.key("/grafana/d?"); err != nil || got != "/grafana/d" {
		t.Errorf("orig_uri key: %q %v", got, err)
	}
	if _, err := importTargetFromConfig(cfg, "nosuchzone"); err == nil {
		t.Error("an unknown zone was accepted")
	}
	// An imported entry gets the tags the handlers' rules give its key.
	var got cache.Meta
	sink := taggingSink{Sink: sinkFunc(func(m cache.Meta) { got = m }), rules: target.tags}
	if err := sink.Import(context.Background(), cache.Meta{Key: "/webgateway/get_thumbnails/?id=7&id=8"}, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Tags, " ") != "image:7 image:8" {
		t.Errorf("imported entry's tags: %q", got.Tags)
	}
}

// sinkFunc is a Sink that records the metadata it is given.
type sinkFunc func(m cache.Meta)

func (f sinkFunc) Import(_ context.Context, m cache.Meta, _ io.Reader) error { f(m); return nil }

func TestImportTargetHandlersMustAgree(t *testing.T) {
	cfg := []byte(`{"apps":{"edge_cache":{"zones":{"z":{}}},"http":{"servers":{"a":{"routes":[
		{"handle":[{"handler":"edge_cache","zone":"z","strip_query":["_"]}]},
		{"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"edge_cache","zone":"{z}"}]}]}]}]}}}}}`)
	if _, err := importTargetFromConfig(cfg, "z"); err == nil {
		t.Error("handlers with different strip_query were accepted")
	}
	ok := []byte(`{"apps":{"edge_cache":{"zones":{"z":{}}},"http":{"servers":{"a":{"routes":[
		{"handle":[{"handler":"edge_cache","zone":"z","strip_query":["_"]}]},
		{"handle":[{"handler":"edge_cache","zone":"other"}]}]}}}}}`)
	target, err := importTargetFromConfig(ok, "z")
	if err != nil || !target.honourVary {
		t.Errorf("target %+v, %v", target, err)
	}
}
