package operations_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestSecondProxyRefused: a second process on the same zone folder (the
// same config run twice binds the same ports with SO_REUSEPORT) refuses to
// start, naming the folder and the process that holds it. Once the first
// exits, the folder is free.
func TestSecondProxyRefused(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	// The same zone, other ports: the lock, not a port, must refuse it.
	admin, port := testkit.FreePort(t), testkit.FreePort(t)
	second := filepath.Join(t.TempDir(), "Caddyfile")
	cfg := diskZoneGlobal(admin, s.zoneDir, "64MiB") + cachedSite(port, "disk", b.Addr(), "")
	if err := os.WriteFile(second, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, stdout, stderr := command(t, ctx, "run", "--config", second, "--adapter", "caddyfile")
	if code == 0 {
		t.Fatalf("the second proxy ran:\n%s%s", stdout, stderr)
	}
	for _, want := range []string{s.zoneDir, "process " + strconv.Itoa(s.pid())} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the second proxy's error does not name %q:\n%s", want, stderr)
		}
	}
	// The first one is unharmed.
	path := objectPath("a", 100)
	s.mustGet(t, s.site+path)
	if r := s.mustGet(t, s.site+path); r.cache != "HIT" {
		t.Errorf("first proxy after the refused start: %s", r.cache)
	}
	// Released on exit.
	s.stop()
	p := newProxy(t, t.TempDir(), cfg, admin, port)
	if r := p.mustGet(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, path)); r.cache != "HIT" {
		t.Errorf("the next proxy on the folder: %s, want a HIT from disk", r.cache)
	}
}

// TestReloadKeepsFolders: a config reload onto the same zone folders works
// (the lock is handed over with the zone) and keeps the entries.
func TestReloadKeepsFolders(t *testing.T) {
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	path := objectPath("a", 1<<20)
	s.mustGet(t, s.site+path)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	// Another site setting, the same zones.
	cfg = bytes.Replace(cfg, []byte("valid 200 1h"), []byte("valid 200 2h"), 1)
	if err := os.WriteFile(s.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, stdout, stderr := command(t, ctx, "reload", "--config", s.config, "--adapter", "caddyfile",
		"--address", "127.0.0.1:"+strconv.Itoa(s.admin))
	if code != 0 {
		t.Fatalf("reload: exit %d\n%s%s\n%s", code, stdout, stderr, s.log.String())
	}
	if r := s.mustGet(t, s.site+path); r.cache != "HIT" {
		t.Errorf("after the reload: %s, want a HIT", r.cache)
	}
	if n := b.RequestsFor(path); n != 1 {
		t.Errorf("%d backend requests, want 1", n)
	}
}

// TestValidateTouchesNothing: `edgecache validate` next to a running proxy
// creates no folder and removes none of its temporary files.
func TestValidateTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	zoneDir := filepath.Join(dir, "zone")
	if err := os.Mkdir(zoneDir, 0o755); err != nil {
		t.Fatal(err)
	}
	running := filepath.Join(zoneDir, ".tmp-of-a-running-proxy")
	if err := os.WriteFile(running, []byte("half an entry"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "new", "zone")
	cfg := filepath.Join(dir, "Caddyfile")
	caddyfile := fmt.Sprintf(`{
	admin off
	edge_cache {
		zone a {
			path %s
		}
		zone b {
			path %s
		}
	}
}
:0 {
	edge_cache {
		zone a
	}
	respond ok
}
`, zoneDir, missing)
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, stdout, stderr := command(t, ctx, "validate", "--config", cfg, "--adapter", "caddyfile"); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(running); err != nil {
		t.Errorf("validate removed a running proxy's temporary file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("validate created a zone folder")
	}
	names, _ := os.ReadDir(zoneDir)
	if len(names) != 1 {
		t.Errorf("validate changed the zone folder: %v", names)
	}

	// A folder that cannot be created fails validation, saying why.
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(caddyfile, missing, filepath.Join(dir, "file", "zone"), 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := command(t, ctx, "validate", "--config", cfg, "--adapter", "caddyfile")
	if code == 0 || !strings.Contains(stderr, "not a folder") {
		t.Errorf("validate with a zone folder under a file: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestUsageNamesTheBinary: every subcommand is in the binary (package cli,
// through the root package), and its usage line says edgecache, the
// binary operators run, not caddy.
func TestUsageNamesTheBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sub := range []string{"demo", "drain", "fleet", "import-nginx", "purge", "cache-keys", "status", "warm"} {
		_, stdout, stderr := command(t, ctx, sub, "--help")
		out := stdout + stderr
		if !strings.Contains(out, "edgecache "+sub) || strings.Contains(out, "caddy "+sub) {
			t.Errorf("edgecache %s --help:\n%s", sub, out)
		}
	}
}
