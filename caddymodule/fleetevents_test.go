package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/fleet"
	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// fleetSite starts a Caddy in a fleet on r (node proxy-a) with a shared
// disk zone (thumbs, for /t/*) and a zone kept out of it (local, for /l/*),
// and a second member of the fleet (node other) following the event log.
func fleetSite(t *testing.T, r *testkit.Redis) (s *site, admin string, other *fleet.Fleet, seen func() []string, dir string) {
	t.Helper()
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		w.Header().Set("Location", "/t/moved")
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	})
	dir = t.TempDir()
	cf := strings.Replace(globalOptions(`		shared {
			redis `+r.Addr+`
			node proxy-a
			timeout 1s
		}
		zone thumbs {
			memory 16MiB
			path `+dir+`
		}
		zone local {
			memory 16MiB
			shared off
		}`), "admin off", "admin 127.0.0.1:$ADMIN", 1) + `
http://127.0.0.1:$PUBLIC {
	@t path /t/*
	edge_cache @t {
		zone thumbs
		valid 200 1h
	}
	@l path /l/*
	edge_cache @l {
		zone local
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
http://127.0.0.1:$REFRESH {
	edge_cache {
		zone thumbs
		refresh
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s = startCaddy(t, cf, be, "PUBLIC", "ADMIN", "REFRESH")
	admin = "127.0.0.1:" + strconv.Itoa(s.ports["ADMIN"])
	other, err := fleet.Open(fleet.Config{Addrs: []string{r.Addr}, Node: "other", Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	var mu sync.Mutex
	var events []string
	fo := other.Follow(nil, func(ev fleet.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s %s %s %s", ev.Node, ev.Kind, ev.Zone, ev.Key))
	}, func(fleet.Loss) {})
	t.Cleanup(fo.Stop)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the other member to follow the log", func() bool { return fo.Position().ID != "" }))
	seen = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(events)
	}
	return s, admin, other, seen, dir
}

// TestFleetEventsApplied: another proxy's events reach this one's shared
// zones (not those that say shared off) within a second.
func TestFleetEventsApplied(t *testing.T) {
	r := testkit.StartRedis(t)
	s, _, other, _, _ := fleetSite(t, r)
	for _, p := range []string{"/t/1", "/t/2", "/t/3", "/l/1"} {
		expect(t, "first "+p, s.get(t, s.url("PUBLIC", p)), 200, "MISS", "body of "+p)
		expect(t, "second "+p, s.get(t, s.url("PUBLIC", p)), 200, "HIT", "body of "+p)
	}
	app := activeApp(t)
	has := func(zone, key string) bool { _, ok := app.Zone(zone).Lookup(key, nil); return ok }
	ctx := context.Background()
	for _, c := range []struct {
		ev   fleet.Event
		gone []string
	}{
		{fleet.Event{Zone: "thumbs", Kind: fleet.KindRefresh, Key: "/t/1"}, []string{"/t/1"}},
		{fleet.Event{Zone: "thumbs", Kind: fleet.KindInvalidate, Key: "/t/2"}, []string{"/t/2"}},
		{fleet.Event{Kind: fleet.KindPurgePrefix, Key: "/"}, []string{"/t/3"}},
	} {
		start := time.Now()
		if _, err := other.Publish(ctx, c.ev); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, time.Second, func() string {
			for _, k := range c.gone {
				if has("thumbs", k) {
					return fmt.Sprintf("%s still in thumbs after %+v", k, c.ev)
				}
			}
			return ""
		})
		t.Logf("%s applied in %s", c.ev.Kind, time.Since(start))
	}
	if !has("local", "/l/1") {
		t.Error("a purge of every zone from another proxy reached a zone that says shared off")
	}
	if s := app.fleet.EventStats(); s.Applied != 3 {
		t.Errorf("applied %d events, want 3", s.Applied)
	}
}

// TestFleetPurgePublishes: a purge through the admin API removes the
// entries from Redis and tells the fleet; an unsafe request's
// invalidation does too; a purge of a zone that says shared off stays
// here.
func TestFleetPurgePublishes(t *testing.T) {
	r := testkit.StartRedis(t)
	s, admin, _, seen, dir := fleetSite(t, r)
	for _, k := range []string{"edgecache:{thumbs:/t/9}", "edgecache:{thumbs:/t*}", "edgecache:{thumbs:/u/1}"} {
		if out, err := r.CLI("SET", k, "x"); err != nil || out != "OK" {
			t.Fatalf("SET %s: %s %v", k, out, err)
		}
	}
	expect(t, "fill", s.get(t, s.url("PUBLIC", "/t/1")), 200, "MISS", "body of /t/1")
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the fill to reach Redis", func() bool {
		out, _ := r.CLI("EXISTS", "edgecache:{thumbs:/t/1}")
		return out == "1"
	}))
	var purged adminapi.PurgeResponse
	if err := adminCall(t, admin, http.MethodPost, adminapi.PurgePath, adminapi.PurgeRequest{Prefix: "/t/"}, &purged); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if purged.Purged != 1 || purged.Shared == nil || *purged.Shared != 2 {
		t.Errorf("purge answered %d entries and %v values from Redis, want 1 and 2", purged.Purged, purged.Shared)
	}
	for k, want := range map[string]string{"edgecache:{thumbs:/t/9}": "0", "edgecache:{thumbs:/t*}": "1", "edgecache:{thumbs:/u/1}": "1"} {
		if got, _ := r.CLI("EXISTS", k); got != want {
			t.Errorf("EXISTS %s = %s, want %s", k, got, want)
		}
	}
	purged = adminapi.PurgeResponse{}
	if err := adminCall(t, admin, http.MethodPost, adminapi.PurgePath, adminapi.PurgeRequest{Zone: "local", All: true}, &purged); err != nil || purged.Shared != nil {
		t.Errorf("purge of a zone out of the fleet: %+v %v", purged, err)
	}
	// An invalidation is published for a key some tier holds: /t/5 here,
	// /t/moved (both POSTs' Location) in Redis, once; /t/6, held nowhere,
	// publishes nothing.
	expect(t, "fill", s.get(t, s.url("PUBLIC", "/t/5")), 200, "MISS", "body of /t/5")
	if out, err := r.CLI("SET", "edgecache:{thumbs:/t/moved}", "x"); err != nil || out != "OK" {
		t.Fatalf("SET: %s %v", out, err)
	}
	for _, p := range []string{"/t/6", "/t/5"} {
		if r := s.do(t, http.MethodPost, s.url("PUBLIC", p)); r.Status != 200 {
			t.Fatalf("POST: %d", r.Status)
		}
	}
	want := []string{"proxy-a purge_prefix  /t/", "proxy-a invalidate thumbs /t/moved", "proxy-a invalidate thumbs /t/5"}
	testkit.Eventually(t, 10*time.Second, func() string {
		if got := seen(); !slices.Equal(got, want) {
			return fmt.Sprintf("the other member saw %q, want %q", got, want)
		}
		return ""
	})

	// The fleet view lists this proxy, caught up (after the events above,
	// at the next heartbeat), and its position is saved in the shared
	// zone's folder.
	var resp adminapi.FleetResponse
	testkit.Eventually(t, 5*time.Second, func() string {
		resp = adminapi.FleetResponse{}
		if err := adminCall(t, admin, http.MethodGet, adminapi.FleetPath, nil, &resp); err != nil {
			return fmt.Sprintf("GET %s: %v", adminapi.FleetPath, err)
		}
		if len(resp.Members) != 1 || resp.Members[0].LastEvent == "" || resp.Members[0].Behind != 0 {
			return fmt.Sprintf("GET %s: %+v", adminapi.FleetPath, resp)
		}
		return ""
	})
	// The admin routes are on the admin listener only (localhost:2019 in
	// production), never on a site's.
	for _, path := range []string{adminapi.FleetPath, adminapi.DrainPath, adminapi.PurgePath} {
		if r := s.do(t, http.MethodGet, s.url("PUBLIC", path)); strings.Contains(r.Body, "members") || strings.Contains(r.Body, "draining") || strings.Contains(r.Body, "error") {
			t.Errorf("the public site answers %s: %d %q", path, r.Status, r.Body)
		}
	}
	var health adminapi.HealthState
	if err := adminCall(t, admin, http.MethodGet, adminapi.DrainPath, nil, &health); err != nil || health.Node != "proxy-a" || health.Shared != "up" {
		t.Errorf("health in a fleet: %+v %v", health, err)
	}
	m := resp.Members[0]
	if m.Node != "proxy-a" || m.Version == "" || !slices.Equal(m.Zones, []string{"thumbs"}) || m.LastEvent == "" || m.Behind != 0 || time.Since(m.Seen) > 10*time.Second {
		t.Errorf("member %+v", m)
	}
	testkit.Eventually(t, 5*time.Second, func() string {
		b, err := os.ReadFile(filepath.Join(dir, positionFile))
		var p fleet.Position
		if err != nil || json.Unmarshal(b, &p) != nil || p.ID != m.LastEvent {
			return fmt.Sprintf("position file %q %v, want ID %s", b, err, m.LastEvent)
		}
		return ""
	})
}

// TestFleetRefreshAnnounced: a fetch through the cache buster is
// announced once the new entry is in Redis, so that the other proxies,
// dropping their copies, find the new one there.
func TestFleetRefreshAnnounced(t *testing.T) {
	r := testkit.StartRedis(t)
	s, _, _, seen, _ := fleetSite(t, r)
	expect(t, "refresh", s.get(t, s.url("REFRESH", "/t/7")), 200, "BYPASS", "body of /t/7")
	testkit.Eventually(t, 10*time.Second, func() string {
		if got := seen(); !slices.Equal(got, []string{"proxy-a refresh thumbs /t/7"}) {
			return fmt.Sprintf("the other member saw %q", got)
		}
		return ""
	})
	if out, _ := r.CLI("EXISTS", "edgecache:{thumbs:/t/7}"); out != "1" {
		t.Errorf("the refreshed entry is not in Redis when the refresh is announced: EXISTS %s", out)
	}
}

// TestSavedPosition: a restarted proxy goes on from the oldest position
// its shared disk zones saved, in this fleet's log only.
func TestSavedPosition(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	a := &App{Zones: map[string]*ZoneConfig{"a": {Path: dirs[0]}, "b": {Path: dirs[1]}, "off": {Path: dirs[2]}, "mem": {}},
		sharedZones: map[string]bool{"a": true, "b": true, "mem": true}}
	fe := &fleetEvents{app: a, log: zap.NewNop()}
	if p := fe.savedPosition("f"); p != nil {
		t.Fatalf("no files: %+v", p)
	}
	write := func(dir string, rec positionRecord) {
		b, _ := json.Marshal(rec)
		if err := disk.WriteFolderFile(filepath.Join(dir, positionFile), b); err != nil {
			t.Fatal(err)
		}
	}
	write(dirs[0], positionRecord{fleet.Position{ID: "20-0", Added: 7}, "f"})
	write(dirs[1], positionRecord{fleet.Position{ID: "10-0", Added: 5}, "f"})
	write(dirs[2], positionRecord{fleet.Position{ID: "1-0", Added: 1}, "f"}) // shared off: not counted
	if p := fe.savedPosition("f"); p == nil || p.ID != "10-0" || p.Added != 5 {
		t.Errorf("saved position %+v, want the oldest of the shared zones (10-0)", p)
	}
	if p := fe.savedPosition("another fleet"); p != nil {
		t.Errorf("a position in another fleet's log was used: %+v", p)
	}
}
