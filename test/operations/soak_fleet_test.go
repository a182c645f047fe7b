package operations_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// The soak's fleet variant (issue 25): two proxies sharing one Redis,
// which stalls (SIGSTOP) for 2 s every 30 s, under clients asking for hot
// URLs (one of which always fails), cold ones, and anonymous POSTs.

const (
	// fleetSoakBackend is the backend's time for every answer, the failing
	// one included: no client may wait longer than it plus fleetSoakSlack.
	fleetSoakBackend = 500 * time.Millisecond
	fleetSoakSlack   = time.Second
	fleetSoakHot     = 20   // hot URLs, the failing one among them
	fleetSoakCold    = 3000 // cold URLs, more than the zones hold
	fleetSoakGetters = 10
	fleetSoakPosters = 2
	// Redis stalls for fleetSoakPause every fleetSoakPeriod (a third of a
	// short run, so that it stalls at least twice).
	fleetSoakPause  = 2 * time.Second
	fleetSoakPeriod = 30 * time.Second
	fleetSoakFail   = "/hot/fail"
)

// fleetSoakConfig is one proxy of the fleet: the hot URLs in a memory
// zone, the cold ones in a small disk zone; the production lock settings
// (Caddyfile.example's lock_age and lock_timeout of 1m); standards mode,
// so that POSTs invalidate.
func fleetSoakConfig(admin, public int, node, redis, dir, backend string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	edge_cache {
		shared {
			redis %[4]s
			node %[3]s
			timeout 250ms
		}
		zone hot 16MiB
		zone cold {
			memory 4MiB
			path %[5]s/cold
			max_size 8MiB
			inactive 1h
		}
	}
}

