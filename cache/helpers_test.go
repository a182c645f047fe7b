package cache

import (
	"net/http"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache/disk"
)

// The disk tier of the zones under test: as cache/disk's own tests open it.

func fastLoader(o disk.Options) disk.Options { o.LoaderSleep = time.Millisecond; return o }

func openStore(t testing.TB, dir string, opts disk.Options) *disk.Store {
	t.Helper()
	d, err := disk.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func waitLoaded(t testing.TB, d *disk.Store) {
	t.Helper()
	select {
	case <-d.Loaded():
	case <-time.After(20 * time.Second):
		t.Fatal("index rebuild did not finish")
	}
}

// testMeta is a response of size bytes, fresh for an hour.
func testMeta(key string, size int64) Meta {
	now := time.Now()
	return Meta{
		Key:                  key,
		Status:               200,
		Header:               http.Header{"Content-Type": {"image/png"}},
		StoredAt:             now,
		ValidUntil:           now.Add(time.Hour),
		StaleWhileRevalidate: 30 * time.Second,
		BodySize:             size,
	}
}
