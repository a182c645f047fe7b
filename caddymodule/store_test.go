package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// The refresh site replaces an entry at once: readers of the public site get
// the old body or the new one, whole, never a mix.
func TestRefreshOverwritesAtomically(t *testing.T) {
	const size = 256 << 10
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		letter := byte('a' + (n-1)%26)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("X-Letter", string(letter))
		chunk := bytes.Repeat([]byte{letter}, 16<<10)
		for range size / len(chunk) {
			w.Write(chunk)
			w.(http.Flusher).Flush() // stream it in pieces, as a slow backend would
		}
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
http://127.0.0.1:$REFRESH {
	edge_cache {
		refresh
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC", "REFRESH")
	pub := s.url("PUBLIC", "/overwritten")
	if r := s.get(t, pub); r.cacheStatus() != "MISS" || r.Body != strings.Repeat("a", size) {
		t.Fatalf("priming: %s %d bytes", r.cacheStatus(), len(r.Body))
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	letters := make(map[byte]int)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := s.get(t, pub)
				mu.Lock()
				switch {
				case r.Err != nil || r.Status != 200:
					problems = append(problems, fmt.Sprintf("status %d, error %v", r.Status, r.Err))
				case r.cacheStatus() != "HIT":
					problems = append(problems, "status "+r.cacheStatus())
				case len(r.Body) != size:
					problems = append(problems, fmt.Sprintf("%d bytes, want %d", len(r.Body), size))
				case strings.Count(r.Body, r.Body[:1]) != size:
					problems = append(problems, "a body mixing versions")
				case r.Header.Get("X-Letter") != r.Body[:1]:
					problems = append(problems, "the header of one version with the body of another")
				default:
					letters[r.Body[0]]++
				}
				mu.Unlock()
			}
		})
	}
	const versions = 12
	for i := 1; i <= versions; i++ {
		want := strings.Repeat(string(rune('a'+i)), size)
		r := s.get(t, s.url("REFRESH", "/overwritten"))
		if r.cacheStatus() != "BYPASS" || r.Body != want {
			t.Errorf("refresh %d: %s %q", i, r.cacheStatus(), abbreviate(r.Body))
		}
		// The next public request sees the new version.
		if r := s.get(t, pub); r.Body != want {
			t.Errorf("after refresh %d: public site served %q", i, abbreviate(r.Body))
		}
	}
	cancel()
	wg.Wait()
	for _, p := range problems[:min(len(problems), 10)] {
		t.Error(p)
	}
	if len(letters) < 2 {
		t.Errorf("readers saw only versions %v: the test did not overlap reads and overwrites", letters)
	}
	if be.Requests() != versions+1 {
		t.Errorf("%d backend requests, want %d", be.Requests(), versions+1)
	}
}

func TestTooLargeStreamsAndIsNotStored(t *testing.T) {
	const size = 200 << 10
	body := strings.Repeat("0123456789abcdef", size/16)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if !strings.Contains(r.URL.Path, "chunked") {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		for i := 0; i < size; i += 32 << 10 {
			io.WriteString(w, body[i:min(i+32<<10, size)])
			w.(http.Flusher).Flush()
		}
	})
	cf := globalOptions(`
		zone default {
			memory 64MiB
			memory_entry_max 64KiB
		}`) + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	for _, path := range []string{"/large", "/large-chunked"} {
		for i := range 2 {
			expect(t, fmt.Sprintf("%s #%d", path, i+1), s.get(t, s.url("PUBLIC", path)), 200, "MISS", body)
		}
	}
	if be.Requests() != 4 {
		t.Errorf("%d backend requests, want 4", be.Requests())
	}
	if n := activeApp(t).Zone("default").Len(); n != 0 {
		t.Errorf("zone holds %d keys", n)
	}
}

