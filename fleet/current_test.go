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

	vs := []cache.Version{
		{Key: "/same", StoredAt: same.StoredAt},
		{Key: "/other", StoredAt: other.StoredAt.Add(-time.Second)}, // an older local copy
		{Key: "/missing", StoredAt: same.StoredAt},
		{Key: "/big", StoredAt: big.StoredAt},
		{Key: cache.VariantKey("/v", v.Variant), StoredAt: v.StoredAt},
	}
	got, err := f.Current(context.Background(), "z", vs)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, false, true, true}
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
