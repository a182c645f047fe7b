package adminapi

import "time"

// The status page: GET StatusPath serves one HTML page (no external
// assets) that polls StatusJSONPath every 2 s; GET StatusJSONPath serves
// Status, the same data, for scripts and `edgecache status`.
const (
	StatusPath     = "/edge_cache/status"
	StatusJSONPath = "/edge_cache/status.json"
)

// CLIUserAgent starts the User-Agent of the edgecache commands' admin
// requests: the status page says a purge came from the CLI.
const CLIUserAgent = "edgecache-cli"

// Status is what a running proxy is doing, as of Time.
type Status struct {
	Time        time.Time     `json:"time"`
	Process     Process       `json:"process"`
	Draining    bool          `json:"draining"`
	Maintenance []Maintenance `json:"maintenance"`
	Fleet       *Fleet        `json:"fleet,omitempty"` // nil outside a fleet
	Zones       []Zone        `json:"zones"`
	Backends    []Backend     `json:"backends"`
	// Events are the last purges and refreshes (MaxEvents at most), over
	// every zone, newest first.
	Events []Event `json:"events"`
}

// MaxEvents is how many purges and refreshes Status lists; TopMisses is
// how many keys Zone.TopMisses lists.
const (
	MaxEvents = 20
	TopMisses = 20
)

// Process is the proxy process.
type Process struct {
	Version string    `json:"version"`
	Node    string    `json:"node,omitempty"` // its name in the fleet
	Started time.Time `json:"started"`
	// UptimeSeconds is how long the process has run.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// MemoryBytes is the resident set size (the Go runtime's total
	// where /proc is not there); MemoryLimitBytes its limit (the
	// cgroup's MemoryMax=, else the machine's memory; 0: unknown).
	MemoryBytes      int64 `json:"memory_bytes"`
	MemoryLimitBytes int64 `json:"memory_limit_bytes"`
	// GoMemoryLimitBytes is the Go runtime's soft limit (GOMEMLIMIT, or
	// the one edgecache sets from its zones).
	GoMemoryLimitBytes int64 `json:"go_memory_limit_bytes"`
	Goroutines         int   `json:"goroutines"`
	// OpenFiles and MaxOpenFiles are the process's file descriptors and
	// their limit (RLIMIT_NOFILE); -1 when they cannot be read.
	OpenFiles    int   `json:"open_files"`
	MaxOpenFiles int64 `json:"max_open_files"`
}

// Maintenance is one maintenance handler's flag file.
type Maintenance struct {
	FlagFile string    `json:"flag_file"`
	On       bool      `json:"on"`
	Since    time.Time `json:"since"` // when it last changed (or was first seen)
}

// Fleet is the fleet this proxy belongs to.
type Fleet struct {
	// RedisUp reports whether Redis answers (false while the breaker
	// keeps requests off it).
	RedisUp bool `json:"redis_up"`
	// Error says why Members is empty when the list could not be read.
	Error   string   `json:"error,omitempty"`
	Members []Member `json:"members"`
}

// Member is a proxy of the fleet.
type Member struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// AgeSeconds is how long ago it last announced itself.
	AgeSeconds float64 `json:"age_seconds"`
	// Behind is how many events of the log it has yet to apply (-1:
	// unknown).
	Behind int64 `json:"behind"`
}

// Zone is one cache zone.
type Zone struct {
	Name  string `json:"name"`
	Tiers []Tier `json:"tiers"`
	// LastMinute counts what the zone did over the last WindowSeconds
	// (60, or less just after a start); SinceStart since the zone
	// opened: the /metrics counters.
	WindowSeconds float64 `json:"window_seconds"`
	LastMinute    Counts  `json:"last_minute"`
	SinceStart    Counts  `json:"since_start"`
	// Rates are requests per second over the last five minutes, oldest
	// first, one per RateStepSeconds, as far back as the history goes.
	Rates           []float64 `json:"rates"`
	RateStepSeconds float64   `json:"rate_step_seconds"`
	// Evictions counts entries removed since start to make room or as
	// damaged, by reason: memory (pushed out of the memory tier, perhaps
	// still on disk), and for the disk tier max_size, inactive, corrupt.
	Evictions  map[string]int64 `json:"evictions"`
	TopMisses  []KeyCount       `json:"top_misses"`
	Fills      []Fill           `json:"fills"`
	LockWaits  int64            `json:"lock_waits"`
	Background int64            `json:"background_updates"`
}

// Tier is what one tier of a zone holds, against its limits.
type Tier struct {
	Name    string `json:"name"` // memory, disk
	Entries int64  `json:"entries"`
	Bytes   int64  `json:"bytes"`
	// MaxBytes is the tier's size limit; 0: unlimited.
	MaxBytes int64 `json:"max_bytes"`
	// Loading is true while the disk tier's index is being rebuilt.
	Loading bool `json:"loading,omitempty"`
}

// Counts are a zone's requests over a span.
type Counts struct {
	// Requests by cache status (HIT, MISS, BYPASS, EXPIRED, STALE,
	// UPDATING, REVALIDATED), each present.
	Requests map[string]int64 `json:"requests"`
	// HitRatio is what was answered from the cache (HIT, STALE, UPDATING,
	// REVALIDATED) over every request but BYPASS, as the dashboard
	// computes it; nil with no such request.
	HitRatio      *float64 `json:"hit_ratio"`
	ServedBytes   int64    `json:"served_bytes"`
	BackendErrors int64    `json:"backend_errors"`
}

// KeyCount is a key and how often it missed over the last five minutes:
// at most Count, at least Count-Over (a bounded sketch counts them).
type KeyCount struct {
	Key   string `json:"key"` // in its text form
	Count int64  `json:"count"`
	Over  int64  `json:"over,omitempty"`
}

// Fill is a backend fetch under way that other requests for its key
// wait for.
type Fill struct {
	Key        string  `json:"key"`
	AgeSeconds float64 `json:"age_seconds"`
	// Bytes is how much of the body it has stored so far; -1 when it
	// stores none (yet).
	Bytes int64 `json:"bytes"`
	// Waiters wait for it to end or to start storing; Readers read its
	// body as it is written (its own client's included).
	Waiters int `json:"waiters"`
	Readers int `json:"readers"`
}

// Backend is one reverse_proxy upstream of the running config.
type Backend struct {
	Address string `json:"address"`
	// Healthy is false when an active health check failed or the passive
	// checks counted max_fails; Checked says whether any check is
	// configured (without one, Healthy stays true).
	Healthy bool `json:"healthy"`
	Checked bool `json:"checked"`
	// Requests are the requests in flight to it; Fails the failures the
	// passive health check counts within its fail_duration.
	Requests int `json:"requests"`
	Fails    int `json:"fails"`
}

// Event is a purge or a refresh.
type Event struct {
	Time   time.Time `json:"time"`
	Zone   string    `json:"zone"`
	Kind   string    `json:"kind"`             // purge key, purge prefix, purge all, refresh
	Target string    `json:"target,omitempty"` // key or prefix, in its text form
	Count  int       `json:"count"`
	By     string    `json:"by"` // cli, admin api, refresh listener, fleet <node>
}
