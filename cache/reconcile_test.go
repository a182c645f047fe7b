package cache

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache/disk"
)

// TestReconcile: the entries the proof says current stay, on disk and in
// memory; the others go from both tiers; a failed proof drops its batch;
// Vary indexes are kept; no entry is served before it is proven.
func TestReconcile(t *testing.T) {
	d := openStore(t, t.TempDir(), disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "rec", MemorySize: 1 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	stored := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, k := range []string{"/keep", "/drop", "/also-keep"} {
		m := testMeta(k, 5)
		m.StoredAt, m.ValidUntil = stored, stored.Add(24*time.Hour)
		if err := z.Import(m, strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
		z.Get(k) // promoted to memory too
	}
	var asked []string
	kept, dropped, err := z.Reconcile(func(vs []Version) ([]bool, error) {
		if _, ok := z.Get("/keep"); ok {
			t.Error("an entry not proven yet is served during the pass")
		}
		ok := make([]bool, len(vs))
		for i, v := range vs {
			asked = append(asked, v.Key)
			if !v.StoredAt.Equal(stored) {
				t.Errorf("%s: version stored at %v, want %v", v.Key, v.StoredAt, stored)
			}
			ok[i] = v.Key != "/drop"
		}
		return ok, nil
	})
	if err != nil || kept != 2 || dropped != 1 || len(asked) != 3 {
		t.Fatalf("Reconcile: kept %d, dropped %d, %v; asked %q", kept, dropped, err, asked)
	}
	if _, ok := z.Get("/drop"); ok {
		t.Error("/drop is still served")
	}
	if d.Has("/drop") {
		t.Error("/drop is still on disk")
	}
	for _, k := range []string{"/keep", "/also-keep"} {
		if _, ok := z.Get(k); !ok {
			t.Errorf("%s was dropped", k)
		}
	}
	kept, dropped, err = z.Reconcile(func(vs []Version) ([]bool, error) { return nil, errors.New("redis down") })
	if err == nil || kept != 0 || dropped != 2 {
		t.Errorf("Reconcile with a failing proof: kept %d, dropped %d, %v; want everything dropped and the error", kept, dropped, err)
	}
	if z.Len() != 0 {
		t.Errorf("%d entries left", z.Len())
	}
}
