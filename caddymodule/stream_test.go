//go:build unix

package caddymodule

import (
	"bytes"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// memAndDiskSites caches the backend through a memory zone (MEM) and a
// disk zone (DISK), whose memory tier holds no body over 64 KiB, with the
// given lock_timeout.
func memAndDiskSites(t *testing.T, lockTimeout string) string {
	site := func(zone string) string {
		return `
http://127.0.0.1:$` + strings.ToUpper(zone) + ` {
	edge_cache {
		zone ` + zone + `
		valid 200 1h
		lock_timeout ` + lockTimeout + `
	}
	reverse_proxy $BACKEND
}
`
	}
	return globalOptions(`zone mem 256MiB
		zone disk {
			memory 64MiB
			memory_entry_max 64KiB
			path `+t.TempDir()+`
		}`) + site("mem") + site("disk")
}

// pacedBody is a body of size bytes that tells where each byte belongs.
func pacedBody(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// pacedBackend sends body in 16 parts over about 640 ms (with a
// Content-Length unless the path says chunked), and records when the last
// part was sent.
type pacedBackend struct {
	*testkit.Backend
	ended atomic.Pointer[time.Time]
}

func newPacedBackend(t *testing.T, body []byte) *pacedBackend {
	b := &pacedBackend{}
	b.Backend = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if !bytes.Contains([]byte(r.URL.Path), []byte("chunked")) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		part := len(body) / 16
		for i := 0; i < len(body); i += part {
			if i > 0 {
				time.Sleep(40 * time.Millisecond) // a backend of limited speed
			}
			if _, err := w.Write(body[i:min(i+part, len(body))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		now := time.Now()
		b.ended.Store(&now)
	})
	return b
}

// A client that reads 1 byte per second leads the fill of an uncached URL:
// three clients that ask 100 to 500 ms later get the whole body within the
// backend's time plus 100 ms, from the one backend request (issue 15). The
// fill reads the backend at its speed into the entry (memory, or the disk
// temp file), and the other clients read the entry as it is written, or,
// for a body of unknown length that only memory holds, once it is stored.
func TestSlowClientDoesNotSlowFill(t *testing.T) {
	// Far more than the socket buffers between the proxy and a client
	// that reads nothing hold (1 MiB is not).
	const size = 4 << 20
	body := pacedBody(size)
	want := crc32.ChecksumIEEE(body)
	be := newPacedBackend(t, body)
	s := startCaddy(t, memAndDiskSites(t, "3s"), be.Backend, "MEM", "DISK")
	for _, c := range []struct{ listener, path string }{
		{"MEM", "/length"}, {"MEM", "/chunked"}, {"DISK", "/length"}, {"DISK", "/chunked"},
	} {
		t.Run(c.listener+c.path, func(t *testing.T) {
			u := s.url(c.listener, c.path)
			before := be.Requests()
			be.ended.Store(nil)
			testkit.SlowClient(t, "127.0.0.1:"+strconv.Itoa(s.ports[c.listener]), c.path)
			testkit.Eventually(t, 5*time.Second, testkit.Holds("the slow client at the backend", func() bool { return be.Requests() == before+1 }))
			asked := be.Seen()[before].At
			var wg sync.WaitGroup
			got := make([]testkit.Digest, 3)
			for i, lag := range []time.Duration{100, 300, 500} {
				wg.Go(func() {
					time.Sleep(time.Until(asked.Add(lag * time.Millisecond))) // the scenario: clients come later
					got[i] = testkit.GetDigest(t, s.client, u)
				})
			}
			wg.Wait()
			// The backend notes its end just after its last write, which
			// the clients may have read already.
			testkit.Eventually(t, 5*time.Second, testkit.Holds("the backend's end", func() bool { return be.ended.Load() != nil }))
			ended := be.ended.Load()
			// What sending the body to three clients at once costs the
			// proxy and the clients on this machine (hits, the longest of
			// two rounds), apart from waiting: loaded machines, under the
			// race detector, take a good part of a second.
			var hit time.Duration
			for range 2 {
				hits := make([]testkit.Digest, 3)
				for i := range hits {
					wg.Go(func() { hits[i] = testkit.GetDigest(t, s.client, u) })
				}
				wg.Wait()
				for i, h := range hits {
					if h.Status != 200 || h.CacheStatus != "HIT" || h.Sum != want {
						t.Errorf("hit %d: %d %s, %d bytes", i+1, h.Status, h.CacheStatus, h.Size)
					}
					hit = max(hit, h.Took)
				}
			}
			backend := ended.Sub(asked)
			for i, r := range got {
				if r.Status != 200 || r.CacheStatus != "HIT" || r.Size != size || r.Sum != want {
					t.Errorf("client %d: %d %s, %d bytes (want the %d of the body)", i+1, r.Status, r.CacheStatus, r.Size, size)
				}
				// The measure: a client waits no longer than the
				// backend takes, plus 100 ms (plus the cost of the hits).
				// A body of unknown length with no disk tier is not read
				// as it is written (it may outgrow memory): its clients
				// get it once stored, which costs a loaded machine under
				// the race detector more than the hits; they still do not
				// wait for the slow client (lock_timeout, 3 s).
				budget := backend + 100*time.Millisecond + hit
				if c.listener == "MEM" && c.path == "/chunked" {
					budget = 3 * time.Second
				}
				if r.Took > budget {
					t.Errorf("client %d had the body after %v; the backend took %v, a hit %v", i+1, r.Took, backend, hit)
				}
				t.Logf("client %d had the body after %v, %v after the backend sent its end (%s); the backend took %v, a hit %v",
					i+1, r.Took, r.End.Sub(*ended), ended.Format("05.000"), backend, hit)
			}
			if n := be.Requests() - before; n != 1 {
				t.Errorf("%d backend requests, want 1", n)
				for _, r := range be.Seen()[before:] {
					t.Logf("backend request %s %s at %v %v", r.Method, r.URI, r.At.Sub(asked), r.Header)
				}
			}
		})
	}
}

// A fill whose backend breaks mid-body ends the answers of the clients that
// read it as it was written with an error, never a short body that looks
// complete, and stores nothing.
func TestFillBreakingMidBodyFailsItsReaders(t *testing.T) {
	const size = 1 << 20
	body := pacedBody(size)
	var breakNow atomic.Pointer[chan struct{}]
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if !bytes.Contains([]byte(r.URL.Path), []byte("chunked")) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		ch := breakNow.Load()
		if ch == nil {
			w.Write(body)
			return
		}
		w.Write(body[:size/2])
		w.(http.Flusher).Flush()
		select {
		case <-*ch:
		case <-r.Context().Done():
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	})
	s := startCaddy(t, memAndDiskSites(t, "10s"), be, "MEM", "DISK")
	for _, c := range []struct{ listener, zone, path string }{
		{"MEM", "mem", "/length"}, {"DISK", "disk", "/length"}, {"DISK", "disk", "/chunked"},
	} {
		t.Run(c.listener+c.path, func(t *testing.T) {
			ch := make(chan struct{})
			breakNow.Store(&ch)
			before := be.Requests()
			u := s.url(c.listener, c.path)
			const clients = 3
			var headers atomic.Int32
			type result struct {
				n      int
				err    error
				status string
			}
			results := make([]result, clients)
			var wg sync.WaitGroup
			for i := range clients {
				if i == 1 {
					testkit.Eventually(t, 5*time.Second, testkit.Holds("the fill at the backend", func() bool { return be.Requests() == before+1 }))
				}
				wg.Go(func() {
					res, err := s.client.Get(u)
					if err != nil {
						results[i].err = err
						headers.Add(1)
						return
					}
					defer res.Body.Close()
					headers.Add(1)
					results[i].status = res.Header.Get("X-Cache-Status")
					got, err := io.ReadAll(res.Body)
					results[i] = result{len(got), err, results[i].status}
				})
			}
			// Every client has its answer's header, and some of the body.
			testkit.Eventually(t, 5*time.Second, testkit.Holds("every client's header", func() bool { return headers.Load() == clients }))
			breakNow.Store(nil)
			close(ch)
			wg.Wait()
			for i, r := range results {
				if r.err == nil {
					t.Errorf("client %d (%s): a complete-looking answer of %d bytes from a fill that broke", i+1, r.status, r.n)
				}
			}
			if want := []string{"MISS", "HIT", "HIT"}; results[0].status != want[0] || results[1].status != want[1] || results[2].status != want[2] {
				t.Errorf("statuses %q %q %q, want %v", results[0].status, results[1].status, results[2].status, want)
			}
			if _, ok := activeApp(t).Zone(c.zone).Get(c.path); ok {
				t.Error("the broken fill was stored")
			}
			expect(t, "after the break", s.get(t, u), 200, "MISS", string(body))
			expect(t, "then", s.get(t, u), 200, "HIT", string(body))
		})
	}
}

// With no disk tier, a body over the memory tier's entry limit is passed
// through unstored at the pace of the client that leads its fill: the proxy
// buffers none of it beyond the entry limit (and the sockets' buffers), and
// the clients that wait on the fill go on as before, fetching for
// themselves after lock_timeout.
func TestSlowClientTooLargeForMemoryIsNotBuffered(t *testing.T) {
	const size = 64 << 20
	part := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	var written atomic.Int64
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if !bytes.Contains([]byte(r.URL.Path), []byte("chunked")) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		for i := 0; i < size; i += len(part) {
			if _, err := w.Write(part); err != nil {
				return
			}
			if r.Header.Get("X-Waiter") == "" {
				written.Add(int64(len(part)))
			}
		}
	})
	cf := globalOptions(`
		zone default {
			memory 64MiB
			memory_entry_max 1MiB
		}`) + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 300ms
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	for _, path := range []string{"/length", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			written.Store(0)
			before := be.Requests()
			testkit.SlowClient(t, "127.0.0.1:"+strconv.Itoa(s.ports["PUBLIC"]), path)
			// The backend is held back by the slow client: what it wrote
			// stops growing.
			var last int64
			var since time.Time
			testkit.Eventually(t, 20*time.Second, testkit.Holds("the backend to be held back", func() bool {
				if n := written.Load(); n != last || since.IsZero() {
					last, since = n, time.Now()
				}
				return time.Since(since) > 300*time.Millisecond
			}))
			if last > size/2 {
				t.Errorf("the backend sent %d MiB of %d to a client that reads nothing: buffered by the proxy", last>>20, size>>20)
			}
			r := s.get(t, s.url("PUBLIC", path), "X-Waiter", "1")
			if r.Err != nil || r.Status != 200 || r.cacheStatus() != "MISS" || len(r.Body) != size {
				t.Errorf("a waiter: %d %s, %d bytes, %v", r.Status, r.cacheStatus(), len(r.Body), r.Err)
			}
			if n := be.Requests() - before; n != 2 {
				t.Errorf("%d backend requests, want 2", n)
			}
		})
	}
}

