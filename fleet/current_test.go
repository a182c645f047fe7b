package fleet

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// TestCurrent: a local entry is current when Redis holds the same
// version of it (a variant's too, and one whose metadata is larger than
// the first read), not when Redis holds another version or none.
func TestCurrent(t *testing.T) {
	r := testkit.StartRedis(t)
	f := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	same := entry("/same", []byte("v"))
	store(t, f, "z", "/same", same)
	other := entry("/other", []byte("v"))
	store(t, f, "z", "/other", other)
	big := entry("/big", []byte("v"))
	big.Header["X-Large"] = []string{strings.Repeat("x", 3*peekSize)}
	store(t, f, "z", "/big", big)
	v := entry("/v", []byte("fr"))
	v.Header["Vary"] = []string{"Accept-Language"}
	v.VaryNames, v.Variant = []string{"Accept-Language"}, cache.VariantOf([]string{"Accept-Language"}, http.Header{"Accept-Language": {"fr"}})
	store(t, f, "z", "/v", v)

	soft := entry("/soft", []byte("v"))
	store(t, f, "z", "/soft", soft)
	if _, err := f.Purge(context.Background(), Event{Zone: "z", Kind: KindPurgeKey, Key: "/soft", Soft: true}, nil); err != nil {
		t.Fatal(err)
	}
	version := func(key string, e *cache.Entry) cache.Version {
		return cache.Version{Key: key, StoredAt: e.StoredAt, ValidUntil: e.ValidUntil, SoftPurged: e.SoftPurged}
	}
	older := version("/other", other)
	older.StoredAt = older.StoredAt.Add(-time.Second) // an older local copy
	vs := []cache.Version{
		version("/same", same),
		older,
		version("/missing", same),
		version("/big", big),
		version(cache.VariantKey("/v", v.Variant), v),
		version("/soft", soft), // the copy of a proxy that missed the soft purge
	}
	got, err := f.Current(context.Background(), "z", vs)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, false, true, true, false}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: current %v, want %v", vs[i].Key, got[i], want[i])
		}
	}
	r.Stop()
	if _, err := f.Current(context.Background(), "z", vs); err == nil {
		t.Error("no error with Redis stopped")
	}
}
