package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A background update's request resolves the request placeholders as the
// client's does, but has its own replacer and variables: what it sets does
// not reach the client's access log.
func TestBackgroundRequestPlaceholders(t *testing.T) {
	r := httptest.NewRequest("GET", "http://example.org/a/b?x=1", nil)
	r.Header.Set("Accept", "image/png")
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{"site": "idr"}))
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields)))
	client := caddyhttp.NewTestReplacer(r) // a test stands in for Caddy's server here
	client.Set(statusPlaceholder, "STALE")

	br := backgroundRequest(context.Background(), r)
	repl := br.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == client {
		t.Fatal("the background request shares the client's replacer")
	}
	for in, want := range map[string]string{
		"{http.request.uri}":           "/a/b?x=1",
		"{http.request.method}":        "GET",
		"{http.request.host}":          "example.org",
		"{http.request.header.Accept}": "image/png",
		"{http.request.uri.query.x}":   "1",
		"{http.vars.site}":             "idr",
	} {
		if got := repl.ReplaceAll(in, "-"); got != want {
			t.Errorf("%s = %q, want %q", in, got, want)
		}
	}
	if v, ok := repl.GetString("http.request.body"); !ok || v != "" {
		t.Errorf("body placeholder %q, %v: want empty (no body)", v, ok)
	}
	if id := repl.ReplaceAll("{http.request.uuid}", ""); len(id) != 36 || id != repl.ReplaceAll("{http.request.uuid}", "") {
		t.Errorf("uuid %q: want one stable UUID", id)
	}
	if _, ok := repl.Get(statusPlaceholder); ok {
		t.Error("the client's cache status leaks into the background request")
	}
	repl.Set(statusPlaceholder, "EXPIRED")
	caddyhttp.SetVar(br.Context(), "site", "other")
	if got, _ := client.GetString(statusPlaceholder); got != "STALE" {
		t.Errorf("client's status became %q", got)
	}
	if got := client.ReplaceAll("{http.vars.site}", ""); got != "idr" {
		t.Errorf("client's variable became %q", got)
	}
	if br.Body == nil || br.ContentLength != 0 {
		t.Error("the background request carries a body")
	}
}
