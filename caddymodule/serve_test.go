package caddymodule

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

// TestServeReplacedDiskEntry: a disk entry whose file a refresh replaced
// after the look-up is reported before anything is written, so the caller
// can serve the newer version instead of cutting the response.
func TestServeReplacedDiskEntry(t *testing.T) {
	disk, err := cache.OpenDiskStore(t.TempDir(), cache.DiskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	zone, err := cache.NewZone(cache.ZoneConfig{Name: "z", MemorySize: 1 << 20, MemoryEntryMax: 1 << 10, Disk: disk})
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
	store('b') // the refresh listener overwrites it

	h := &Handler{}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/big", nil)
	err = h.serveEntryWith(rec, req, caddy.NewReplacer(), zone, old, cache.StatusHit)
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
