package maintenance

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestMaintenanceUnmarshalCaddyfile(t *testing.T) {
	dir := t.TempDir() // the flag's folder must exist
	d := caddyfile.NewTestDispenser(`maintenance {
		flag ` + dir + `/omero-maintenance.flag
		page /srv/www/about/omero-maintenance.html
		status 502
		retry_after 90s
		serve_cached
	}`)
	var m Handler
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		FlagFile:    dir + "/omero-maintenance.flag",
		PageFile:    "/srv/www/about/omero-maintenance.html",
		StatusCode:  502,
		RetryAfter:  caddy.Duration(90 * time.Second),
		ServeCached: true,
	}
	if m != want {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
}

func TestMaintenanceUnmarshalCaddyfileErrors(t *testing.T) {
	for input, wantErr := range map[string]string{
		"maintenance {\n page p.html\n}":                     "needs a flag file",
		"maintenance":                                        "needs a flag file",
		"maintenance extra {\n flag f\n}":                    "wrong argument count",
		"maintenance {\n flag\n}":                            "Testfile:2",
		"maintenance {\n flag a b\n}":                        "Testfile:2",
		"maintenance {\n flag f\n status abc\n}":             "bad status code \"abc\": strconv.Atoi: parsing \"abc\": invalid syntax, at Testfile:3",
		"maintenance {\n flag f\n status 99\n}":              "status code 99 is not between 200 and 599, at Testfile:3",
		"maintenance {\n flag f\n status 600\n}":             "not between 200 and 599",
		"maintenance {\n flag f\n retry_after soon\n}":       "bad retry_after duration \"soon\": time: invalid duration \"soon\", at Testfile:3",
		"maintenance {\n flag f\n retry_after -1s\n}":        "negative",
		"maintenance {\n flag f\n serve_cached yes\n}":       "Testfile:3",
		"maintenance {\n flag f\n cached\n}":                 "unrecognized maintenance option \"cached\"",
		"maintenance {\n flag f\n page\n}":                   "Testfile:3",
		"maintenance {\n flag f\n retry_after 1s 2s\n}":      "Testfile:3",
		"maintenance {\n flag f\n status 503 504\n}":         "Testfile:3",
		"maintenance {\n flag f\n page a.html b.html\n}":     "Testfile:3",
		"maintenance {\n flag f\n retry_after\n}":            "Testfile:3",
		"maintenance {\n flag f\n status\n}":                 "Testfile:3",
		"maintenance {\n flag f\n serve_cached\n bogus 1\n}": "Testfile:4",
		"maintenance {\n flag /nonexistent-folder/f\n}":      "folder /nonexistent-folder does not exist, at Testfile:2",
	} {
		var m Handler
		err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want it to contain %q", input, err, wantErr)
		}
	}
}

// TestMaintenanceDirectiveOrder adapts a Caddyfile whose directives are
// written in the wrong order and checks that maintenance runs after map
// and header, and before handle blocks and reverse_proxy.
func TestMaintenanceDirectiveOrder(t *testing.T) {
	input := `:8080 {
		reverse_proxy 127.0.0.1:9
		handle /about/* {
			respond "about"
		}
		maintenance {
			flag /tmp/flag
		}
		header Access-Control-Allow-Origin *
		map {path} {cache_zone} {
			default other
		}
	}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(out)
	pos := func(handler string) int {
		i := strings.Index(cfg, `"handler":"`+handler+`"`)
		if i < 0 {
			t.Fatalf("no %s handler in %s", handler, cfg)
		}
		return i
	}
	order := []string{"map", "headers", "maintenance", "subroute", "reverse_proxy"}
	for i := 1; i < len(order); i++ {
		if pos(order[i-1]) > pos(order[i]) {
			t.Errorf("%s runs before %s:\n%s", order[i], order[i-1], cfg)
		}
	}
	if !strings.Contains(cfg, `"flag_file":"/tmp/flag"`) {
		t.Errorf("flag_file missing: %s", cfg)
	}
}
