package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fleet part: three edgecache proxies sharing one Redis, against three
// independent ones (islands), on the same URL set, as a load balancer
// spreads requests over them.
//
//	passes    every URL once through proxy i%3, then once through (i+1)%3:
//	          origin requests of each pass, and the second pass's hit ratio
//	stampede  cold requests for one new URL spread over the three at once
//	latency   a hit from Redis (the first request for a URL on a proxy that
//	          did not fill it) against a local hit, 10 KiB and 1 MiB
//	load      wrk: a working set that lives only in Redis (a proxy whose
//	          memory tier keeps no body), and local hits with and without
//	          a shared block

const (
	fleetProxies  = 3
	fleetURLs     = 300 // per group and pass
	fleetLatency  = 200 // 10 KiB URLs timed from Redis
	fleetLatency1 = 50  // 1 MiB URLs timed from Redis
)

// startRedis starts a redis-server of the harness's own, with no
// persistence, and returns its address.
func (b *bench) startRedis(ctx context.Context) (string, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found (Debian: apt-get install -y redis-server)")
	}
	dir := filepath.Join(b.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	p, err := b.ps.start("redis", dir, filepath.Join(dir, "redis.log"), nil, server,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir, "--save", "", "--appendonly", "no",
		"--maxmemory", "2gb", "--maxmemory-policy", "allkeys-lru")
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.CommandContext(ctx, "redis-cli", "-p", strconv.Itoa(port), "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return addr, nil
		}
		if p.exited() || time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server on %s did not answer: %s", addr, p.logTail(5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startGroup starts n edgecache proxies, sharing Redis when redis is set.
func (b *bench) startGroup(ctx context.Context, group, redis string, n int, entryMax string) ([]*target, error) {
	var ts []*target
	for i := range n {
		name := fmt.Sprintf("%s-%d", group, i+1)
		label := "edgecache " + name
		t, err := b.startCaddyWith(ctx, name, label, edgecacheCaddyfile,
			configData{MemorySize: b.opt.loadZone, Redis: redis, Node: name, MemoryEntryMax: entryMax})
		if err != nil {
			return nil, err
		}
		if t.unavailable != "" {
			return nil, fmt.Errorf("%s did not start: %s", name, t.unavailable)
		}
		t.caches = true
		ts = append(ts, t)
	}
	return ts, nil
}

func (b *bench) fleetPart(ctx context.Context) error {
	redis, err := b.startRedis(ctx)
	if err != nil {
		return err
	}
	fleet, err := b.startGroup(ctx, "fleet", redis, fleetProxies, "")
	if err != nil {
		return err
	}
	islands, err := b.startGroup(ctx, "island", "", fleetProxies, "")
	if err != nil {
		return err
	}
	w := b.out
	fmt.Fprintf(w, "\n## Fleet\n\n%d edgecache proxies sharing one Redis (%s, loopback) against %d independent proxies, "+
		"on %d URLs of 10 KiB: the first pass asks each URL through proxy i mod 3, the second through the next proxy, "+
		"as a load balancer spreads requests.\n\n", fleetProxies, redisVersion(ctx), fleetProxies, fleetURLs)
	fmt.Fprintln(w, "| proxies | origin requests, first pass | origin requests, second pass | second-pass hits | stampede: origin requests | stampede: last answer after origin |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, g := range []struct {
		name string
		ts   []*target
	}{{"3 sharing Redis", fleet}, {"3 independent", islands}} {
		first, second, hits, err := b.passes(ctx, g.ts)
		if err != nil {
			return err
		}
		st, err := b.spreadStampede(ctx, g.ts)
		if err != nil {
			return err
		}
		spread := "-"
		if st.haveOrig {
			spread = fmtDur(st.spread)
		}
		b.logf("fleet %s: origin %d then %d, second-pass hits %d/%d, stampede origin %d", g.name, first, second, hits, fleetURLs, st.backend)
		fmt.Fprintf(w, "| %s | %d | %d | %d/%d (%.0f %%) | %d | %s |\n", g.name, first, second, hits, fleetURLs,
			100*float64(hits)/fleetURLs, st.backend, spread)
	}

	fmt.Fprintf(w, "\nLatency of one request (sequential, keep-alive), from Redis (the first request for a URL on a proxy "+
		"that did not fill it) and from the proxy's memory (the next one):\n\n")
	fmt.Fprintln(w, "| body | from Redis p50 | from Redis p99 | local p50 | local p99 | requests |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, s := range []struct {
		label, path string
		n           int
	}{{"10 KiB", "/fill/10k/lat-", fleetLatency}, {"1 MiB", "/fill/1m/lat-", fleetLatency1}} {
		shared, local, err := b.sharedLatency(ctx, fleet[0], fleet[1], s.path, s.n)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d |\n", s.label, fmtDur(pct(shared, 50)), fmtDur(pct(shared, 99)),
			fmtDur(pct(local, 50)), fmtDur(pct(local, 99)), s.n)
	}

	// A proxy whose memory tier keeps no body: every hit is a Redis GET.
	remote, err := b.startGroup(ctx, "redis-only", redis, 1, "1KiB")
	if err != nil {
		return err
	}
	path := "/fill/10k/lat-0"
	if _, _, err := get(ctx, remote[0].base+path); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrk, %d connections, %s per run, 10 KiB, %d rounds in alternation (req/s, p99):\n\n", b.opt.connections, b.opt.duration, b.opt.rounds)
	fmt.Fprintln(w, "| target | req/s | p99 | non-2xx |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	runs := map[string][]wrkResult{}
	order := []struct{ label, url string }{
		{"local hit, no shared block", islands[0].base + path},
		{"local hit, shared block configured", fleet[1].base + path},
		{"hit from Redis (working set only in Redis)", remote[0].base + path},
	}
	if _, _, err := get(ctx, islands[0].base+path); err != nil {
		return err
	}
	for range b.opt.rounds {
		for _, o := range order {
			if b.opt.waitIdle > 0 {
				if err := b.waitIdle(ctx); err != nil {
					return err
				}
			}
			res, _, err := runWrk(ctx, o.url, b.opt.threads, b.opt.connections, b.opt.duration, b.opt.nice)
			if err != nil {
				return err
			}
			b.logf("fleet wrk %-45s %.0f req/s p99 %s", o.label, res.ReqPerSec, res.P99)
			runs[o.label] = append(runs[o.label], res)
		}
	}
	var without, with float64
	for _, o := range order {
		rs := runs[o.label]
		slices.SortFunc(rs, func(a, b wrkResult) int { return int(a.ReqPerSec - b.ReqPerSec) })
		m := rs[len(rs)/2]
		fmt.Fprintf(w, "| %s | %s | %s | %d |\n", o.label, fmtRate(m.ReqPerSec), fmtDur(m.P99), m.Non2xx)
		switch o.label {
		case order[0].label:
			without = m.ReqPerSec
		case order[1].label:
			with = m.ReqPerSec
		}
	}
	if without > 0 {
		fmt.Fprintf(w, "\n- local hits with a shared block: %+.1f %% against none (goal: within 3 %%)\n", 100*(with/without-1))
	}
	return nil
}

// passes asks every URL of a fresh set twice, through proxy i%n and then
// (i+1)%n, and returns the origin requests of each pass and the second
// pass's HITs.
func (b *bench) passes(ctx context.Context, ts []*target) (first, second int64, hits int, err error) {
	base := fmt.Sprintf("/fill/10k/pass-%s-%d-", ts[0].name, time.Now().UnixNano())
	for pass := range 2 {
		before := b.origin.requests.Load()
		for i := range fleetURLs {
			resp, n, err := get(ctx, ts[(i+pass)%len(ts)].base+base+strconv.Itoa(i))
			if err != nil {
				return 0, 0, 0, err
			}
			if resp.StatusCode != http.StatusOK || n != size10k {
				return 0, 0, 0, fmt.Errorf("fleet pass: %s answered %d with %d bytes", resp.Request.URL, resp.StatusCode, n)
			}
			if pass == 1 && cacheStatus(resp) == "HIT" {
				hits++
			}
		}
		if pass == 0 {
			// A store in Redis follows the answer: let it land.
			time.Sleep(500 * time.Millisecond)
			first = b.origin.requests.Load() - before
		} else {
			second = b.origin.requests.Load() - before
		}
	}
	return first, second, hits, nil
}

// spreadStampede sends stampede-clients cold requests for one URL at once,
// spread evenly over ts.
func (b *bench) spreadStampede(ctx context.Context, ts []*target) (stampedeResult, error) {
	n := b.opt.stampedeClients
	client := &http.Client{Timeout: time.Minute + 2*b.opt.stampedeDelay,
		Transport: &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}}
	defer client.CloseIdleConnections()
	path := fmt.Sprintf("/slow/%s-%d", ts[0].name, time.Now().UnixNano())
	res := stampedeResult{statuses: map[int]int{}, cache: map[string]int{}}
	var mu sync.Mutex
	var last time.Time
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts[i%len(ts)].base+path, nil)
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if end.After(last) {
				last = end
			}
			if err != nil {
				res.errors = append(res.errors, err.Error())
				return
			}
			res.statuses[resp.StatusCode]++
			res.cache[cacheStatus(resp)]++
		}()
	}
	time.Sleep(100 * time.Millisecond) // every goroutine parked on start
	close(start)
	wg.Wait()
	st := b.origin.slowStats(path)
	res.backend = st.count
	if len(st.done) > 0 {
		res.haveOrig, res.spread = true, last.Sub(st.done[0])
	}
	return res, ctx.Err()
}

// sharedLatency fills n URLs through a, lets the stores land in Redis, then
// times the first request for each on b (from Redis) and the second (local).
func (b *bench) sharedLatency(ctx context.Context, a, other *target, prefix string, n int) (shared, local []time.Duration, err error) {
	prefix += strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	for i := range n {
		if _, _, err := get(ctx, a.base+prefix+strconv.Itoa(i)); err != nil {
			return nil, nil, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	for i := range n {
		url := other.base + prefix + strconv.Itoa(i)
		for round := range 2 {
			start := time.Now()
			resp, _, err := get(ctx, url)
			d := time.Since(start)
			if err != nil {
				return nil, nil, err
			}
			if cacheStatus(resp) != "HIT" {
				return nil, nil, fmt.Errorf("fleet latency: %s answered %s, want HIT (from Redis, then local)", url, cacheStatus(resp))
			}
			if round == 0 {
				shared = append(shared, d)
			} else {
				local = append(local, d)
			}
		}
	}
	return shared, local, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func redisVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "redis-server", "--version").Output()
	if err != nil {
		return "redis-server"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return "Redis " + v
		}
	}
	return "redis-server"
}
