package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestCaddyfileEveryOption(t *testing.T) {
	cfg := adapt(t, `{
	edge_cache {
		zone api 1GiB
		zone thumbs {
			memory 512MiB
			memory_entry_max 2MiB
		}
	}
}
:8080 {
	edge_cache /api/* {
		zone api
		key {http.request.host}{http.request.uri}
		strip_query _ cb
		valid 200 1d
		valid 404 410 1m
		valid any 10s
		valid 5m
		ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires
		methods GET
		lock off
		lock_age 1m
		lock_timeout 30s
		min_uses 2
		refresh
		private_cookies logged_in omero_session
		status_header X-Edge
	}
	reverse_proxy 127.0.0.1:9
}
`)
	raw, _ := json.Marshal(handlerJSON(t, cfg))
	var got Handler
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Zone:       "api",
		Key:        "{http.request.host}{http.request.uri}",
		StripQuery: []string{"_", "cb"},
		Valid: []ValidConfig{
			{Status: []int{200}, For: caddy.Duration(24 * time.Hour)},
			{Status: []int{404, 410}, For: caddy.Duration(time.Minute)},
			{For: caddy.Duration(10 * time.Second)},
			{Status: []int{200, 301, 302}, For: caddy.Duration(5 * time.Minute)},
		},
		IgnoreHeaders:  []string{"Cache-Control", "Expires", "Set-Cookie", "Vary", "X-Accel-Expires"},
		Methods:        []string{"GET"},
		Lock:           new(false),
		LockAge:        caddy.Duration(time.Minute),
		LockTimeout:    caddy.Duration(30 * time.Second),
		MinUses:        2,
		Refresh:        true,
		PrivateCookies: []string{"logged_in", "omero_session"},
		StatusHeader:   "X-Edge",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("handler JSON %s\n got %+v\nwant %+v", raw, got, want)
	}

	var root struct {
		Apps struct {
			EdgeCache App `json:"edge_cache"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &root); err != nil {
		t.Fatal(err)
	}
	zones := root.Apps.EdgeCache.Zones
	if len(zones) != 2 || zones["api"] == nil || zones["thumbs"] == nil ||
		!reflect.DeepEqual(*zones["api"], ZoneConfig{Memory: 1 << 30}) ||
		!reflect.DeepEqual(*zones["thumbs"], ZoneConfig{Memory: 512 << 20, MemoryEntryMax: 2 << 20}) {
		t.Errorf("zones %s", cfg)
	}
}

func TestCaddyfileShortForms(t *testing.T) {
	cfg := adapt(t, `{
	edge_cache {
		zone images
	}
}
:8080 {
	edge_cache images
	reverse_proxy 127.0.0.1:9
}
`)
	h := handlerJSON(t, cfg)
	if h["zone"] != "images" || len(h) != 2 {
		t.Errorf("handler %v", h)
	}
	if !strings.Contains(string(cfg), `"edge_cache":{"zones":{"images":{}}}`) {
		t.Errorf("app %s", cfg)
	}
	// With no zone named, the handler uses "default".
	cfg = adapt(t, globalOptions("zone default 1MiB")+`:8080 {
	edge_cache
	reverse_proxy 127.0.0.1:9
}
`)
	if h := handlerJSON(t, cfg); len(h) != 1 {
		t.Errorf("bare handler %v", h)
	}
}

// lineOf returns the 1-based number of the first line of src that contains
// marker, or, for a marker "=x", that is x but for indentation.
func lineOf(t *testing.T, src, marker string) int {
	t.Helper()
	exact, isExact := strings.CutPrefix(marker, "=")
	for i, line := range strings.Split(src, "\n") {
		if isExact && strings.TrimSpace(line) == exact || !isExact && strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in source", marker)
	return 0
}

func TestCaddyfileErrors(t *testing.T) {
	site := func(option string) string {
		return `{
	edge_cache {
		zone default 1MiB
	}
}
:8080 {
	edge_cache {
		valid 200 1h
		` + option + `
	}
	reverse_proxy 127.0.0.1:9
}
`
	}
	global := func(body string) string {
		return `{
	edge_cache {
		` + body + `
	}
}
:8080 {
	edge_cache
	reverse_proxy 127.0.0.1:9
}
`
	}
	tests := []struct {
		name, src, marker, msg string
	}{
		{"bad duration", site("valid 200 soon"), "soon", "bad duration"},
		{"zero duration", site("valid 200 0s"), "0s", "bad duration"},
		{"bad status", site("valid 999 1h"), "999", "bad status"},
		{"non-numeric status", site("valid ok 1h"), "valid ok", "bad status"},
		{"valid without arguments", site("valid"), "=valid", "argument"},
		{"bad lock_age", site("lock_age forever"), "forever", "bad duration"},
		{"negative lock_timeout", site("lock_timeout -5s"), "-5s", "bad duration"},
		{"bad lock", site("lock maybe"), "maybe", "on or off"},
		{"bad min_uses", site("min_uses 0"), "min_uses", "min_uses"},
		{"bad method", site("methods GET POST"), "POST", "POST"},
		{"bad heuristic_max", site("heuristic_max soon"), "soon", "bad duration"},
		{"zero heuristic_max", site("heuristic_max 0s"), "0s", "positive duration, or off"},
		{"heuristic_max off with more", site("heuristic_max off 1h"), "off 1h", "argument"},
		{"bad uncacheable_ttl", site("uncacheable_ttl soon"), "soon", "bad duration"},
		{"zero uncacheable_ttl", site("uncacheable_ttl 0s"), "0s", "positive duration, or off"},
		{"unknown option", site("stale_while_revalidate 1m"), "stale_while", "unrecognized edge_cache option"},
		{"ignore_headers Foo", site("ignore_headers Vary Foo"), "Foo", `"Foo" cannot be ignored`},
		{"zone two args", site("zone a b"), "zone a b", "argument"},
		{"refresh with argument", site("refresh yes"), "refresh", "argument"},
		{"strip_query without argument", site("strip_query"), "strip_query", "argument"},
		{"status_header without argument", site("status_header"), "status_header", "argument"},
		{"bad size", global("zone default lots"), "lots", "bad size"},
		{"zero size", global("zone default 0"), "default 0", "bad size"},
		{"size with extra argument", global("zone default 1GiB more"), "more", "argument"},
		{"bad block size", global("zone default {\n\t\t\tmemory huge\n\t\t}"), "huge", "bad size"},
		{"entry max above memory", global("zone default {\n\t\t\tmemory 1MiB\n\t\t\tmemory_entry_max 2MiB\n\t\t}"), "=}", "memory_entry_max"},
		{"entry max in the headroom", global("zone default {\n\t\t\tmemory 1MiB\n\t\t\tmemory_entry_max 1MiB\n\t\t}"), "=}", "three quarters"},
		{"unknown zone option", global("zone default {\n\t\t\tdisk /var/cache\n\t\t}"), "disk", "unrecognized zone option"},
		{"bad verify", global("zone default {\n\t\t\tpath /var/cache\n\t\t\tverify sometimes\n\t\t}"), "=}", "verify must be once or always"},
		{"verify without path", global("zone default {\n\t\t\tverify always\n\t\t}"), "=}", "verify needs a disk path"},
		{"bad open_files", global("zone default {\n\t\t\tpath /var/cache\n\t\t\topen_files lots\n\t\t}"), "lots", "open_files: want a whole number of at least 1, or off"},
		{"zero open_files", global("zone default {\n\t\t\tpath /var/cache\n\t\t\topen_files 0\n\t\t}"), "open_files 0", "at least 1"},
		{"negative open_files", global("zone default {\n\t\t\tpath /var/cache\n\t\t\topen_files -1\n\t\t}"), "open_files -1", "at least 1"},
		{"open_files without argument", global("zone default {\n\t\t\tpath /var/cache\n\t\t\topen_files\n\t\t}"), "=open_files", "argument"},
		{"open_files off with more", global("zone default {\n\t\t\tpath /var/cache\n\t\t\topen_files off 10\n\t\t}"), "off 10", "argument"},
		{"open_files without path", global("zone default {\n\t\t\topen_files 100\n\t\t}"), "=}", "open_files needs a disk path"},
		{"zone twice", global("zone a 1MiB\n\t\tzone a 2MiB"), "zone a 2MiB", "defined twice"},
		{"zone without name", global("zone"), "=zone", "argument"},
		{"unknown global option", global("store /tmp"), "store", "unrecognized edge_cache option"},
		{"shared without redis", global("shared {\n\t\t\tprefix a:\n\t\t}"), "=}", "redis address"},
		{"shared bad address", global("shared {\n\t\t\tredis 127.0.0.1\n\t\t}"), "redis 127", "want host:port"},
		{"shared bad prefix", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tprefix a{b\n\t\t}"), "a{b", "must not contain"},
		{"shared bad timeout", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\ttimeout soon\n\t\t}"), "soon", "bad duration"},
		{"shared zero timeout", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\ttimeout 0s\n\t\t}"), "0s", "positive duration"},
		{"shared bad entry_max", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tentry_max 8m\n\t\t}"), "8m", "8MiB"},
		{"shared bad tls", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\ttls yes\n\t\t}"), "tls yes", "on or off"},
		{"shared unknown option", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tdb 2\n\t\t}"), "db 2", "unrecognized shared option"},
		{"shared twice", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t}\n\t\tshared  {\n\t\t\tredis 127.0.0.1:6380\n\t\t}"), "shared  {", "defined twice"},
		{"shared user without password", global("shared {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tusername edge\n\t\t}"), "=}", "needs a password"},
		{"zone shared maybe", global("zone default {\n\t\t\tshared maybe\n\t\t}"), "maybe", "on or off"},
		{"listener wrapper with argument", "{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\tedge_cache fast\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n", "edge_cache fast", "wrong argument count"},
		{"listener wrapper with block", "{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\tedge_cache {\n\t\t\t\tsize 1\n\t\t\t}\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n", "size 1", "takes no options"},
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := adapter.Adapt([]byte(tt.src), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("no error for\n%s", tt.src)
			}
			line := fmt.Sprintf("Caddyfile:%d", lineOf(t, tt.src, tt.marker))
			if !strings.Contains(err.Error(), line) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want one mentioning %q at %s", err, tt.msg, line)
			}
		})
	}
}

// The shared block's placeholders are resolved when the config loads; an
// unknown one fails it, and with no shared block nothing opens Redis.
func TestSharedConfigLoads(t *testing.T) {
	t.Setenv("EDGECACHE_TEST_REDIS_PASSWORD", "s3cret")
	src := func(shared string) string {
		return "{\n\tadmin off\n\tedge_cache {\n\t\tzone a 1MiB\n\t\tzone b {\n\t\t\tmemory 1MiB\n\t\t\tshared off\n\t\t}\n" + shared + "\t}\n}\n:1 {\n\tedge_cache a\n}\n"
	}
	if err := validateCaddyfile(t, src("\t\tshared {\n\t\t\tredis 127.0.0.1:1\n\t\t\tusername edge\n\t\t\tpassword {env.EDGECACHE_TEST_REDIS_PASSWORD}\n\t\t\tnode n1\n\t\t}\n")); err != nil {
		t.Fatalf("valid shared block: %v", err)
	}
	err := validateCaddyfile(t, src("\t\tshared {\n\t\t\tredis 127.0.0.1:1\n\t\t\tpassword {vars.nope}\n\t\t}\n"))
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("unknown placeholder in password: %v", err)
	}
	var app App
	if err := json.Unmarshal([]byte(`{"zones":{"a":{},"b":{"shared":false}},"shared":{"redis":["127.0.0.1:1"],"password":"{env.EDGECACHE_TEST_REDIS_PASSWORD}","node":"n1"}}`), &app); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Cleanup()
	if f := app.Fleet(); f == nil || f.Config().Password != "s3cret" || f.Node() != "n1" {
		t.Fatalf("fleet %+v", f)
	}
	if !app.SharedZone("a") || app.SharedZone("b") {
		t.Errorf("shared zones: a %v, b %v; want a only", app.SharedZone("a"), app.SharedZone("b"))
	}
}

// validateCaddyfile adapts a Caddyfile and provisions it without running
// it, as `edgecache validate` does.
func validateCaddyfile(t *testing.T, src string) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(adapt(t, src), &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

func TestValidateUnknownZone(t *testing.T) {
	adaptErr := func(src string) error {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
		return err
	}
	// In a Caddyfile the error names the line of the edge_cache directive.
	err := adaptErr(globalOptions("zone images 1MiB") + `
http://127.0.0.1:1 {
	edge_cache thumbnails
	reverse_proxy 127.0.0.1:9
}
`)
	if err == nil || !strings.Contains(err.Error(), `zone "thumbnails" is not defined`) || !strings.Contains(err.Error(), "Caddyfile:16") {
		t.Errorf("unknown zone: %v", err)
	}
	// No edge_cache global option at all: "default" is not defined either.
	err = adaptErr(`{
	admin off
}
http://127.0.0.1:1 {
	edge_cache
	reverse_proxy 127.0.0.1:9
}
`)
	if err == nil || !strings.Contains(err.Error(), `zone "default" is not defined`) || !strings.Contains(err.Error(), "Caddyfile:5") {
		t.Errorf("no zones: %v", err)
	}
	// In JSON, provisioning refuses it and lists the zones there are.
	var cfg caddy.Config
	raw := `{"apps":{"edge_cache":{"zones":{"images":{"memory":1048576}}},"http":{"servers":{"s":{"listen":["127.0.0.1:0"],
		"routes":[{"handle":[{"handler":"edge_cache","zone":"thumbnails"},{"handler":"static_response"}]}]}}}}}`
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	err = caddy.Validate(&cfg)
	if err == nil || !strings.Contains(err.Error(), `zone "thumbnails" is not defined`) || !strings.Contains(err.Error(), "images") {
		t.Errorf("JSON unknown zone: %v", err)
	}
	// A zone named by a placeholder is only known per request.
	if err := validateCaddyfile(t, globalOptions("zone images 1MiB")+`
