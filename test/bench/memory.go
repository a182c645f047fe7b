package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
)

// memoryPart fills a fresh edgecache memory zone with twice its size in
// distinct keys (half of the bytes in 1 MiB bodies, half in 10 KiB bodies)
// and compares the process's resident memory with the configured size.
func (b *bench) memoryPart(ctx context.Context) error {
	zone, err := humanize.ParseBytes(b.opt.memoryZone)
	if err != nil {
		return err
	}
	w := b.out
	fmt.Fprintf(w, "\n## Memory\n\n")
	t, err := b.startCaddy(ctx, nameEdgecache+"-memory", "edgecache (memory zone)", edgecacheCaddyfile, b.opt.memoryZone)
	if err != nil {
		return err
	}
	if t.unavailable != "" {
		fmt.Fprintf(w, "edgecache unavailable: %s\n", t.unavailable)
		return nil
	}
	defer t.proc.stop()
	pid := t.proc.cmd.Process.Pid

	idle, err := procStatus(pid)
	if err != nil {
		return err
	}
	n1m := int(zone / size1m)
	n10k := int(zone / size10k)
	b.logf("memory: filling a %s zone with %d × 1 MiB and %d × 10 KiB distinct keys", b.opt.memoryZone, n1m, n10k)
	start := time.Now()
	paths := fillPaths(n1m, n10k)
	if err := b.fill(ctx, t, paths); err != nil {
		return err
	}
	fillTime := time.Since(start)
	time.Sleep(time.Second)
	filled, err := procStatus(pid)
	if err != nil {
		return err
	}
	heap, heapErr := goHeap(ctx, t)
	// 10 KiB first: a 1 MiB key that missed is stored again, and 50 of
	// them would push out the newest small entries.
	hit10k, of10k := hitRate(ctx, t, "/fill/10k/", n10k, 200)
	hit1m, of1m := hitRate(ctx, t, "/fill/1m/", n1m, 50)
	time.Sleep(10 * time.Second)
	settled, err := procStatus(pid)
	if err != nil {
		return err
	}

	total := uint64(n1m)*size1m + uint64(n10k)*size10k
	fmt.Fprintf(w, "A fresh edgecache with `memory %s` gets %d × 1 MiB and %d × 10 KiB distinct keys (%s in %s, 8 clients), "+
		"twice what the zone holds. RSS from /proc/<pid>/status.\n\n",
		b.opt.memoryZone, n1m, n10k, humanize.IBytes(total), fillTime.Round(100*time.Millisecond))
	fmt.Fprintln(w, "| when | VmRSS | of which files (RssFile) | RSS / zone | (RSS − idle) / zone |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, row := range []struct {
		when      string
		kib, file uint64
	}{
		{"idle, before filling", idle.rss, idle.file},
		{"1 s after filling", filled.rss, filled.file},
		{"10 s later", settled.rss, settled.file},
		{"peak (VmHWM)", settled.hwm, 0},
	} {
		bytes := row.kib << 10
		file := "-"
		if row.file > 0 {
			file = humanize.IBytes(row.file << 10)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %.2f× |\n", row.when, humanize.IBytes(bytes), file,
			float64(bytes)/float64(zone), (float64(bytes)-float64(idle.rss<<10))/float64(zone))
	}
	if heapErr != nil {
		fmt.Fprintf(w, "\nGo heap figures unavailable: %v\n", heapErr)
	} else {
		fmt.Fprintf(w, "\nGo heap 1 s after filling (Caddy admin /metrics): %s\n", heap)
	}
	fmt.Fprintf(w, "\nRe-read of the newest keys: %d/%d of 1 MiB and %d/%d of 10 KiB answered HIT.\n\n", hit1m, of1m, hit10k, of10k)
	worst := max(filled.rss, settled.rss) << 10
	met := "met"
	switch {
	case hit1m+hit10k == 0:
		// An empty cache is small; that proves nothing.
		met = "not judged: the zone kept none of the keys re-read"
	case float64(worst) > 1.3*float64(zone):
		met = "NOT met"
	}
	fmt.Fprintf(w, "- RSS / zone size after filling: %.2f× (goal ≤ 1.30×): %s\n", float64(worst)/float64(zone), met)
	return nil
}

