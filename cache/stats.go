package cache

import (
	"github.com/edgecache/edgecache/cache/disk"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a zone's counters. They live with the zone, so they carry on
// across config reloads that keep it; the metrics collector reads them.
type Stats struct {
	Requests     [numStatuses]atomic.Int64
	BytesServed  atomic.Int64 // body bytes served from the cache
	Stored       atomic.Int64
	StoreSkipped sync.Map // reason (string) -> *atomic.Int64: responses not stored, by reason
	// BackendErrors counts failed backend fetches, by kind.
	BackendErrors [NumBackendErrors]atomic.Int64
	// Bypassed counts requests passed through uncached (BYPASS), by reason.
	Bypassed     [NumBypassReasons]atomic.Int64
	LockWaits    atomic.Int64
	LockTimeouts atomic.Int64
	// CollapsedErrors counts waiters given their fill's 5xx answer
	// instead of a backend request of their own (hit-for-miss).
	CollapsedErrors atomic.Int64
	Purged          atomic.Int64
	Invalidated     atomic.Int64 // keys removed by unsafe requests (RFC 9111 §4.4)
	SoftPurged      atomic.Int64 // entries marked expired by soft purges
	// BackgroundUpdates counts background updates started.
	BackgroundUpdates atomic.Int64
	// FetchLatency is the time backend fetches take, to the end of the body.
	FetchLatency Histogram
}

// Reasons for not storing a response (the reason label of
// edgecache_not_stored_total): snake_case, as Prometheus label values are.
const (
	SkipXAccelExpires  = "x_accel_expires" // X-Accel-Expires: 0 or in the past
	SkipSetCookie      = "set_cookie"
	SkipCacheControl   = "cache_control"    // private, no-store, no-cache or max-age=0
	SkipExpires        = "expires"          // Expires in the past or invalid
	SkipVary           = "vary"             // Vary: *
	SkipStatus         = "status"           // no valid line covers the status
	SkipTooLarge       = "too_large"        // over memory_entry_max, with no disk tier to take it
	SkipDisk           = "disk"             // the disk tier could not write it
	SkipPurged         = "purged"           // a purge ran while it was fetched
	SkipPartial        = "partial"          // a 206 to a fill (RFC 9111 §3.3)
	SkipMustUnderstand = "must_understand"  // must-understand with a status not understood
	SkipNoCache        = "no_cache"         // no-cache without a validator: could never be reused
	SkipAge            = "age"              // older on arrival than its lifetime (RFC 9111 §4.2.3)
	SkipEncoded        = "content_encoding" // an encoded answer to a fill that asked for identity
)

var skipReasons = [...]string{SkipXAccelExpires, SkipSetCookie, SkipCacheControl, SkipExpires,
	SkipVary, SkipStatus, SkipTooLarge, SkipDisk, SkipPurged, SkipPartial, SkipMustUnderstand, SkipNoCache, SkipAge, SkipEncoded}

// BackendError is a kind of failed backend fetch.
type BackendError uint8

const (
	BackendFailed        BackendError = iota // no response: refused, reset, no backend available
	BackendTimeout                           // no response in time
	BackendInvalidHeader                     // a malformed response
	BackendStatus5xx                         // an answer with a 5xx status
	NumBackendErrors
)

var backendErrorNames = [NumBackendErrors]string{"error", "timeout", "invalid_header", "http_5xx"}

// String is the kind's label value, named as use_stale's conditions.
func (e BackendError) String() string { return backendErrorNames[e] }

// BypassReason is why a request was passed through uncached (BYPASS).
type BypassReason uint8

const (
	BypassNone           BypassReason = iota
	BypassPrivate                     // Authorization, or a cookie of private_cookies
	BypassRequestBody                 // a GET or HEAD with a body: its answer may depend on it
	BypassMethodOverride              // X-HTTP-Method-Override and the like: a backend may take it for another method
	NumBypassReasons
)

var bypassReasonNames = [NumBypassReasons]string{"", "private", "request_body", "method_override"}

// String is the reason's label value (snake_case, as Prometheus label
// values are).
func (r BypassReason) String() string { return bypassReasonNames[r] }

// declare makes every known reason's counter exist at 0, so that alerts
// and dashboards see each series from the start, not after its first event.
func (s *Stats) declare() {
	for _, r := range skipReasons {
		s.StoreSkipped.LoadOrStore(r, new(atomic.Int64))
	}
}

// CountSkip counts a response that was not stored, by reason.
func (s *Stats) CountSkip(reason string) {
	c, ok := s.StoreSkipped.Load(reason)
	if !ok {
		c, _ = s.StoreSkipped.LoadOrStore(reason, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// Tiers reports what each tier holds.
type Tiers struct {
	MemoryEntries, MemoryBytes int64
	MemoryEvictions            int64       // since start, to make room
	Disk                       *disk.Stats // nil without a disk tier
}

// Tiers measures the zone's tiers.
func (z *Zone) Tiers() Tiers {
	t := Tiers{MemoryEntries: z.mem.entries.Load(), MemoryBytes: z.mem.bytes.Load(), MemoryEvictions: z.mem.evictions.Load()}
	if z.disk != nil {
		ds := z.disk.Stats()
		t.Disk = &ds
	}
	return t
}

// LatencyBuckets are the upper bounds, in seconds, of FetchLatency's
// buckets: from a fast render to the long-timeout listener's 900 s.
var LatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

// Histogram is a lock-free latency histogram: LatencyBuckets, or Bounds.
type Histogram struct {
	// Bounds, when set (before any Observe), are the buckets' upper
	// bounds in seconds, at most 15 of them.
	Bounds []float64
	counts [16]atomic.Uint64 // one per bucket, then +Inf
	sumNs  atomic.Int64
}

func (h *Histogram) bounds() []float64 {
	if h.Bounds != nil {
		return h.Bounds
	}
	return LatencyBuckets
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s, bounds := d.Seconds(), h.bounds()
	i := 0
	for i < len(bounds) && s > bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// Snapshot returns cumulative counts per bucket (as Prometheus wants), the
// total count and the sum in seconds.
func (h *Histogram) Snapshot() (cumulative map[float64]uint64, count uint64, sum float64) {
	bounds := h.bounds()
	cumulative = make(map[float64]uint64, len(bounds))
	for i, ub := range bounds {
		count += h.counts[i].Load()
		cumulative[ub] = count
	}
	count += h.counts[len(bounds)].Load()
	return cumulative, count, float64(h.sumNs.Load()) / float64(time.Second)
}
