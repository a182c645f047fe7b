package caddymodule

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
)

// A zone's memory size is what its hot tier may cost in all, so that an
// operator can add up the zones and know the process's size. The tier's
// accounting (bodies, headers, keys, index) tracks the heap within a few
// per cent; on top of that a garbage-collected heap needs headroom to
// replace entries, and with Go's default GOGC=100 that headroom is as
// large as the heap: a full 256 MiB tier would take over 500 MiB.
//
// So the entries get three quarters of the size, and a soft memory limit
// of the zones' total plus room for Caddy itself makes the collector work
// in the reserve. The bodies are pointer-free []byte, so collections scan
// only the index structures, not the cached bytes.
//
// The disk tiers' indexes are in the heap too (a fixed record per entry,
// see disk.Store): they are counted as they grow, so that a zone of
// millions of entries on disk does not leave the collector running all the
// time against a limit that ignores them. So are the parsed headers of
// the files each disk tier keeps open (open_files), and the tag indexes.
//
// An operator's own GOMEMLIMIT is left alone, and the limit never rises
// above the one the process started with (Caddy derives that from the
// machine's or cgroup's memory).

// entryBudget is what a zone of the given memory size stores in entries.
// The reserve is proportional, as GOGC is: a collection's cost grows with
// the heap it marks, so a larger heap needs as much more room between
// collections to keep them as rare. It also absorbs the heap's
// fragmentation: entries leave in random order, and the holes they leave
// in the allocator's spans took 8% of a full 1 GiB zone's heap. With an
// eighth in reserve, a fill of a 1 GiB zone ran with the collector always
// on (18% of the CPU, half the fill rate); with a quarter it ran 35
// collections in 27 s.
func entryBudget(size int64) int64 {
	return size - size/4
}

// memoryLimitFor returns the soft limit for zones of total bytes: the
// zones and room for Caddy (its heap, goroutine stacks and connection
// buffers; an idle process takes 10 MiB). The zones' reserves are free for
// Caddy's short-lived allocations too, and past the limit the collector
// only runs more often.
func memoryLimitFor(total int64) int64 {
	return total + 24<<20
}

var (
	startLimitOnce sync.Once
	startLimit     int64
	limitMu        sync.Mutex
	loggedLimit    int64
	// ourLimit is the limit applyMemoryLimit last set (0: none), which
	// paceCollector paces the collector within.
	ourLimit atomic.Int64
)

// applyMemoryLimit sets the limit for zones of total bytes (memory tiers
// and disk indexes). It logs a change of more than a sixteenth, not each
// step of a growing index.
func applyMemoryLimit(total int64, logger *zap.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" || total <= 0 {
		return
	}
	startLimitOnce.Do(func() { startLimit = debug.SetMemoryLimit(-1) })
	limit := min(memoryLimitFor(total), startLimit)
	limitMu.Lock()
	defer limitMu.Unlock()
	debug.SetMemoryLimit(limit)
	ourLimit.Store(limit)
	if d := limit - loggedLimit; d > loggedLimit/16 || -d > loggedLimit/16 {
		loggedLimit = limit
		logger.Info("Go memory limit set from the zones' memory tiers and disk indexes",
			zap.Int64("zones_bytes", total), zap.Int64("limit_bytes", limit))
	}
}

// memoryLimitUpdate is how often the limit follows the disk indexes.
const memoryLimitUpdate = 5 * time.Second

// The collector's pace. With Go's default GOGC=100 a collection starts
// whenever the heap has doubled since the last one. An edge cache's live
// heap is small while its tiers are empty or its entries are on disk (10
// MiB in the 10 KiB benchmark), and each hit allocates about 5 KB in
// net/http and Caddy: at 45,000 hits a second the collector ran 28 times
// a second, each time taking a processor for a few milliseconds and
// making the requests that allocate meanwhile help it (assists).
//
// The zones' memory is the operator's budget, and the limit above keeps
// the heap within it. So, while that limit is ours, the heap may grow by
// at least gcHeadroom between two collections: GOGC rises while the live
// heap is small, and falls back to 100 once the heap is large enough for
// 100 to give that room; near the limit, the limit paces it as before.