// fillPaths interleaves the 1 MiB keys among the 10 KiB keys so that both
// kinds arrive throughout the fill.
func fillPaths(n1m, n10k int) []string {
	paths := make([]string, 0, n1m+n10k)
	j := 0
	for i := 0; i < n10k; i++ {
		paths = append(paths, "/fill/10k/"+strconv.Itoa(i))
		for j < n1m && j*n10k <= i*n1m {
			paths = append(paths, "/fill/1m/"+strconv.Itoa(j))
			j++
		}
	}
	for ; j < n1m; j++ {
		paths = append(paths, "/fill/1m/"+strconv.Itoa(j))
	}
	return paths
}

// fill GETs every path once with 8 concurrent clients.
func (b *bench) fill(ctx context.Context, t *target, paths []string) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(paths) || ctx.Err() != nil {
					return
				}
				resp, _, err := get(ctx, t.base+paths[i])
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("GET %s: %s", paths[i], resp.Status)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// hitRate re-reads the newest count keys of a prefix and tells how many hit
// out of how many.
func hitRate(ctx context.Context, t *target, prefix string, n, count int) (int, int) {
	count = min(count, n)
	hits := 0
	for i := n - count; i < n; i++ {
		resp, _, err := get(ctx, t.base+prefix+strconv.Itoa(i))
		if err == nil && cacheStatus(resp) == "HIT" {
			hits++
		}
	}
	return hits, count
}

// memStatus is the resident set size now and at its peak, and the part of
// it that maps files (the executable, shared with the page cache), in KiB.
type memStatus struct{ rss, hwm, file uint64 }

// procStatus reads VmRSS, VmHWM and RssFile from /proc/<pid>/status.
func procStatus(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	var m memStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM" && key != "RssFile") {
			continue
		}
		fields := strings.Fields(val) // "123456 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return m, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, key, val)
		}
		kib, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return m, err
		}
		switch key {
		case "VmRSS":
			m.rss = kib
		case "VmHWM":
			m.hwm = kib
		default:
			m.file = kib
		}
	}
	return m, sc.Err()
}

// goHeap reads the Go runtime's heap figures from Caddy's admin /metrics,
// to tell live cache bytes from garbage-collector headroom in the RSS.
func goHeap(ctx context.Context, t *target) (string, error) {
	resp, err := getBody(ctx, "http://"+t.admin+"/metrics")
	if err != nil {
		return "", err
	}
	want := []struct{ metric, label string }{
		{"go_memstats_heap_alloc_bytes", "heap alloc"},
		{"go_memstats_heap_inuse_bytes", "in use"},
		{"go_memstats_next_gc_bytes", "next GC at"},
		{"go_memstats_heap_released_bytes", "released"},
		{"go_gc_gogc_percent", "GOGC"},
		{"go_gc_gomemlimit_bytes", "GOMEMLIMIT"},
		{"edgecache_entries:memory", "memory tier entries"},
		{"edgecache_bytes:memory", "memory tier bytes (accounted)"},
	}
	values := map[string]float64{}
	for _, line := range strings.Split(resp, "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if base, labels, ok := strings.Cut(name, "{"); ok && strings.HasPrefix(base, "edgecache_") {
			if !strings.Contains(labels, `tier="memory"`) {
				continue
			}
			name = base + ":memory"
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			values[name] = v
		}
	}
	var parts []string
	for _, m := range want {
		v, ok := values[m.metric]
		switch {
		case !ok:
			continue
		case strings.Contains(m.metric, "_bytes"):
			parts = append(parts, m.label+" "+humanize.IBytes(uint64(v)))
		default:
			parts = append(parts, fmt.Sprintf("%s %.0f", m.label, v))
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("no Go runtime metrics at %s/metrics", t.admin)
	}
	return strings.Join(parts, ", "), nil
}