// The clients that read a fill as it is written are answered as hits of
// the entry will be: a Range, a HEAD, a conditional; a client of another
// variant is not given this one, and fetches its own.
func TestStreamingWaitersAnswerLikeHits(t *testing.T) {
	const size = 1 << 20
	body := pacedBody(size)
	paced := newPacedBackend(t, body)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Vary", "X-Lang")
		if r.Header.Get("X-Lang") != "en" {
			w.Write([]byte("other"))
			return
		}
		paced.Config.Handler.ServeHTTP(w, r)
	})
	s := startCaddy(t, globalOptions("zone default 64MiB")+`
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
		lock_timeout 10s
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
	u := s.url("PUBLIC", "/k")
	leader := make(chan response)
	go func() { leader <- s.get(t, u, "X-Lang", "en") }()
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the fill at the backend", func() bool { return be.Requests() == 1 }))
	type answer struct {
		response
		early bool // its header came before the backend had sent the whole body
	}
	ask := func(method string, header ...string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest(method, u, nil)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			res, err := s.client.Do(req)
			if err != nil {
				t.Error(err)
				ch <- answer{}
				return
			}
			defer res.Body.Close()
			early := paced.ended.Load() == nil
			b, err := io.ReadAll(res.Body)
			ch <- answer{response{res.StatusCode, res.Header, string(b), err}, early}
		}()
		return ch
	}
	ranged := ask(http.MethodGet, "X-Lang", "en", "Range", "bytes=1000-1999")
	head := ask(http.MethodHead, "X-Lang", "en")
	cond := ask(http.MethodGet, "X-Lang", "en", "If-None-Match", `"v1"`)
	other := ask(http.MethodGet, "X-Lang", "fr")
	for _, c := range []struct {
		what   string
		ch     chan answer
		status int
		cache  string
		body   string
		early  bool
	}{
		{"a range", ranged, 206, "HIT", string(body[1000:2000]), true},
		{"a HEAD", head, 200, "HIT", "", true},
		{"a conditional", cond, 304, "HIT", "", true},
		{"another variant", other, 200, "MISS", "other", false},
	} {
		a := <-c.ch
		expect(t, c.what, a.response, c.status, c.cache, c.body)
		if a.early != c.early {
			t.Errorf("%s: answered before the fill ended: %v", c.what, a.early)
		}
	}
	expect(t, "the leader", <-leader, 200, "MISS", string(body))
	if be.Requests() != 2 {
		t.Errorf("%d backend requests, want 2 (the fill, the other variant)", be.Requests())
	}
}
