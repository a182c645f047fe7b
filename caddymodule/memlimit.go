package caddymodule

import (
	"os"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

// A zone's memory size is what its hot tier may cost in all, so that an
// operator can add up the zones and know the process's size. The tier's
// accounting (bodies, headers, keys, index) tracks the heap within a few
// per cent; on top of that a garbage-collected heap needs headroom to
// replace entries, and with Go's default GOGC=100 that headroom is as
// large as the heap: a full 256 MiB tier would take over 500 MiB.
//
// So the entries get the size less a reserve (an eighth, at most 64 MiB
// per zone), and a soft memory limit of the zones' total plus room for
// Caddy itself makes the collector work in that reserve. The bodies are
// pointer-free []byte, so the extra collections are cheap: they scan only
// the index structures, not the cached bytes.
//
// An operator's own GOMEMLIMIT is left alone, and the limit never rises
// above the one the process started with (Caddy derives that from the
// machine's or cgroup's memory).

// entryBudget is what a zone of the given memory size stores in entries.
func entryBudget(size int64) int64 {
	return size - min(size/8, 64<<20)
}

// memoryLimitFor returns the soft limit for zones of total bytes: the
// zones and room for Caddy (its heap, goroutine stacks and connection
// buffers; an idle process takes 10 MiB).
func memoryLimitFor(total int64) int64 {
	return total + 32<<20
}

var (
	startLimitOnce sync.Once
	startLimit     int64
)

func applyMemoryLimit(total int64, logger *zap.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" || total <= 0 {
		return
	}
	startLimitOnce.Do(func() { startLimit = debug.SetMemoryLimit(-1) })
	limit := min(memoryLimitFor(total), startLimit)
	if old := debug.SetMemoryLimit(limit); old != limit {
		logger.Info("Go memory limit set from the zones' memory tiers",
			zap.Int64("zones_bytes", total), zap.Int64("limit_bytes", limit))
	}
}
