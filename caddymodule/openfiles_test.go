package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/internal/testkit"
)

// TestOpenFilesOption: a zone's open_files sizes its disk tier's
// open-file cache, whose files and heap are exported and counted in the
// memory limit; a reload applies a new size to the store it keeps.
func TestOpenFilesOption(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Length", "2048")
		w.Write(sizedBody(2048))
	})
	dir := t.TempDir()
	config := func(openFiles string) string {
		return `{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	log {
		output discard
	}
	edge_cache {
		zone default {
			memory 64MiB
			memory_entry_max 1B
			path ` + dir + `
			` + openFiles + `
		}
	}
}
:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
:$METRICS {
	metrics /metrics
}
`
	}
	s := startCaddy(t, config("open_files 3"), be, "PUBLIC", "METRICS")
	reload := func(openFiles string) {
		t.Helper()
		src := strings.NewReplacer("$BACKEND", be.Addr(), "$PUBLIC", strconv.Itoa(s.ports["PUBLIC"]),
			"$METRICS", strconv.Itoa(s.ports["METRICS"])).Replace(config(openFiles))
		if err := caddy.Load(adapt(t, src), true); err != nil {
			t.Fatal(err)
		}
	}
	hits := func() {
		t.Helper()
		for i := range 5 {
			u := s.url("PUBLIC", fmt.Sprint("/", i))
			if r := s.get(t, u); r.cacheStatus() != "HIT" && r.cacheStatus() != "MISS" {
				t.Fatalf("GET %s: %s", u, r.cacheStatus())
			}
			expect(t, "hit "+u, s.get(t, u), 200, "HIT", string(sizedBody(2048)))
		}
	}
	hits()
	a := activeApp(t)
	d := a.disks["default"]
	files, bytes := d.OpenFiles()
	if files != 3 || bytes <= 0 {
		t.Fatalf("open_files 3: %d files, %d B open", files, bytes)
	}
	m := scrape(t, s.url("METRICS", ""))
	for k, v := range map[string]string{
		`edgecache_disk_open_files{zone="default"}`:      "3",
		`edgecache_disk_open_file_bytes{zone="default"}`: fmt.Sprint(bytes),
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	tags, _, _ := a.zones["default"].TagIndexBytes()
	if got := a.zonesBytes() - a.Zones["default"].Memory - tags - d.IndexBytes(); got != bytes {
		t.Errorf("the memory limit counts %d B of open files, want %d", got, bytes)
	}

	reload("open_files off")
	if activeApp(t).disks["default"] != d {
		t.Fatal("the reload made a new disk store")
	}
	if files, bytes := d.OpenFiles(); files != 0 || bytes != 0 {
		t.Fatalf("after a reload to open_files off: %d files, %d B", files, bytes)
	}
	hits()
	if files, _ := d.OpenFiles(); files != 0 {
		t.Fatalf("open_files off: %d files kept open", files)
	}

	reload("") // the default, 512
	hits()
	if files, _ := d.OpenFiles(); files != 5 {
		t.Fatalf("default open_files: %d files, want all 5", files)
	}
}

// open_files means nothing without a disk tier: the JSON config fails as
// the Caddyfile does.
func TestOpenFilesNeedsPath(t *testing.T) {
	app := App{Zones: map[string]*ZoneConfig{"mem": {OpenFiles: 100}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	err := app.Provision(ctx)
	if err == nil {
		app.Cleanup()
	}
	if err == nil || !strings.Contains(err.Error(), "zone mem: open_files needs a disk path") {
		t.Fatalf("Provision: %v", err)
	}
}

// Zones whose open files may take more than half the process's file
// descriptors get a warning at load; the default does not.
func TestOpenFilesWarnsNearTheLimit(t *testing.T) {
	limit := maxOpenFiles()
	if limit <= 0 || limit > 1<<30 {
		t.Skipf("RLIMIT_NOFILE is %d here", limit)
	}
	for _, tc := range []struct {
		openFiles int
		warns     bool
	}{
		{0, limit < 2*disk.DefaultOpenFiles},
		{-1, false},
		{int(limit/2) + 1, true},
	} {
		core, logs := observer.New(zap.WarnLevel)
		a := App{logger: zap.New(core), Zones: map[string]*ZoneConfig{
			"disk": {Path: "/var/cache/x", OpenFiles: tc.openFiles},
			"mem":  {},
		}}
		a.checkOpenFiles()
		if warned := logs.FilterMessageSnippet("open_files").Len() == 1; warned != tc.warns {
			t.Errorf("open_files %d with RLIMIT_NOFILE %d: warned %v", tc.openFiles, limit, warned)
		}
	}
}
