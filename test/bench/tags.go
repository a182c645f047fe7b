package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hotKeys is how many keys the tags part soft-purges under load.
const hotKeys = 1000

// tagsPart fills 1,000 hot keys tagged "hot", loads them with wrk (a
// script cycling through them), soft-purges the tag a third of the way
// in, and reports the MISSes the load met (edgecache_requests_total) and
// the origin requests the purge caused: with use_stale updating, every
// entry is served STALE or UPDATING while one background request each
// refreshes it.
func (b *bench) tagsPart(ctx context.Context) error {
	t, err := b.startCaddy(ctx, nameEdgecache+"-tags", "edgecache (memory zone, tags)", tagsCaddyfile, b.opt.loadZone)
	if err != nil {
		return err
	}
	for i := range hotKeys {
		if _, _, err := get(ctx, fmt.Sprintf("%s/hot/%d", t.base, i)); err != nil {
			return err
		}
	}
	script := filepath.Join(b.dir, "hot.lua")
	lua := fmt.Sprintf("counter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format(\"GET\", \"/hot/\" .. (counter %% %d))\nend\n", hotKeys)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return err
	}
	before, err := requestCounts(ctx, t)
	if err != nil {
		return err
	}
	originBefore := b.origin.hot.Load()
	type wrkDone struct {
		res wrkResult
		err error
	}
	done := make(chan wrkDone, 1)
	go func() {
		res, _, err := runWrk(ctx, t.base+"/", b.opt.threads, b.opt.connections, b.opt.duration, b.opt.nice, script)
		done <- wrkDone{res, err}
	}()
	select {
	case <-time.After(b.opt.duration / 3):
	case <-ctx.Done():
		return ctx.Err()
	}
	purgeStart := time.Now()
	resp, err := http.Post("http://"+t.admin+"/edge_cache/purge", "application/json", strings.NewReader(`{"tags":["hot"],"soft":true}`))
	if err != nil {
		return err
	}
	var answer strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&answer)
	resp.Body.Close()
	purgeTook := time.Since(purgeStart)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("soft purge: %s %s", resp.Status, answer.String())
	}
	d := <-done
	if d.err != nil {
		return d.err
	}
	after, err := requestCounts(ctx, t)
	if err != nil {
		return err
	}
	origin := b.origin.hot.Load() - originBefore
	misses := after["MISS"] - before["MISS"]
	w := b.out
	fmt.Fprintf(w, "\n## Soft purge of %d hot keys under load\n\n", hotKeys)
	fmt.Fprintf(w, "wrk (%d connections, %s) cycles through %d keys tagged `hot`; a third of the way in, "+
		"`POST /edge_cache/purge {\"tags\":[\"hot\"],\"soft\":true}` (answered in %s: %s). "+
		"With `use_stale updating`, each entry is served STALE or UPDATING while one background request refreshes it.\n\n",
		b.opt.connections, b.opt.duration, hotKeys, fmtDur(purgeTook), mdEscape(strings.TrimSpace(answer.String())))
	fmt.Fprintln(w, "| req/s | p50 | p99 | MISS | STALE | UPDATING | HIT | origin requests |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %.0f | %s | %s | %d | %d | %d | %d | %d |\n", d.res.ReqPerSec, fmtDur(d.res.P50), fmtDur(d.res.P99),
		misses, after["STALE"]-before["STALE"], after["UPDATING"]-before["UPDATING"], after["HIT"]-before["HIT"], origin)
	fmt.Fprintln(w)
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "- MISS during the load: %d (goal: 0): %s\n", misses, met(misses == 0))
	fmt.Fprintf(w, "- origin requests the soft purge caused: %d (goal: %d, one per key): %s\n", origin, hotKeys, met(origin == hotKeys))
	b.logf("tags: %d MISS, %d origin requests after the soft purge of %d keys", misses, origin, hotKeys)
	return nil
}

// requestCounts reads edgecache_requests_total by cache status from the
// admin endpoint's /metrics.
func requestCounts(ctx context.Context, t *target) (map[string]int64, error) {
	body, err := getBody(ctx, "http://"+t.admin+"/metrics")
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int64)
	for line := range strings.SplitSeq(body, "\n") {
		if !strings.HasPrefix(line, "edgecache_requests_total{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `cache_status="`)
		if !ok {
			continue
		}
		status, _, _ := strings.Cut(rest, `"`)
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		counts[status] += int64(v)
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("no edgecache_requests_total at %s/metrics", t.admin)
	}
	return counts, nil
}
