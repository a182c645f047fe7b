package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// stampedeResult is one stampede: many clients asking at once for a URL that
// is in no cache yet and that the origin takes stampedeDelay to answer.
type stampedeResult struct {
	backend   int             // requests that reached the origin
	latencies []time.Duration // per client, from the common start to the end of its body
	spread    time.Duration   // last client's answer minus the origin's first answer
	haveOrig  bool            // the origin answered at least once
	statuses  map[int]int
	cache     map[string]int // X-Cache-Status values
	errors    []string
}

// stampedePart runs one stampede against nginx and one against edgecache.
func (b *bench) stampedePart(ctx context.Context) error {
	nginx, edge := b.nginx, b.edge
	var err error
	if nginx == nil {
		if nginx, err = b.startNginx(ctx, nameNginx+"-stampede"); err != nil {
			return err
		}
	}
	if edge == nil {
		if edge, err = b.startCaddy(ctx, nameEdgecache+"-stampede", "edgecache (memory zone)", edgecacheCaddyfile, b.opt.loadZone); err != nil {
			return err
		}
	}
	w := b.out
	fmt.Fprintf(w, "\n## Stampede\n\n%d clients at once ask for one new URL; the origin answers it after %s. "+
		"Latency counts from the common start to the end of each client's body; "+
		"\"last answer after origin\" is the last client's answer minus the origin's first answer.\n\n",
		b.opt.stampedeClients, b.opt.stampedeDelay)
	fmt.Fprintln(w, "| target | origin requests | min | p50 | max | last answer after origin | statuses | X-Cache-Status | notes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---|---|")
	var edgeRes *stampedeResult
	for _, t := range []*target{nginx, edge} {
		label := strings.TrimSuffix(t.label, " (disk zone)")
		label = strings.TrimSuffix(label, " (memory zone)")
		if t.unavailable != "" {
			fmt.Fprintf(w, "| %s | unavailable | | | | | | | %s |\n", label, mdEscape(t.unavailable))
			continue
		}
		res, err := b.stampede(ctx, t)
		if err != nil {
			return err
		}
		lat := append([]time.Duration(nil), res.latencies...)
		slices.Sort(lat)
		min, p50, max := "-", "-", "-"
		if len(lat) > 0 {
			min, p50, max = fmtDur(lat[0]), fmtDur(lat[len(lat)/2]), fmtDur(lat[len(lat)-1])
		}
		spread := "-"
		if res.haveOrig {
			spread = fmtDur(res.spread)
		}
		b.logf("stampede %-9s origin requests %d, latency min %s p50 %s max %s, last answer %s after origin", t.name, res.backend, min, p50, max, spread)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", label, res.backend, min, p50, max, spread,
			countList(res.statuses), countList(res.cache), mdEscape(strings.Join(firstN(res.errors, 3), "; ")))
		if t.name == nameEdgecache || strings.HasPrefix(t.name, nameEdgecache+"-") {
			edgeRes = &res
		}
	}
	if edgeRes != nil {
		fmt.Fprintln(w)
		met := "met"
		if edgeRes.backend != 1 {
			met = "NOT met"
		}
		fmt.Fprintf(w, "- edgecache origin requests: %d (goal: 1): %s\n", edgeRes.backend, met)
		met = "met"
		if !edgeRes.haveOrig || edgeRes.spread > 50*time.Millisecond {
			met = "NOT met"
		}
		fmt.Fprintf(w, "- edgecache last answer after origin: %s (goal ≤ 50 ms; nginx's lock polls every 500 ms): %s\n", fmtDur(edgeRes.spread), met)
	}
	return nil
}

// stampede fires the clients at t. Their connections are opened beforehand
// so that the run measures the cache's request coalescing, not TCP set-up.
func (b *bench) stampede(ctx context.Context, t *target) (stampedeResult, error) {
	n := b.opt.stampedeClients
	client := &http.Client{
		Timeout: time.Minute + 2*b.opt.stampedeDelay,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: n,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()

	fetch := func(url string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp, err
	}
	together := func(do func(i int)) {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				do(i)
			}()
		}
		time.Sleep(100 * time.Millisecond) // all goroutines parked on start
		close(start)
		wg.Wait()
	}

	// Open the connections with a cached URL (warmed by the load parts, or
	// now; either way it is not the stampede's URL).
	together(func(int) { fetch(t.base + "/10k") })

	path := fmt.Sprintf("/slow/%s-%d", t.name, time.Now().UnixNano())
	res := stampedeResult{statuses: map[int]int{}, cache: map[string]int{}}
	var mu sync.Mutex
	done := make([]time.Time, n)
	var begin time.Time
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := fetch(t.base + path)
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			done[i] = end
			if err != nil {
				res.errors = append(res.errors, err.Error())
				return
			}
			res.statuses[resp.StatusCode]++
			res.cache[cacheStatus(resp)]++
		}()
	}
	time.Sleep(100 * time.Millisecond)
	begin = time.Now()
	close(start)
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	var last time.Time
	for _, d := range done {
		res.latencies = append(res.latencies, d.Sub(begin))
		if d.After(last) {
			last = d
		}
	}
	st := b.origin.slowStats(path)
	res.backend = st.count
	if len(st.done) > 0 {
		res.haveOrig = true
		res.spread = last.Sub(st.done[0])
	}
	return res, nil
}

// countList prints counts like "HIT×99, MISS×1".
func countList[K comparable](m map[K]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%v×%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
