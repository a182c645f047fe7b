//go:build unix

package production_test

import (
	"hash/crc32"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// slowClientCaddyfile caches through a disk zone, as production's zones
// are, in front of one backend.
const slowClientCaddyfile = `{
	admin {$EDGECACHE_ADMIN}
	persist_config off
	auto_https off
	grace_period 1s
	edge_cache {
		zone default {
			memory 64MiB
			path {$EDGECACHE_CACHE_DIR}/default
		}
	}
}
{$EDGECACHE_PUBLIC} {
	bind 127.0.0.1
	edge_cache {
		valid 200 1h
	}
	reverse_proxy {$OMERO_READONLY}
}
http://127.0.0.1:{$EDGECACHE_REFRESH_PORT} {
	bind 127.0.0.1
	respond 404
}
http://127.0.0.1:{$EDGECACHE_LONG_PORT} {
	bind 127.0.0.1
	respond 404
}
`

// Issue 15: a client that reads 1 byte per second leads the fill of a
// 20 MiB uncached URL. Three clients that ask for it later get the whole
// body within the backend's time plus 100 ms, from the one backend
// request: the fill reads the backend at its speed into the entry, and
// they read the entry as it is written.
func TestSlowClientDoesNotSlowFill(t *testing.T) {
	const size, parts = 20 << 20, 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i % 251)
	}
	var ended atomic.Pointer[time.Time]
	e, be := newEdgeFor(t, slowClientCaddyfile, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for i := 0; i < size; i += size / parts {
			if i > 0 {
				time.Sleep(50 * time.Millisecond) // a backend of limited speed: 1 s in all
			}
			if _, err := w.Write(body[i : i+size/parts]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		now := time.Now()
		ended.Store(&now)
	})
	const uri = "/webgateway/archived_files/download/1"

	testkit.SlowClient(t, e.Public, uri)
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the slow client at the backend", func() bool { return be.Requests() == 1 }))
	asked := be.Seen()[0].At

	want := crc32.ChecksumIEEE(body)
	got := make([]testkit.Digest, 3)
	var wg sync.WaitGroup
	for i, lag := range []time.Duration{100, 300, 500} {
		wg.Go(func() {
			time.Sleep(time.Until(asked.Add(lag * time.Millisecond))) // the scenario: clients come later
			got[i] = testkit.GetDigest(t, http.DefaultClient, "http://"+e.Public+uri)
		})
	}
	wg.Wait()
	// The backend notes its end just after its last write, which the
	// clients may have read already.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the backend's end", func() bool { return ended.Load() != nil }))
	backend := ended.Load().Sub(asked)
	// What sending the body to three clients at once costs on this
	// machine (hits, the longest of two rounds), apart from waiting.
	var hit time.Duration
	for range 2 {
		hits := make([]testkit.Digest, 3)
		for i := range hits {
			wg.Go(func() { hits[i] = testkit.GetDigest(t, http.DefaultClient, "http://"+e.Public+uri) })
		}
		wg.Wait()
		for _, h := range hits {
			if h.CacheStatus != "HIT" || h.Sum != want {
				t.Errorf("a later client: %s, %d bytes", h.CacheStatus, h.Size)
			}
			hit = max(hit, h.Took)
		}
	}
	for i, r := range got {
		if r.Status != 200 || r.CacheStatus != "HIT" || r.Size != size || r.Sum != want {
			t.Errorf("client %d: %d %s, %d bytes (want the %d of the body)", i+1, r.Status, r.CacheStatus, r.Size, size)
		}
		if r.Took > backend+100*time.Millisecond+hit {
			t.Errorf("client %d had the body after %v; the backend took %v, a hit %v", i+1, r.Took, backend, hit)
		}
		t.Logf("client %d had the body after %v, %v after the backend sent its end; the backend took %v, a hit %v",
			i+1, r.Took, r.End.Sub(*ended.Load()), backend, hit)
	}
	if n := be.Requests(); n != 1 {
		t.Errorf("%d backend requests, want 1", n)
	}
}
