package fleet

import (
	"sync/atomic"

	"github.com/edgecache/edgecache/cache"
)

// Stats are the shared tier's counters, read by the metrics collector.
type Stats struct {
	Hits    atomic.Int64 // look-ups answered from Redis
	Misses  atomic.Int64 // look-ups Redis had no (usable) value for, errors and corrupt values included
	Errors  atomic.Int64 // calls that failed (no answer, refused, timeout)
	Corrupt atomic.Int64 // values that did not decode or verify: misses, never served
	Skipped atomic.Int64 // look-ups and stores skipped while the breaker was open
	Stores  atomic.Int64 // entries written
	// StoresDropped counts entries not written: larger than entry_max,
	// purged meanwhile, too many stores queued, or a failed SET.
	StoresDropped atomic.Int64
	// StoresUndone counts values removed from Redis after they were
	// written: a purge made on another proxy while their fill ran.
	StoresUndone atomic.Int64
	LockWaits    atomic.Int64 // fills waited for on another proxy
	LockTimeouts atomic.Int64 // waits that reached lock_timeout
	// ReleaseRetries counts fill locks whose release failed at first
	// (Redis stalled or gone), then retried while their lease lasted.
	ReleaseRetries atomic.Int64
	Calls          cache.Histogram // time each Redis call takes (CallBuckets)
	// WakeUps is the time from a value being sent to Redis (the storing
	// proxy's clock) to a proxy that waited for it holding it.
	WakeUps cache.Histogram
}

// CallBuckets are the upper bounds, in seconds, of Calls and WakeUps: a loopback GET
// takes tens of microseconds, a 1 MiB value about a millisecond.
var CallBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
