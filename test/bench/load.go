package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// loadSizes are the load parts: -only name, URL path, body size.
var loadSizes = []struct {
	part, path, label string
	size              int
}{
	{"10k", "/10k", "10 KiB", size10k},
	{"1m", "/1m", "1 MiB", size1m},
}

// loadRun is one wrk run of one target.
type loadRun struct {
	wrkResult
	originRequests int64   // requests that reached the origin during the run
	foreignCPU     float64 // share of the CPU used by other processes meanwhile
	cpuPerRequest  float64 // µs of CPU the target used per request (0: unknown)
}

// startLoadTargets starts nginx, the ceiling and edgecache (the origin runs
// in this process) and warms their caches. Edgecache may come back
// unavailable; the others must start.
func (b *bench) startLoadTargets(ctx context.Context) ([]*target, error) {
	nginx, err := b.startNginx(ctx, nameNginx)
	if err != nil {
		return nil, err
	}
	ceiling, err := b.startCaddy(ctx, nameCeiling, "Caddy respond (ceiling)", ceilingCaddyfile, "")
	if err != nil {
		return nil, err
	}
	if ceiling.unavailable != "" {
		return nil, fmt.Errorf("the ceiling (Caddy respond) did not start: %s", ceiling.unavailable)
	}
	edge, err := b.startCaddy(ctx, nameEdgecache, "edgecache (memory zone)", edgecacheCaddyfile, b.opt.loadZone)
	if err != nil {
		return nil, err
	}
	edge.caches = true
	// The same with a disk tier whose memory tier keeps no body of these
	// sizes: every hit is read from the zone folder (from the page cache,
	// as nginx's are).
	disk, err := b.startCaddyWith(ctx, nameEdgeDisk, "edgecache (disk zone, every hit from disk)", edgecacheCaddyfile,
		configData{MemorySize: b.opt.loadZone, MemoryEntryMax: "4KiB", Path: filepath.Join(b.dir, nameEdgeDisk, "cache")})
	if err != nil {
		return nil, err
	}
	disk.caches = true
	b.nginx, b.edge = nginx, edge
	bound, err := b.startBound(ctx)
	if err != nil {
		return nil, err
	}
	targets := []*target{nginx, edge, disk, ceiling, bound, b.originTarget()}

	paths := map[string]int{}
	for _, s := range loadSizes {
		paths[s.path] = s.size
	}
	for _, t := range targets {
		if t.unavailable != "" {
			continue
		}
		if err := b.warm(ctx, t, paths); err != nil {
			return nil, err
		}
	}
	return targets, nil
}

// loadParts runs wrk against every available target for each chosen size,
// in alternation, -rounds times, and reports the table.
func (b *bench) loadParts(ctx context.Context) error {
	targets, err := b.startLoadTargets(ctx)
	if err != nil {
		return err
	}
	results := map[string]map[string][]loadRun{} // size part -> target -> rounds
	for round := 1; round <= b.opt.rounds; round++ {
		// Reverse the order every other round so that no target always
		// runs right after the same neighbour.
		order := append([]*target(nil), targets...)
		if round%2 == 0 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, s := range loadSizes {
			if !b.opt.parts[s.part] {
				continue
			}
			if results[s.part] == nil {
				results[s.part] = map[string][]loadRun{}
			}
			for _, t := range order {
				if t.unavailable != "" {
					continue
				}
				profile := b.opt.pprofPath != "" && round == 1 && s.part == "10k" && (t.name == nameEdgecache || t.name == nameEdgeDisk)
				run, err := b.quietWrkRun(ctx, t, s.path, profile)
				if err != nil {
					return err
				}
				b.logf("round %d %-6s %-9s %9.0f req/s  p50 %-8s p99 %-8s origin requests %-6d other processes' CPU %2.0f%%",
					round, s.label, t.name, run.ReqPerSec, fmtDur(run.P50), fmtDur(run.P99), run.originRequests, 100*run.foreignCPU)
				results[s.part][t.name] = append(results[s.part][t.name], run)
				time.Sleep(time.Second) // let sockets and CPU settle between runs
			}
		}
	}
	for _, s := range loadSizes {
		if b.opt.parts[s.part] {
			b.reportLoad(s.part, s.label, targets, results[s.part])
		}
	}
	return nil
}

// quietWrkRun is wrkRun, repeated with -wait-idle when other processes took
// more than busyShare of the CPU meanwhile; it keeps the quietest attempt.
func (b *bench) quietWrkRun(ctx context.Context, t *target, path string, profile bool) (loadRun, error) {
	const attempts = 4
	var best loadRun
	for i := 0; i < attempts; i++ {
		run, err := b.wrkRun(ctx, t, path, profile && i == 0)
		if err != nil {
			return loadRun{}, err
		}
		if i == 0 || run.foreignCPU < best.foreignCPU {
			best = run
		}
		if b.opt.waitIdle <= 0 || best.foreignCPU <= busyShare {
			break
		}
		b.logf("%s %s disturbed (other processes' CPU %.0f%%, %.0f req/s): measuring again", t.name, path, 100*run.foreignCPU, run.ReqPerSec)
	}
	return best, nil
}

// wrkRun runs wrk once against t, optionally profiling edgecache meanwhile.
func (b *bench) wrkRun(ctx context.Context, t *target, path string, profile bool) (loadRun, error) {
	var profileDone chan error
	if profile {
		profileDone = make(chan error, 1)
		seconds := int(b.opt.duration/time.Second) - 1
		if seconds < 1 {
			seconds = 1
		}
		go func() { profileDone <- b.cpuProfile(ctx, t, profilePath(b.opt.pprofPath, t.name), seconds) }()
	}
	if err := b.waitIdle(ctx); err != nil {
		return loadRun{}, err
	}
	before := b.origin.requests.Load()
	cpuBefore, err := b.sampleCPU()
	if err != nil {
		return loadRun{}, err
	}
	ticksBefore := t.cpuTicks()
	res, _, err := runWrk(ctx, t.base+path, b.opt.threads, b.opt.connections, b.opt.duration, b.opt.nice)
	if err != nil {
		return loadRun{}, fmt.Errorf("%s %s: %w", t.name, path, err)
	}
	ticksAfter := t.cpuTicks()
	cpuAfter, err := b.sampleCPU()
	if err != nil {
		return loadRun{}, err
	}
	run := loadRun{
		wrkResult:      res,
		originRequests: b.origin.requests.Load() - before,
		foreignCPU:     foreignShare(cpuBefore, cpuAfter),
	}
	if res.Requests > 0 && ticksAfter > ticksBefore {
		run.cpuPerRequest = float64(ticksAfter-ticksBefore) * 1e6 / clockTicks / float64(res.Requests)
	}
	if profileDone != nil {
		if err := <-profileDone; err != nil {
			b.logf("warning: CPU profile: %v", err)
		} else {
			path := profilePath(b.opt.pprofPath, t.name)
			b.logf("CPU profile of %s's 10 KiB run written to %s (go tool pprof -top %s %s)", t.name, path, b.bin, path)
		}
	}
	return run, nil
}

// profilePath is where -pprof's profile of the named target goes: the
// memory zone's at the path given, the disk zone's beside it (cpu.out,
// cpu-disk.out).
func profilePath(path, target string) string {
	if target != nameEdgeDisk {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-disk" + ext
}

// cpuProfile fetches a CPU profile from Caddy's admin endpoint.
func (b *bench) cpuProfile(ctx context.Context, t *target, path string, seconds int) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
