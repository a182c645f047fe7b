package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestPurgeCommand(t *testing.T) {
	for _, c := range []struct {
		args    []string
		out     string
		err     string
		zones   map[string]int // keys left per zone
		request bool
	}{
		{args: []string{"--zone", "api", "--key", "/api/v0/m/screens/"}, out: "purged 1 entries from zone api\n",
			zones: map[string]int{"api": 2, "thumbnails": 2500}, request: true},
		{args: []string{"--prefix", "/webclient/"}, out: "purged 2501 entries from every zone\n",
			zones: map[string]int{"api": 2, "thumbnails": 0}, request: true},
		{args: []string{"--zone", "thumbnails", "--all"}, out: "purged 2500 entries from zone thumbnails\n",
			zones: map[string]int{"api": 3, "thumbnails": 0}, request: true},
		{args: []string{"--zone", "nope", "--all"}, err: `purging: unknown zone "nope" (HTTP 400)`,
			zones: map[string]int{"api": 3, "thumbnails": 2500}, request: true},
		{args: []string{"--key", ""}, err: "--key is empty", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--prefix", ""}, err: "use --all", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--zone", "api"}, err: "exactly one of", zones: map[string]int{"api": 3, "thumbnails": 2500}},
		{args: []string{"--all", "--key", "/a"}, err: "exactly one of", zones: map[string]int{"api": 3, "thumbnails": 2500}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			f, addr := startFakeAdmin(t)
			var out bytes.Buffer
			status, err := runPurge(context.Background(), parseFlags(t, purgeCommand, append(c.args, "--address", addr)...), &out)
			if c.err == "" && (err != nil || status != caddy.ExitCodeSuccess) {
				t.Fatalf("status %d, error %v", status, err)
			}
			if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || status != caddy.ExitCodeFailedStartup) {
				t.Fatalf("status %d, error %v; want %q", status, err, c.err)
			}
			if out.String() != c.out {
				t.Errorf("output %q, want %q", out.String(), c.out)
			}
			for zone, n := range c.zones {
				if got := len(f.zones[zone]); got != n {
					t.Errorf("zone %s has %d keys, want %d", zone, got, n)
				}
			}
			if c.request != (len(f.requests) == 1) {
				t.Errorf("requests %v", f.requests)
			}
			if c.request && f.origins[0] != "http://"+addr {
				t.Errorf("Origin %q, want http://%s", f.origins[0], addr)
			}
		})
	}
}

func TestPurgeOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "ec") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAdmin()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: f}}
	srv.Start()
	t.Cleanup(srv.Close)

	var out bytes.Buffer
	status, err := runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", "unix/"+sock+"|0200"), &out)
	if err != nil || status != 0 || out.String() != "purged 2503 entries from every zone\n" {
		t.Fatalf("status %d, error %v, output %q", status, err, out.String())
	}
}

// --tag and --tags-from (a file, or - for standard input) give the tags,
// checked one by one with their line.
func TestTagsFromFlags(t *testing.T) {
	list := filepath.Join(t.TempDir(), "tags.txt")
	if err := os.WriteFile(list, []byte("# the study's images\nimage:1\n\n  image:2  \nimage:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fl := parseFlags(t, purgeCommand, "--tag", "dataset:3", "--tags-from", list)
	tags, err := tagsFromFlags(fl, strings.NewReader(""))
	if err != nil || strings.Join(tags, " ") != "dataset:3 image:1 image:2 image:1" {
		t.Errorf("tags %q, %v", tags, err)
	}
	fl = parseFlags(t, purgeCommand, "--tags-from", "-")
	if tags, err := tagsFromFlags(fl, strings.NewReader("image:7\nimage:8\n")); err != nil || strings.Join(tags, " ") != "image:7 image:8" {
		t.Errorf("from stdin: %q, %v", tags, err)
	}
	if _, err := tagsFromFlags(fl, strings.NewReader("image:7\nimage 8\n")); err == nil || !strings.Contains(err.Error(), "-:2") {
		t.Errorf("a tag of two words: %v, want an error at -:2", err)
	}
	if _, err := tagsFromFlags(fl, strings.NewReader("# nothing\n")); err == nil {
		t.Error("an empty list was accepted")
	}
}
