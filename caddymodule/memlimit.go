package caddymodule

import (
	"os"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

// The memory tiers hold most of the heap, and with Go's default GOGC=100
// the heap may grow to twice what is live before a collection: a full
// 256 MiB zone would take over 500 MiB. A soft memory limit a little above
// the zones' total keeps the process close to its configured size. The
// bodies are pointer-free []byte, so the extra collections are cheap: they
// scan only the index structures, not the cached bytes.
//
// An operator's own GOMEMLIMIT is left alone, and the limit never rises
// above the one the process started with (Caddy derives that from the
// machine's or cgroup's memory).

// memoryLimitFor returns the soft limit for zones holding total bytes:
// the zones, an eighth more for what their accounting does not see
// (map slots, headers, buffers of stores under way), and room for Caddy.
func memoryLimitFor(total int64) int64 {
	return total + total/8 + 48<<20
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
