package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/internal/testkit"
	"github.com/edgecache/edgecache/maintenance"
)

// replacedDiskEntry stores /big in a zone's disk tier, looks it up, and
// stores it again (as the refresh listener would): the entry looked up is
// gone from disk. Its body is 'a's, the newer one's 'b's.
func replacedDiskEntry(t *testing.T) (zone *cache.Zone, old *cache.Entry) {
	t.Helper()
	disk, err := disk.Open(t.TempDir(), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	zone, err = cache.NewZone(cache.ZoneConfig{Name: "z", MemorySize: 1 << 20, MemoryEntryMax: 1 << 10, Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zone.Close() })
	store := func(fill byte) {
		s := zone.NewEntryWriter(cache.Meta{Key: "/big", Status: 200, Header: http.Header{}, StoredAt: time.Now(),
			ValidUntil: time.Now().Add(time.Hour), BodySize: 64 << 10}, zone.Mark())
		s.Write(bytes.Repeat([]byte{fill}, 64<<10))
		if _, ok := s.Commit(); !ok {
			t.Fatal("store refused")
		}
	}
	store('a')
	old, ok := zone.Get("/big")
	if !ok || old.InMemory() {
		t.Fatalf("want a disk-only entry, got %v %v", ok, old)
	}
	store('b')
	return zone, old
}

// TestServeReplacedDiskEntry: a disk entry whose file a refresh replaced
// after the look-up is reported before anything is written, so the caller
// can serve the newer version instead of cutting the response.
func TestServeReplacedDiskEntry(t *testing.T) {
	zone, old := replacedDiskEntry(t)
	h := &Handler{}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/big", nil)
	err := h.serveEntryWith(rec, req, caddy.NewReplacer(), zone, old, cache.StatusHit)
	if !errors.Is(err, errEntryGone) {
		t.Fatalf("serving the replaced entry: %v, want errEntryGone", err)
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("something was written: %d bytes, header %v", rec.Body.Len(), rec.Header())
	}
	fresh, _ := zone.Get("/big")
	rec = httptest.NewRecorder()
	h.statusValues[cache.StatusHit], h.statusAny[cache.StatusHit] = []string{"HIT"}, "HIT"
	if err := h.serveEntryWith(rec, req, caddy.NewReplacer(), zone, fresh, cache.StatusHit); err != nil {
		t.Fatal(err)
	}
	if rec.Body.Len() != 64<<10 || rec.Body.Bytes()[0] != 'b' {
		t.Errorf("newer version: %d bytes starting %q", rec.Body.Len(), rec.Body.Bytes()[:1])
	}
}

// TestServeVanishedEntryDuringMaintenance: during maintenance with
// serve_cached, an entry gone from disk between its look-up and the
// opening of its body is a miss, which gets the maintenance page, not an
// error page.
func TestServeVanishedEntryDuringMaintenance(t *testing.T) {
	zone, old := replacedDiskEntry(t)
	flag := filepath.Join(t.TempDir(), "maintenance.flag")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m := &maintenance.Handler{FlagFile: flag, ServeCached: true}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Cleanup() })

	h := &Handler{}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		maintenance.GateFrom(r.Context()).Claim() // as the maintenance step does before serving
		return h.serveEntry(w, r, zone, old, cache.StatusHit)
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/big", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	if err := m.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("an entry gone during maintenance: %v, want the maintenance page", err)
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || rec.Body.Len() == 0 {
		t.Errorf("an entry gone during maintenance: %d, Retry-After %q, %d bytes; want the page", rec.Code, rec.Header().Get("Retry-After"), rec.Body.Len())
	}
}

// TestExpiredEntryGoneWaitsForTheFill: a stale disk entry that would be
// served as UPDATING while another request refreshes it, but whose file
// went since the look-up, is no error page: the request waits for the fill
// and gets what it stores, as a miss would.
func TestExpiredEntryGoneWaitsForTheFill(t *testing.T) {
	zone, old := replacedDiskEntry(t)
	fill, leader := zone.JoinFill("/big", time.Minute)
	if !leader {
		t.Fatal("the test's fill does not lead")
	}
	h := &Handler{app: &App{}, lock: true, LockTimeout: caddy.Duration(10 * time.Second), useStale: staleUpdating}
	h.statusValues[cache.StatusHit], h.statusAny[cache.StatusHit] = []string{"HIT"}, "HIT"
	h.StatusHeader = "X-Cache-Status"
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/big", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("the backend was asked: the request should wait for the fill under way")
		return nil
	})
	done := make(chan error, 1)
	go func() {
		done <- h.expired(rec, req, next, fetchJob{zone: zone, key: "/big", mark: zone.Mark()}, old, zone.Clock().Now())
	}()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the request waits on the fill", func() bool {
		return zone.Stats.LockWaits.Load() > 0
	}))
	fill.Finish(cache.Awaited{Result: cache.AwaitStored}) // the newer version ('b') is in the zone
	if err := <-done; err != nil {
		t.Fatalf("expired entry gone: %v, want the fill's entry", err)
	}
	if got := rec.Header().Get("X-Cache-Status"); got != "HIT" || rec.Body.Len() != 64<<10 || rec.Body.Bytes()[0] != 'b' {
		t.Errorf("answer %q with %d bytes starting %q; want HIT with the fill's 64 KiB of 'b'", got, rec.Body.Len(), rec.Body.Bytes()[:min(1, rec.Body.Len())])
	}
}

// A hit from disk allocates one thing more than a hit from memory: the
// body's reader, which holds the open file through the response. The
// entry, its Age string and the look-up are shared with the file's other
// hits (cache.fromDisk).
func TestDiskHitAllocations(t *testing.T) {
	be := testkit.NewBackend(t, versioned)
	allocs := func(zone string) float64 {
		return hitAllocations(t, globalOptions(zone)+`
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "/alloc")
	}
	memory := allocs("zone default 64MiB")
	disk := allocs("zone default {\n\t\tmemory 64MiB\n\t\tmemory_entry_max 1B\n\t\tpath " + t.TempDir() + "\n\t}")
	t.Logf("allocations per hit: %.1f from memory, %.1f from disk", memory, disk)
	// Under the race detector sync.Pool drops pooled buffers at random,
	// which shows as up to a few allocations either way.
	limit := 1.5
	if raceEnabled {
		limit = 3.5
	}
	if disk-memory >= limit {
		t.Errorf("a disk hit allocates %.1f more than a memory hit", disk-memory)
	}
}