http://127.0.0.1:1 {
	edge_cache {
		zone {http.request.host.labels.0}
	}
	reverse_proxy 127.0.0.1:9
}
`); err != nil {
		t.Errorf("zone placeholder: %v", err)
	}
	if err := validateCaddyfile(t, globalOptions("zone images 1MiB")+`
http://127.0.0.1:1 {
	edge_cache images
	reverse_proxy 127.0.0.1:9
}
`); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestZoneDefinitionsAndReload(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	sites := `
http://127.0.0.1:$PUBLIC {
	handle /a/* {
		edge_cache a
		reverse_proxy $BACKEND
	}
	handle /b/* {
		edge_cache {
			zone b
			valid 200 1h
		}
		reverse_proxy $BACKEND
	}
}
`
	// zone a: shorthand; zone b: block form. No valid line for a: the
	// backend's Cache-Control decides.
	zones := `
		zone a 8MiB
		zone b {
			memory 16MiB
			memory_entry_max 1MiB
		}`
	s := startCaddy(t, globalOptions(zones)+sites, be, "PUBLIC")
	app := activeApp(t)
	zoneA, zoneB := app.Zone("a"), app.Zone("b")
	if zoneA == nil || zoneB == nil {
		t.Fatal("zones not defined")
	}
	if got := app.ZoneNames(); strings.Join(got, ",") != "a,b" {
		t.Errorf("ZoneNames %v", got)
	}
	expect(t, "b miss", s.get(t, s.url("PUBLIC", "/b/x")), 200, "MISS", "/b/x v1")
	expect(t, "b hit", s.get(t, s.url("PUBLIC", "/b/x")), 200, "HIT", "/b/x v1")
	if zoneB.Len() != 1 || zoneA.Len() != 0 {
		t.Errorf("zone a holds %d keys, b %d", zoneA.Len(), zoneB.Len())
	}
	// Zone a has no valid rule: nothing without a backend validity is stored.
	expect(t, "a miss", s.get(t, s.url("PUBLIC", "/a/x")), 200, "MISS", "/a/x v2")
	expect(t, "a miss again", s.get(t, s.url("PUBLIC", "/a/x")), 200, "MISS", "/a/x v3")

	// Reload with the same config: same zones, entries kept.
	cfg := adapt(t, strings.NewReplacer("$PUBLIC", fmt.Sprint(s.ports["PUBLIC"]), "$BACKEND", be.Addr()).Replace(globalOptions(zones)+sites))
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	if activeApp(t) == app {
		t.Fatal("the config was not reloaded")
	}
	if activeApp(t).Zone("b") != zoneB {
		t.Error("reload replaced an unchanged zone")
	}
	expect(t, "b after reload", s.get(t, s.url("PUBLIC", "/b/x")), 200, "HIT", "/b/x v1")

	// Reload with zone b redefined: a new, empty zone.
	changed := strings.Replace(string(cfg), `"memory":16777216`, `"memory":33554432`, 1)
	if changed == string(cfg) {
		t.Fatalf("zone b's memory not found in %s", cfg)
	}
	if err := caddy.Load([]byte(changed), true); err != nil {
		t.Fatal(err)
	}
	if activeApp(t).Zone("b") == zoneB {
		t.Error("a redefined zone kept its old definition")
	}
	if activeApp(t).Zone("a") != zoneA {
		t.Error("reload replaced the unchanged zone a")
	}
	expect(t, "b after redefinition", s.get(t, s.url("PUBLIC", "/b/x")), 200, "MISS", "/b/x v4")
}

func TestOptionsInAction(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	cf := globalOptions("zone default 16MiB\n\t\tzone other 16MiB") + `
http://127.0.0.1:$PUBLIC {
	handle /min/* {
		edge_cache {
			valid 200 1h
			min_uses 2
			status_header X-Edge
		}
		reverse_proxy $BACKEND
	}
	handle /get/* {
		edge_cache {
			valid 200 1h
			methods GET
			status_header off
		}
		reverse_proxy $BACKEND
	}
	handle /host/* {
		edge_cache {
			zone {http.request.header.X-Zone}
			key {http.request.header.X-Tenant}{http.request.uri.path}
			valid 200 1h
		}
		reverse_proxy $BACKEND
	}
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	statusOf := func(r response) string { return r.Header.Get("X-Edge") }
	u := s.url("PUBLIC", "/min/x")
	for i, want := range []string{"MISS", "MISS", "HIT"} {
		r := s.get(t, u)
		if statusOf(r) != want || r.cacheStatus() != "" {
			t.Errorf("min_uses request %d: X-Edge %q X-Cache-Status %q, want %s", i+1, statusOf(r), r.cacheStatus(), want)
		}
	}
	if r := s.get(t, u); r.Body != "/min/x v2" {
		t.Errorf("min_uses stored %q, want the second response", r.Body)
	}

	g := s.url("PUBLIC", "/get/x")
	s.get(t, g)
	if r := s.get(t, g); r.Body != "/get/x v3" || len(r.Header.Values("X-Cache-Status")) != 0 {
		t.Errorf("status_header off: %q %v", r.Body, r.Header)
	}
	s.do(t, http.MethodHead, g)
	if be.Seen()[be.Requests()-1].Method != http.MethodHead {
		t.Error("methods GET: a HEAD was not passed through as HEAD")
	}

	h := s.url("PUBLIC", "/host/x")
	expect(t, "tenant 1 zone default", s.get(t, h, "X-Zone", "default", "X-Tenant", "t1"), 200, "MISS", "/host/x v5")
	expect(t, "tenant 1 again", s.get(t, h+"?q=1", "X-Zone", "default", "X-Tenant", "t1"), 200, "HIT", "/host/x v5")
	expect(t, "tenant 2", s.get(t, h, "X-Zone", "default", "X-Tenant", "t2"), 200, "MISS", "/host/x v6")
	expect(t, "tenant 1 zone other", s.get(t, h, "X-Zone", "other", "X-Tenant", "t1"), 200, "MISS", "/host/x v7")
	if keys, _, _ := activeApp(t).Zone("other").Keys("", "", 10); len(keys) != 1 || keys[0] != "t1/host/x" {
		t.Errorf("zone other keys %q", keys)
	}
	// The fix: proxied uncached, not a 500.
	if r := s.get(t, h, "X-Zone", "nowhere"); r.Status != 200 || r.cacheStatus() != "BYPASS" {
		t.Errorf("undefined zone from a placeholder: status %d, %s; want 200, BYPASS", r.Status, r.cacheStatus())
	}
}

// TestCaddyfileLoadChecks: mistakes a migrating operator makes are caught
// when the Caddyfile is loaded, with the line.
func TestCaddyfileLoadChecks(t *testing.T) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	adaptErr := func(src string) error {
		_, _, err := adapter.Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		return err
	}
	// nginx's sizes are binary: 512m must never become 512 MB silently.
	for _, size := range []string{"512m", "512M", "10g", "64k"} {
		src := globalOptions("zone default " + size)
		err := adaptErr(src)
		want := "write " + size[:len(size)-1] + strings.ToUpper(size[len(size)-1:]) + "iB"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), fmt.Sprintf("Caddyfile:%d", lineOf(t, src, size))) {
			t.Errorf("size %s: %v; want an error saying %q with the line", size, err, want)
		}
	}
	if err := adaptErr(globalOptions("zone default 512MB") + ":1 {\n\tedge_cache\n}\n"); err != nil {
		t.Errorf("512MB: %v", err)
	}

	// A maintenance flag in a folder that does not exist.
	src := "{\n\tadmin off\n}\n:1 {\n\tmaintenance {\n\t\tflag /nonexistent-folder/flag\n\t}\n\trespond ok\n}\n"
	if err := adaptErr(src); err == nil || !strings.Contains(err.Error(), "/nonexistent-folder does not exist") || !strings.Contains(err.Error(), "Caddyfile:6") {
		t.Errorf("flag in a missing folder: %v", err)
	}

	// An unknown zone lists the defined ones, and the suggested definition
	// is itself valid Caddyfile.
	err := adaptErr(globalOptions("zone images 1MiB\n\t\tzone api 1MiB") + ":1 {\n\tedge_cache thumbs\n}\n")
	if err == nil || !strings.Contains(err.Error(), "(defined: api, images)") {
		t.Fatalf("unknown zone: %v", err)
	}
	msg := err.Error()
	suggestion := msg[strings.Index(msg, "\n{"):]
	suggestion = suggestion[:strings.LastIndex(suggestion, "}")+1]
	if err := adaptErr(suggestion + "\n:1 {\n\tedge_cache thumbs\n}\n"); err != nil {
		t.Errorf("the suggested definition does not parse: %v\n%s", err, suggestion)
	}

	// refresh with the options it ignores: a warning per option, with
	// its line.
	type warning struct {
		line int
		msg  string
	}
	var warnings []warning
	old := caddyfileWarning
	caddyfileWarning = func(_ string, line int, msg string) { warnings = append(warnings, warning{line, msg}) }
	defer func() { caddyfileWarning = old }()
	src = globalOptions("zone default 1MiB") + ":1 {\n\tedge_cache {\n\t\trefresh\n\t\tlock on\n\t\tuse_stale error\n\t\tbackground_update on\n\t}\n}\n"
	if err := adaptErr(src); err != nil {
		t.Fatal(err)
	}
	want := []warning{{lineOf(t, src, "lock on"), "lock"}, {lineOf(t, src, "use_stale"), "use_stale"}, {lineOf(t, src, "background_update"), "background_update"}}
	if len(warnings) != len(want) {
		t.Fatalf("warnings %v, want %v", warnings, want)
	}
	for i, w := range want {
		if warnings[i].line != w.line || !strings.Contains(warnings[i].msg, w.msg+" has no effect with refresh") {
			t.Errorf("warning %v, want %q at line %d", warnings[i], w.msg, w.line)
		}
	}
	// Caddyfile.example's cache buster no longer does it.
	warnings = nil
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := adapter.Adapt(example, map[string]any{"filename": "Caddyfile.example"}); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("Caddyfile.example: %v", warnings)
	}
}

// TestZoneMapChecked: a map that can yield an undefined zone is found at
// load; at run time such requests are proxied uncached (BYPASS), counted,
// and logged once per name, not answered 500.
func TestZoneMapChecked(t *testing.T) {
	src := globalOptions("zone images 1MiB\n\t\tzone default 1MiB") + `
http://127.0.0.1:$PUBLIC {
	map {path} {cache_zone} {
		~^/img/ images
		~^/thumb/ thumbnails
		default default
	}
	handle {
		edge_cache {
			zone {cache_zone}
			valid 200 1h
		}
		reverse_proxy $BACKEND
	}
}
`
	var cfg map[string]any
	filled := strings.NewReplacer("$PUBLIC", "1", "$BACKEND", "127.0.0.1:9").Replace(src)
	if err := json.Unmarshal(adapt(t, filled), &cfg); err != nil {
		t.Fatal(err)
	}
	problems := zoneMapProblems(cfg["apps"].(map[string]any)["http"], "cache_zone", []string{"default", "images"})
	if len(problems) != 1 || !strings.Contains(problems[0], `gives zone "thumbnails", which is not defined`) {
		t.Errorf("problems: %v", problems)
	}
	noDefault := zoneMapProblems(map[string]any{"handler": "map", "destinations": []any{"{cache_zone}"},
		"mappings": []any{map[string]any{"input": "/a", "outputs": []any{"images"}}}}, "cache_zone", []string{"images"})
	if len(noDefault) != 1 || !strings.Contains(noDefault[0], "no default") {
		t.Errorf("a map without default: %v", noDefault)
	}

	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) { fmt.Fprintf(w, "body %d", n) })
	s := startCaddy(t, src, be, "PUBLIC")
	before := undefinedZones.requests.Load()
	for i := range 2 {
		r := s.get(t, s.url("PUBLIC", "/thumb/1"))
		expect(t, "undefined zone", r, http.StatusOK, "BYPASS", fmt.Sprintf("body %d", i+1))
	}
	if n := undefinedZones.requests.Load() - before; n != 2 {
		t.Errorf("undefined zone requests counted: %d, want 2", n)
	}
	expect(t, "defined zone", s.get(t, s.url("PUBLIC", "/img/1")), http.StatusOK, "MISS", "body 3")
	expect(t, "defined zone", s.get(t, s.url("PUBLIC", "/img/1")), http.StatusOK, "HIT", "body 3")
}

// The options that take a duration or off: heuristic_max (RFC 9111
// §4.2.2 lets a cache choose its heuristic; it bounds it) and
// uncacheable_ttl (how long a key whose fill stored nothing skips the
// lock; off never remembers it).
func TestCaddyfileDurationOrOff(t *testing.T) {
	for src, want := range map[string]caddy.Duration{
		"heuristic_max 2h":    caddy.Duration(2 * time.Hour),
		"heuristic_max off":   -1,
		"uncacheable_ttl 30s": caddy.Duration(30 * time.Second),
		"uncacheable_ttl off": -1,
	} {
		cfg := adapt(t, "{\n\tedge_cache {\n\t\tzone default 1MiB\n\t}\n}\n:8080 {\n\tedge_cache {\n\t\t"+src+"\n\t}\n\treverse_proxy 127.0.0.1:9\n}\n")
		raw, _ := json.Marshal(handlerJSON(t, cfg))
		var got Handler
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if v := map[string]caddy.Duration{"heuristic_max": got.HeuristicMax, "uncacheable_ttl": got.UncacheableTTL}[strings.Fields(src)[0]]; v != want {
			t.Errorf("%s: %v, want %v", src, v, want)
		}
	}
}