// gcPace is how often the collector's pace follows the live heap.
const gcPace = time.Second

// gcHeadroom is the least growth between two collections under limit: a
// quarter of it (the zones' reserve, see entryBudget), and at most 256
// MiB, which at 300 MB/s of allocation is about one collection a second.
func gcHeadroom(limit int64) int64 {
	return min(limit/4, 256<<20)
}

// gcPercentFor is the GOGC that gives a live heap of live bytes the
// headroom under limit, never below Go's default of 100.
func gcPercentFor(live, limit int64) int {
	if live <= 0 {
		return 100
	}
	return int(max(100, gcHeadroom(limit)*100/live))
}

var (
	gcPercentOnce sync.Once
	gcPercentOurs atomic.Bool // GOGC is not the operator's
	gcPercent     atomic.Int64
	liveHeap      = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeapMu    sync.Mutex
)

// paceCollector sets GOGC from the live heap and the limit applyMemoryLimit
// set; it leaves an operator's GOGC, and a process without that limit,
// alone.
func paceCollector() {
	gcPercentOnce.Do(func() { gcPercentOurs.Store(os.Getenv("GOGC") == "") })
	limit := ourLimit.Load()
	if !gcPercentOurs.Load() || limit <= 0 {
		return
	}
	liveHeapMu.Lock()
	metrics.Read(liveHeap)
	live := int64(liveHeap[0].Value.Uint64())
	liveHeapMu.Unlock()
	p := int64(gcPercentFor(live, limit))
	// SetGCPercent stops the world for a moment: only a change of more
	// than an eighth is made.
	if old := gcPercent.Load(); old != 0 && p >= old-old/8 && p <= old+old/8 {
		return
	}
	gcPercent.Store(p)
	debug.SetGCPercent(int(p))
}

// zonesBytes is what the zones take: their memory tiers, their tag
// indexes, the disk tiers' indexes and their open files.
func (a *App) zonesBytes() int64 {
	var total int64
	for _, zc := range a.Zones {
		total += zc.Memory
	}
	for _, z := range a.zones {
		tags, _, _ := z.TagIndexBytes()
		total += tags
	}
	for _, d := range a.disks {
		_, open := d.OpenFiles()
		total += d.IndexBytes() + open
	}
	return total
}

// trackMemoryLimit keeps the limit in step with the disk indexes until
// stop, and logs each index's size once its rebuild at start is done.
func (a *App) trackMemoryLimit(stop <-chan struct{}) {
	for name, d := range a.disks {
		go func() {
			start := time.Now()
			select {
			case <-stop:
				return
			case <-d.Loaded():
			}
			st := d.Stats()
			perEntry := int64(0)
			if st.Entries > 0 {
				perEntry = st.IndexBytes / st.Entries
			}
			a.logger.Info("disk index loaded", zap.String("zone", name),
				zap.Int64("entries", st.Entries), zap.Int64("index_bytes", st.IndexBytes),
				zap.Int64("index_bytes_per_entry", perEntry), zap.Duration("took", time.Since(start)))
			applyMemoryLimit(a.zonesBytes(), a.logger)
		}()
	}
	t := time.NewTicker(memoryLimitUpdate)
	defer t.Stop()
	pace := time.NewTicker(gcPace)
	defer pace.Stop()
	paceCollector()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			applyMemoryLimit(a.zonesBytes(), a.logger)
		case <-pace.C:
			paceCollector()
		}
	}
}

// memoryMax is the memory the process may use, for the memory alert: its
// cgroup's limit (systemd's MemoryMax=, a container's limit), else the
// machine's memory. It is read at each scrape, as systemctl set-property
// changes it at run time; Caddy reads it the same way at start to set its
// Go memory limit.
func memoryMax() float64 {
	if n, err := memlimit.FromCgroup(); err == nil && n > 0 {
		return float64(n)
	}
	if n, err := memlimit.FromSystem(); err == nil && n > 0 {
		return float64(n)
	}
	return math.Inf(1)
}
