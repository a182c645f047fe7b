package cache

import (
	"github.com/edgecache/edgecache/cache/disk"

	"github.com/edgecache/edgecache/internal/testkit"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// storeVariant stores body as the variant of key for a request with
// header req, as a response with "Vary: names" would be.
func storeVariant(t *testing.T, z *Zone, key string, names []string, req http.Header, body string) {
	t.Helper()
	m := testMeta(key, int64(len(body)))
	m.Header["Vary"] = names
	m.VaryNames = VaryNames(names)
	m.Variant = VariantOf(m.VaryNames, req)
	s := z.NewEntryWriter(m, z.Mark())
	s.Write([]byte(body))
	if _, ok := s.Commit(); !ok {
		t.Fatalf("variant %q of %s not stored", body, key)
	}
}

func lookupBody(z *Zone, key string, req http.Header) string {
	e, ok := z.Lookup(key, req)
	if !ok {
		return "(miss)"
	}
	return string(e.Body)
}

// RFC 9111 §4.1: several variants of one URL are kept side by side, and a
// request gets the one its header values select (normalised).
func TestZoneKeepsSeveralVariants(t *testing.T) {
	for _, onDisk := range []bool{false, true} {
		dir := t.TempDir()
		z := newTestZone(t, 64<<20, 0)
		if onDisk {
			d := openStore(t, dir, disk.Options{})
			var err error
			if z, err = NewZone(ZoneConfig{Name: "d", MemorySize: 64 << 20, Disk: d}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { z.Close() })
			for !z.IndexReady() {
				<-d.Loaded()
			}
		}
		gzip := http.Header{"Accept-Language": {"en, fr"}}
		plain := http.Header{}
		storeVariant(t, z, "/img", []string{"Accept-Language"}, gzip, "compressed")
		storeVariant(t, z, "/img", []string{"Accept-Language"}, plain, "identity")
		if got := lookupBody(z, "/img", http.Header{"Accept-Language": {"FR,en"}}); got != "compressed" {
			t.Errorf("onDisk %v: normalised request got %q, want the compressed variant", onDisk, got)
		}
		if got := lookupBody(z, "/img", plain); got != "identity" {
			t.Errorf("onDisk %v: plain request got %q", onDisk, got)
		}
		if got := lookupBody(z, "/img", http.Header{"Accept-Language": {"de"}}); got != "(miss)" {
			t.Errorf("onDisk %v: a third variant got %q, want a miss", onDisk, got)
		}
		if onDisk {
			// The index and the variants survive a restart.
			z.Close()
			z = reopenZone(t, z)
			if got := lookupBody(z, "/img", gzip); got != "compressed" {
				t.Errorf("after a restart: %q, want the compressed variant", got)
			}
		}
		// Purging the URL removes every variant.
		z.Purge("/img")
		if got := lookupBody(z, "/img", gzip); got != "(miss)" {
			t.Errorf("onDisk %v: after purge got %q", onDisk, got)
		}
		if keys, _, _ := z.Keys("/img", "", 10); len(keys) != 0 {
			t.Errorf("onDisk %v: keys left after purge: %q", onDisk, keys)
		}
	}
}

// RFC 9111 §4.4: invalidating a URL removes its variants, refuses the
// fills of that URL begun before, and leaves other fills alone (no
// zone-wide purge generation).
func TestZoneInvalidate(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	storeVariant(t, z, "/doc", []string{"Accept"}, http.Header{"Accept": {"text/html"}}, "html")
	if !zonePut(t, z, "/other", []byte("other"), true) {
		t.Fatal("not stored")
	}
	gen := z.Mark().Purge

	inFlightSame := z.NewEntryWriter(testMeta("/doc", 3), z.Mark())
	inFlightOther := z.NewEntryWriter(testMeta("/list", 4), z.Mark())
	if !z.Invalidate("/doc") {
		t.Error("Invalidate did not know the key")
	}
	if z.Mark().Purge != gen {
		t.Error("Invalidate bumped the zone-wide purge generation")
	}
	if got := lookupBody(z, "/doc", http.Header{"Accept": {"text/html"}}); got != "(miss)" {
		t.Errorf("invalidated variant still served: %q", got)
	}
	inFlightSame.Write([]byte("old"))
	if _, ok := inFlightSame.Commit(); ok {
		t.Error("a fill of the invalidated key begun before it was stored")
	}
	inFlightOther.Write([]byte("list"))
	if _, ok := inFlightOther.Commit(); !ok {
		t.Error("a fill of another key was disturbed by the invalidation")
	}
	if got := lookupBody(z, "/other", nil); got != "other" {
		t.Errorf("another key lost: %q", got)
	}
	// A fill begun after the invalidation stores.
	if !zonePut(t, z, "/doc", []byte("new"), true) {
		t.Error("a fill begun after the invalidation was refused")
	}
	if z.Invalidate("/never") {
		t.Error("Invalidate knew a key never stored")
	}
	if z.Stats.Invalidated.Load() != 1 {
		t.Errorf("Invalidated = %d, want 1", z.Stats.Invalidated.Load())
	}
}

// The invalidation record is bounded: when it is forgotten, stores begun
// before are refused rather than risk an invalid one.
func TestInvalidationsForget(t *testing.T) {
	var v invalidations
	v.add("a")
	early := v.now()
	for i := range maxTrackedInvalidations {
		v.add(strconv.Itoa(i))
	}
	late := v.now()
	v.add("b")
	if !v.since("zzz", early) {
		t.Error("a mark from before the record was forgotten passed")
	}
	if v.since("zzz", late) || !v.since("b", late) {
		t.Error("a mark from after the reset was judged wrongly")
	}
	if v.since("x", v.now()) {
		t.Error("nothing invalidated since, yet refused")
	}
}

// reopenZone closes z's disk store and opens a new zone on its folder, as
// a restart does.
func reopenZone(t *testing.T, z *Zone) *Zone {
	t.Helper()
	old := z.disk.(*disk.Store)
	dir := old.Dir()
	old.Close()
	d := openStore(t, dir, disk.Options{})
	nz, err := NewZone(ZoneConfig{Name: "d", MemorySize: 64 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nz.Close() })
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the index", nz.IndexReady))
	return nz
}