// A backend that breaks mid-body leaves nothing in the cache; the next
// request fetches anew.
func TestBackendErrorMidBodyStoresNothing(t *testing.T) {
	const size = 100_000
	body := strings.Repeat("x", size)
	var broken sync.Map // path -> true while the backend breaks it
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		chunked := strings.Contains(r.URL.Path, "chunked")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		if _, ok := broken.Load(r.URL.Path); !ok {
			io.WriteString(w, body)
			return
		}
		io.WriteString(w, body[:size/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	for _, path := range []string{"/broken", "/broken-chunked"} {
		broken.Store(path, true)
		u := s.url("PUBLIC", path)
		res, err := s.client.Get(u)
		if err == nil {
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err == nil && len(got) == size {
				t.Errorf("%s: the client of the broken response got it whole", path)
			}
			if len(got) > size/2 {
				t.Errorf("%s: the client got %d bytes, more than the backend sent", path, len(got))
			}
		}
		broken.Delete(path)
		expect(t, path+" after the break", s.get(t, u), 200, "MISS", body)
		expect(t, path+" then", s.get(t, u), 200, "HIT", body)
	}
	// The broken answers count as the MISSes they were: one per backend
	// request (the client's transport retries a GET cut before any byte
	// of its answer).
	zone := activeApp(t).Zone("default")
	if hits, misses := zone.Stats.Requests[cache.StatusHit].Load(), zone.Stats.Requests[cache.StatusMiss].Load(); hits != 2 || misses != int64(be.Requests()) || misses < 4 {
		t.Errorf("%d HIT, %d MISS counted for %d backend requests; want 2 HIT, a MISS each", hits, misses, be.Requests())
	}
	// Each cut answer is a backend failure: all but the two whole ones.
	if failed, want := zone.Stats.BackendErrors[cache.BackendFailed].Load(), int64(be.Requests()-2); failed != want {
		t.Errorf("%d backend failures counted, want %d (one per cut answer)", failed, want)
	}
}

// A client that goes away mid-body does not end the fill: the backend's
// answer is stored all the same, for the next requests (the backend is
// asked once). The request is counted as the MISS it was, though its cut
// answer panics past the deliver step that counts.
func TestClientDisconnectFillGoesOn(t *testing.T) {
	const size = 1 << 20
	body := strings.Repeat("z", size)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.WriteString(w, body[:64<<10])
		w.(http.Flusher).Flush()
		select { // a slow backend, unless the proxy gives up on it
		case <-r.Context().Done():
			return
		case <-time.After(time.Second):
		}
		io.WriteString(w, body[64<<10:])
	})
	cf := globalOptions("zone default 64MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	u := s.url("PUBLIC", "/abandoned")
	// A client of its own, so that closing mid-body closes the connection.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	zone := activeApp(t).Zone("default")
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the fill to be stored", func() bool {
		_, ok := zone.Get("/abandoned")
		return ok
	}))
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the MISS to be counted", func() bool {
		return zone.Stats.Requests[cache.StatusMiss].Load() == 1
	}))
	expect(t, "after the disconnect", s.get(t, u), 200, "HIT", body)
	if be.Requests() != 1 {
		t.Errorf("%d backend requests, want 1", be.Requests())
	}
	if hits, misses := zone.Stats.Requests[cache.StatusHit].Load(), zone.Stats.Requests[cache.StatusMiss].Load(); hits != 1 || misses != 1 {
		t.Errorf("%d HIT, %d MISS counted; want 1 each", hits, misses)
	}
	// The client left, the backend did not fail.
	for kind := range zone.Stats.BackendErrors {
		if n := zone.Stats.BackendErrors[kind].Load(); n != 0 {
			t.Errorf("%d backend errors of kind %d counted for a client that left", n, kind)
		}
	}
}

// Every entry just stored is served on the next request, with many keys:
// ristretto's Set is lossy, the zone must not be.
func TestManyKeysHitRightAfterStore(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		io.WriteString(w, r.URL.Path)
	})
	cf := globalOptions("zone default 256MiB") + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	const keys, workers = 20_000, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				path := "/k/" + strconv.Itoa(i)
				u := s.url("PUBLIC", path)
				for _, want := range []string{"MISS", "HIT"} {
					r := s.get(t, u)
					if r.cacheStatus() != want || r.Body != path {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %s %q, want %s", path, r.cacheStatus(), r.Body, want))
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d keys failed; first: %v", len(failures), keys, failures[:min(5, len(failures))])
	}
	if be.Requests() != keys {
		t.Errorf("%d backend requests, want %d", be.Requests(), keys)
	}
}