http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	map {http.request.orig_uri.path} {cache_zone} {
		~^/hot/ hot
		default cold
	}
	edge_cache {
		zone {cache_zone}
		valid 200 1h
		lock on
		lock_age 1m
		lock_timeout 1m
	}
	reverse_proxy %[6]s
}
`, admin, public, node, redis, dir, backend)
}

// fleetSoakBody is the one body the backend answers path with: anonymous
// POSTs change nothing.
func fleetSoakBody(path string) []byte {
	n := 0
	for _, c := range path {
		n = n*31 + int(c)
	}
	size := 1<<10 + (n&0xffff)%(12<<10)
	b := make([]byte, size)
	copy(b, path)
	for i := len(path); i < size; i++ {
		b[i] = byte('a' + (i+n)%26)
	}
	return b
}

// fleetSoakTally counts the soak's answers and keeps the first few
// failures of each kind.
type fleetSoakTally struct {
	requests, posts, wrong, slow atomic.Int64
	mu                           sync.Mutex
	worst                        time.Duration
	worstWhat                    string
	failures                     []string
}

func (ft *fleetSoakTally) fail(kind *atomic.Int64, format string, args ...any) {
	kind.Add(1)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.failures) < 10 {
		ft.failures = append(ft.failures, fmt.Sprintf(format, args...))
	}
}

func (ft *fleetSoakTally) took(d time.Duration, what string) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if d > ft.worst {
		ft.worst, ft.worstWhat = d, what
	}
}

// TestSoakFleet runs two proxies on one Redis for EDGECACHE_SOAK (16 s by
// default) while Redis stalls for 2 s every 30 s (every third of a short
// run): clients GET hot URLs (one answers 500 after the backend's time),
// and cold ones, from either proxy; others send anonymous POSTs, to unique
// URLs under the cached path and to the hot ones. It wants 0 wrong
// bodies, no request waiting longer than the backend's time plus 1 s, and
// each proxy's RSS flat over the second half.
func TestSoakFleet(t *testing.T) {
	duration := soakDuration(t)
	period := min(fleetSoakPeriod, duration/3)
	r := testkit.StartRedis(t)
	var backendRequests atomic.Int64
	backend := newBackend(t, func(w http.ResponseWriter, req *http.Request) {
		backendRequests.Add(1)
		time.Sleep(fleetSoakBackend) // the backend's time
		switch {
		case req.Method != http.MethodGet && req.Method != http.MethodHead:
			io.Copy(io.Discard, req.Body)
			w.Write([]byte("accepted, nothing changed"))
		case req.URL.Path == fleetSoakFail:
			http.Error(w, "a broken image", http.StatusInternalServerError)
		default:
			body := fleetSoakBody(req.URL.Path)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}
	})
	var ps []*proxy
	for i := range 2 {
		dir := t.TempDir()
		admin, public := testkit.FreePort(t), testkit.FreePort(t)
		ps = append(ps, newProxy(t, dir, fleetSoakConfig(admin, public, "p"+strconv.Itoa(i+1), r.Addr, filepath.Join(dir, "zones"), backend.Addr()), admin, public))
	}
	site := func(p *proxy) string { return "http://127.0.0.1:" + strconv.Itoa(p.ports[0]) }
	hot := []string{fleetSoakFail}
	for i := 1; i < fleetSoakHot; i++ {
		hot = append(hot, "/hot/"+strconv.Itoa(i))
	}

	tally := &fleetSoakTally{}
	client := &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: fleetSoakGetters + fleetSoakPosters},
		Timeout:   90 * time.Second, // over lock_timeout: a stuck request is counted, not a hung test
	}
	defer client.CloseIdleConnections()
	started := time.Now()
	check := func(start time.Time, what string) {
		d := time.Since(start)
		tally.took(d, what)
		if d > fleetSoakBackend+fleetSoakSlack {
			tally.fail(&tally.slow, "%s at %v took %v", what, start.Sub(started).Round(time.Millisecond), d.Round(time.Millisecond))
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range fleetSoakGetters {
		rnd := rand.New(rand.NewPCG(uint64(i), uint64(started.UnixNano())))
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n := rnd.IntN(len(ps))
				p := ps[n]
				path := hot[rnd.IntN(len(hot))]
				if rnd.IntN(10) < 3 {
					path = "/cold/" + strconv.Itoa(rnd.IntN(fleetSoakCold))
				}
				start := time.Now()
				res, err := getWith(client, site(p)+path)
				tally.requests.Add(1)
				what := fmt.Sprintf("GET %s on p%d", path, n+1)
				check(start, what)
				switch {
				case err != nil:
					tally.fail(&tally.wrong, "%s: %v", what, err)
				case path == fleetSoakFail:
					if res.status != http.StatusInternalServerError {
						tally.fail(&tally.wrong, "%s: %d %s, want the backend's 500", what, res.status, res.cache)
					}
				case res.status != http.StatusOK || string(res.body) != string(fleetSoakBody(path)):
					tally.fail(&tally.wrong, "%s: %d %s, %d bytes %.30q", what, res.status, res.cache, len(res.body), res.body)
				}
			}
		})
	}
	var anon atomic.Int64
	for i := range fleetSoakPosters {
		rnd := rand.New(rand.NewPCG(uint64(100+i), uint64(started.UnixNano())))
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n := rnd.IntN(len(ps))
				p := ps[n]
				path := "/hot/anon-" + strconv.FormatInt(anon.Add(1), 10)
				if rnd.IntN(5) == 0 {
					path = hot[1+rnd.IntN(len(hot)-1)]
				}
				start := time.Now()
				resp, err := client.Post(site(p)+path, "text/plain", strings.NewReader("anonymous"))
				tally.posts.Add(1)
				what := fmt.Sprintf("POST %s on p%d", path, n+1)
				if err != nil {
					tally.fail(&tally.wrong, "%s: %v", what, err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				check(start, what)
				if resp.StatusCode != http.StatusOK {
					tally.fail(&tally.wrong, "%s: %d", what, resp.StatusCode)
				}
			}
		})
	}
	// Redis stalls for 2 s every period, from the first period on.
	pauses := 0
	var pausedAt []string
	wg.Go(func() {
		timer := time.NewTimer(period)
		defer timer.Stop()
		for {
			select {
			case <-done:
				return
			case <-timer.C:
			}
			r.Pause()
			pauses++
			pausedAt = append(pausedAt, time.Since(started).Round(time.Millisecond).String())
			select {
			case <-done:
			case <-time.After(fleetSoakPause):
			}
			r.Resume()
			timer.Reset(period - fleetSoakPause)
		}
	})

	// The machine is shared: a stall of this process (the clients and the
	// backend) shows as a late tick, and is reported beside the slow
	// requests it may explain.
	var stalls []string
	wg.Go(func() {
		const every = 50 * time.Millisecond
		tick := time.NewTicker(every)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if late := now.Sub(last) - every; late > 300*time.Millisecond {
					stalls = append(stalls, fmt.Sprintf("%v for %v", last.Sub(started).Round(time.Millisecond), late.Round(time.Millisecond)))
				}
				last = now
			}
		}
	})

	interval := min(5*time.Second, max(time.Second, duration/60))
	samples := make([][]rssSample, len(ps))
	ticker := time.NewTicker(interval)
	for {
		<-ticker.C
		at := time.Since(started)
		for i, p := range ps {
			n, err := procMemory(p.pid(), "VmRSS")
			if err != nil {
				t.Fatal(err)
			}
			samples[i] = append(samples[i], rssSample{at, n})
		}
		if at >= duration {
			break
		}
	}
	ticker.Stop()
	close(done)
	wg.Wait()
	elapsed := time.Since(started)

	t.Logf("fleet soak of %s, 2 proxies, Redis stalled %d times for %s: %d GETs (%.0f/s), %d anonymous POSTs; backend: %d requests",
		elapsed.Round(time.Second), pauses, fleetSoakPause, tally.requests.Load(), float64(tally.requests.Load())/elapsed.Seconds(),
		tally.posts.Load(), backendRequests.Load())
	t.Logf("longest request: %v (%s); backend time %v", tally.worst.Round(time.Millisecond), tally.worstWhat, fleetSoakBackend)
	t.Logf("the test process (clients, backend) stalled over 300 ms %d times: %s", len(stalls), strings.Join(stalls, ", "))
	for i, p := range ps {
		var line strings.Builder
		for _, s := range samples[i] {
			fmt.Fprintf(&line, " %s:%.1f", s.at.Round(time.Second), float64(s.rss)/(1<<20))
		}
		t.Logf("p%d RSS (MiB) by time:%s; events published %v, invalidations unheld %v, lost-event drops %v", i+1, line.String(),
			p.metric(t, "edgecache_fleet_events_published_total"), p.metric(t, "edgecache_fleet_invalidations_unheld_total"),
			p.metric(t, "edgecache_fleet_event_drops_total"))
	}
	if n := tally.wrong.Load(); n != 0 {
		t.Errorf("%d wrong answers", n)
	}
	if n := tally.slow.Load(); n != 0 {
		t.Errorf("%d requests waited longer than the backend's time plus %v", n, fleetSoakSlack)
	}
	if len(tally.failures) > 0 {
		t.Errorf("first failures:\n%s\nRedis stalled at %s", strings.Join(tally.failures, "\n"), strings.Join(pausedAt, " "))
	}
	if pauses < 2 {
		t.Errorf("Redis stalled %d times, want at least 2", pauses)
	}
	for i, s := range samples {
		before, after, rise := rssRise(s, duration)
		t.Logf("p%d RSS: %.1f MiB before the middle, at most %.1f MiB after (%+.1f %%)", i+1, float64(before)/(1<<20), float64(after)/(1<<20), 100*rise)
		if rise > maxRSSRise {
			t.Errorf("p%d's RSS rose by %.1f %% over the second half, want at most %.0f %%", i+1, 100*rise, 100*maxRSSRise)
		}
	}
}
