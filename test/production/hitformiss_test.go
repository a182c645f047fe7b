package production_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// A hot URL whose fill stores nothing (an error, an answer marked
// no-store, a body cut short) under Caddyfile.example's lock (lock on,
// lock_age 1m, lock_timeout 1m): its waiters do not queue for the lock
// one at a time (Varnish's hit-for-miss). They either share the fill's
// answer (a 5xx no client shaped), or go to the backend together, and the
// key then passes requests straight through for uncacheable_ttl.
func TestFailingHotURL(t *testing.T) {
	t.Parallel()
	const backendTime = 2 * time.Second
	cutMidBody := func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(backendTime)
		// No length: the end of the body is known only when it ends.
		w.Header().Set("Cache-Control", "max-age=3600")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, strings.Repeat("x", 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the backend dies mid-body
	}
	// A cut connection, or a short body that says so: never a
	// complete-looking body.
	cutShort := func(res hotAnswer) error {
		if res.err == nil && res.status < 500 {
			return fmt.Errorf("%d, %d bytes read to their end, want the connection cut", res.status, len(res.body))
		}
		return nil
	}
	cases := []struct {
		name    string
		clients int
		handle  func(w http.ResponseWriter, r *http.Request, n int64)
		// shared: the fill's answer is shared with its waiters, so the
		// backend gets at most 2 requests; else every client's request
		// goes to the backend at once.
		shared bool
		header []string // of every request
		check  func(res hotAnswer) error
	}{{
		name: "500", clients: 50, shared: true,
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			time.Sleep(backendTime) // a failing render
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, "render failed")
		},
		check: func(res hotAnswer) error {
			if res.err != nil || res.status != http.StatusInternalServerError || res.body != "render failed" {
				return fmt.Errorf("%v %d %q, want the backend's 500", res.err, res.status, res.body)
			}
			return nil
		},
	}, {
		name: "no-store", clients: 50,
		handle: func(w http.ResponseWriter, r *http.Request, n int64) {
			time.Sleep(backendTime)
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "answer %d", n)
		},
		check: func(res hotAnswer) error {
			if res.err != nil || res.status != http.StatusOK || !strings.HasPrefix(res.body, "answer ") {
				return fmt.Errorf("%v %d %q, want a 200 of the backend", res.err, res.status, res.body)
			}
			return nil
		},
	}, {
		// The waiters read the entry as it is written, and are cut with
		// the fill, at once.
		name: "cut", clients: 25,
		handle: cutMidBody,
		check:  cutShort,
	}, {
		// A Range on a body of unknown length cannot be answered until the
		// fill ends: these waiters wait for its end, which stores nothing.
		name: "cut, ranges", clients: 25, header: []string{"Range", "bytes=0-99"},
		handle: cutMidBody,
		check:  cutShort,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			be := testkit.NewBackend(t, c.handle)
			e := newEdge(t, edgeConfig{Env: map[string]string{"OMERO_READONLY": be.Addr()}})
			const path = "/webgateway/render_image/51/0/0/"
			answers := hotStampede(e.Public, path, c.clients, c.header...)

			var times []time.Duration
			for i, a := range answers {
				times = append(times, a.took)
				if err := c.check(a); err != nil {
					t.Errorf("client %d: %v", i, err)
				}
			}
			slices.Sort(times)
			kinds := map[string]int{}
			for _, a := range answers {
				kinds[fmt.Sprintf("%d %s %v", a.status, a.cache, a.err != nil)]++
			}
			t.Logf("answers: %v", kinds)
			seen := be.Seen()
			// The fill's waiters, woken together, ask together.
			spread := time.Duration(0)
			if len(seen) > 2 {
				spread = seen[len(seen)-1].At.Sub(seen[1].At)
			}
			t.Logf("%d clients: first answered after %v, median %v, last %v; %d backend requests, the waiters' spread over %v",
				c.clients, times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond),
				times[len(times)-1].Round(time.Millisecond), len(seen), spread.Round(time.Millisecond))
			// Shared, the fill's answer is everyone's; else the waiters
			// have theirs one backend time later.
			within := backendTime + backendTime/4
			if !c.shared {
				within += backendTime
			}
			if last := times[len(times)-1]; last > within {
				t.Errorf("the last client was answered after %v, want within %v", last, within)
			}
			switch {
			case c.shared && len(seen) > 2:
				t.Errorf("%d backend requests, want at most 2: the answer is shared", len(seen))
			case !c.shared && spread > backendTime/4:
				t.Errorf("the waiters' backend requests spread over %v: not sent together", spread)
			}

			metrics := "http://" + e.Admin + "/metrics"
			client := &http.Client{Timeout: 10 * time.Second}
			if c.shared {
				if n := testkit.Metric(t, client, metrics, "edgecache_collapsed_errors_total"); n != float64(c.clients-len(seen)) {
					t.Errorf("edgecache_collapsed_errors_total %v, want %d", n, c.clients-len(seen))
				}
			}
			// The key now passes requests straight through: no wait.
			waits := testkit.Metric(t, client, metrics, "edgecache_lock_waits_total")
			start := time.Now()
			res := hotGet(e.Public, path, c.header...)
			if err := c.check(res); err != nil {
				t.Errorf("the next request: %v", err)
			}
			if res.cache != "MISS" {
				t.Errorf("the next request: %q, want MISS", res.cache)
			}
			t.Logf("the next request: answered after %v", time.Since(start).Round(time.Millisecond))
			if n := testkit.Metric(t, client, metrics, "edgecache_lock_waits_total"); n != waits {
				t.Errorf("the next request waited for a fill (%v lock waits, %v before)", n, waits)
			}
		})
	}
}

// hotAnswer is one client's answer in hotStampede.
type hotAnswer struct {
	status int
	cache  string
	body   string
	err    error
	took   time.Duration // from the request's start to the end of its body
}

// hotStampede sends n requests for path at once, each on its own
// connection, and returns their answers.
func hotStampede(addr, path string, n int, header ...string) []hotAnswer {
	answers := make([]hotAnswer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = hotGet(addr, path, header...)
		}()
	}
	close(start)
	wg.Wait()
	return answers
}

// hotGet requests path on a connection of its own, with a timeout longer
// than Caddyfile.example's lock_timeout.
func hotGet(addr, path string, header ...string) hotAnswer {
	client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return hotAnswer{err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return hotAnswer{err: err, took: time.Since(start)}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("reading the body: %w", err)
	}
	return hotAnswer{status: res.StatusCode, cache: res.Header.Get("X-Cache-Status"), body: string(data), err: err, took: time.Since(start)}
}
