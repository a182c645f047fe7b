package cache

import (
	"github.com/edgecache/edgecache/cache/disk"

	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestZoneImport(t *testing.T) {
	d := openStore(t, t.TempDir(), disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "imp", MemorySize: 1 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()

	stored := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	m := testMeta("/k", 5)
	m.StoredAt, m.ValidUntil = stored, stored.Add(time.Hour) // nginx had it expired
	if err := z.Import(m, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	e, ok := z.Get("/k")
	if !ok || !e.StoredAt.Equal(stored) || e.Fresh(time.Now()) || e.Header.Get("Content-Length") != "5" || !bytes.Equal(e.Body, []byte("hello")) {
		t.Fatalf("imported entry %+v, %v", e, ok)
	}
	// The same again (a resumed import), or an older one: refused.
	if err := z.Import(m, strings.NewReader("hello")); !errors.Is(err, ErrNewerInZone) {
		t.Errorf("same entry again: %v", err)
	}
	older := m
	older.StoredAt = stored.Add(-time.Hour)
	if err := z.Import(older, strings.NewReader("hello")); !errors.Is(err, ErrNewerInZone) {
		t.Errorf("older entry: %v", err)
	}
	// A newer one replaces it, in memory too.
	newer := m
	newer.StoredAt, newer.ValidUntil = time.Now(), time.Now().Add(time.Hour)
	if err := z.Import(newer, strings.NewReader("world")); err != nil {
		t.Fatal(err)
	}
	if e, _ := z.Get("/k"); !bytes.Equal(e.Body, []byte("world")) || !e.Fresh(time.Now()) {
		t.Errorf("after a newer import: %q", e.Body)
	}
	// A body cut short stores nothing.
	short := testMeta("/short", 10)
	if err := z.Import(short, strings.NewReader("abc")); err == nil {
		t.Error("a short body was stored")
	}
	if _, ok := z.Get("/short"); ok {
		t.Error("a short body is in the zone")
	}
	if z.Len() != 1 {
		t.Errorf("zone holds %d keys", z.Len())
	}
}

func TestZoneImportMemoryOnly(t *testing.T) {
	z := newTestZone(t, 1<<20, 1000)
	if err := z.Import(testMeta("/m", 3), strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if e, ok := z.Get("/m"); !ok || string(e.Body) != "abc" {
		t.Fatalf("memory import: %v", ok)
	}
	if err := z.Import(testMeta("/big", 2000), bytes.NewReader(make([]byte, 2000))); err == nil {
		t.Error("a body over memory_entry_max was imported into a memory-only zone")
	}
}
