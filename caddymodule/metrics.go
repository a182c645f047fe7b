package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgecache/edgecache/cache"
)

// metricsCollector exposes the zones' counters on Caddy's metrics
// registry. It reads counters the zones keep themselves, so values carry
// on across config reloads, and each config registers its own collector on
// its own registry: no duplicate registration, nothing global.
type metricsCollector struct {
	app *App
}

const metricsNamespace = "edgecache"

var (
	descRequests = prometheus.NewDesc(metricsNamespace+"_requests_total",
		"Requests by zone and cache status.", []string{"zone", "cache_status"}, nil)
	descServedBytes = prometheus.NewDesc(metricsNamespace+"_served_bytes_total",
		"Body bytes served from the cache.", []string{"zone"}, nil)
	descStored = prometheus.NewDesc(metricsNamespace+"_stored_total",
		"Responses stored.", []string{"zone"}, nil)
	descNotStored = prometheus.NewDesc(metricsNamespace+"_not_stored_total",
		"Responses not stored, by reason (set_cookie, cache_control, status, too_large, disk, ...).", []string{"zone", "reason"}, nil)
	descBackendErrors = prometheus.NewDesc(metricsNamespace+"_backend_errors_total",
		"Backend fetches that failed, by kind (error, timeout, invalid_header, http_5xx).", []string{"zone", "reason"}, nil)
	descBypassed = prometheus.NewDesc(metricsNamespace+"_bypassed_total",
		"Requests passed through uncached (BYPASS), by reason (private, request_body, method_override).", []string{"zone", "reason"}, nil)
	descEntries = prometheus.NewDesc(metricsNamespace+"_entries",
		"Entries held, by tier.", []string{"zone", "tier"}, nil)
	descBytes = prometheus.NewDesc(metricsNamespace+"_bytes",
		"Bytes held, by tier (disk: file sizes in 4 KiB blocks).", []string{"zone", "tier"}, nil)
	descEvictions = prometheus.NewDesc(metricsNamespace+"_disk_evictions_total",
		"Disk entries removed, by reason (max_size, inactive, corrupt).", []string{"zone", "reason"}, nil)
	descMemoryEvictions = prometheus.NewDesc(metricsNamespace+"_memory_evictions_total",
		"Entries pushed out of the memory tier to make room (a disk tier may still hold them).", []string{"zone"}, nil)
	descDiskWriteErrors = prometheus.NewDesc(metricsNamespace+"_disk_write_errors_total",
		"Disk tier write failures, by reason.", []string{"zone", "reason"}, nil)
	descDiskLoading = prometheus.NewDesc(metricsNamespace+"_disk_loading",
		"1 while the disk tier's index is being rebuilt after a start.", []string{"zone"}, nil)
	descLockWaits = prometheus.NewDesc(metricsNamespace+"_lock_waits_total",
		"Requests that waited for another request's fill of the same key.", []string{"zone"}, nil)
	descLockTimeouts = prometheus.NewDesc(metricsNamespace+"_lock_timeouts_total",
		"Waits that reached lock_timeout.", []string{"zone"}, nil)
	descBackground = prometheus.NewDesc(metricsNamespace+"_background_updates_total",
		"Background updates started.", []string{"zone"}, nil)
	descPurged = prometheus.NewDesc(metricsNamespace+"_purged_total",
		"Entries purged through the admin API.", []string{"zone"}, nil)
	descSoftPurged = prometheus.NewDesc(metricsNamespace+"_soft_purged_total",
		"Entries marked expired by soft purges.", []string{"zone"}, nil)
	descTagIndexBytes = prometheus.NewDesc(metricsNamespace+"_tag_index_bytes",
		"Heap taken by the zone's tag index (counted in the Go memory limit).", []string{"zone"}, nil)
	descUndefinedZone = prometheus.NewDesc(metricsNamespace+"_undefined_zone_requests_total",
		"Requests whose zone placeholder named no defined zone: proxied uncached (BYPASS).", nil, nil)
	descIndexBytes = prometheus.NewDesc(metricsNamespace+"_disk_index_bytes",
		"Heap taken by the disk tier's index (counted in the Go memory limit).", []string{"zone"}, nil)
	descOpenFiles = prometheus.NewDesc(metricsNamespace+"_disk_open_files",
		"Disk entry files kept open with their parsed headers for the next hits (open_files).", []string{"zone"}, nil)
	descOpenFileBytes = prometheus.NewDesc(metricsNamespace+"_disk_open_file_bytes",
		"Heap taken by the open files' parsed headers and records (counted in the Go memory limit).", []string{"zone"}, nil)
	descFlushes = prometheus.NewDesc(metricsNamespace+"_disk_flushes_total",
		"Times the zone folder was found emptied from outside (rm -rf zone/*) and the zone flushed.", []string{"zone"}, nil)
	descFetch = prometheus.NewDesc(metricsNamespace+"_backend_fetch_seconds",
		"Time backend fetches take, to the end of the body.", []string{"zone"}, nil)
	descSharedUp = prometheus.NewDesc(metricsNamespace+"_shared_up",
		"1 while the fleet's Redis answers, 0 while the breaker keeps requests off it.", []string{"node"}, nil)
	descSharedLookups = prometheus.NewDesc(metricsNamespace+"_shared_lookups_total",
		"Look-ups in the fleet's Redis after a local miss, by result (hit, miss).", []string{"node", "result"}, nil)
	descSharedErrors = prometheus.NewDesc(metricsNamespace+"_shared_errors_total",
		"Redis calls that failed (no answer within the timeout, refused, reset).", []string{"node"}, nil)
	descSharedCorrupt = prometheus.NewDesc(metricsNamespace+"_shared_corrupt_total",
		"Redis values that did not decode or verify: counted as misses, never served.", []string{"node"}, nil)
	descSharedSkipped = prometheus.NewDesc(metricsNamespace+"_shared_skipped_total",
		"Redis calls skipped while the breaker was open.", []string{"node"}, nil)
	descSharedStores = prometheus.NewDesc(metricsNamespace+"_shared_stores_total",
		"Entries written to Redis.", []string{"node"}, nil)
	descSharedDropped = prometheus.NewDesc(metricsNamespace+"_shared_stores_dropped_total",
		"Entries not written to Redis: over entry_max, purged meanwhile, queue full or a failed write.", []string{"node"}, nil)
	descSharedUndone = prometheus.NewDesc(metricsNamespace+"_shared_stores_undone_total",
		"Entries removed from Redis after they were written: a purge made on another proxy while their fill ran.", []string{"node"}, nil)
	descSharedLockWaits = prometheus.NewDesc(metricsNamespace+"_shared_lock_waits_total",
		"Fills waited for on another proxy of the fleet.", []string{"node"}, nil)
	descSharedLockTimeouts = prometheus.NewDesc(metricsNamespace+"_shared_lock_timeouts_total",
		"Waits for another proxy's fill that reached lock_timeout.", []string{"node"}, nil)
	descSharedReleaseRetries = prometheus.NewDesc(metricsNamespace+"_shared_lock_release_retries_total",
		"Fill locks whose release failed at first (Redis stalled or gone), then retried while their lease lasted.", []string{"node"}, nil)
	descCollapsedErrors = prometheus.NewDesc(metricsNamespace+"_collapsed_errors_total",
		"Waiters of a fill given its 5xx answer (stored nowhere; no client-specific header shaped it) instead of a backend request of their own.", []string{"zone"}, nil)
	descSharedCalls = prometheus.NewDesc(metricsNamespace+"_shared_call_seconds",
		"Time Redis calls take.", []string{"node"}, nil)
	descSharedWakeUps = prometheus.NewDesc(metricsNamespace+"_shared_wakeup_seconds",
		"Time from another proxy sending its value to Redis (its clock) to this proxy, which waited for it, holding it.", []string{"node"}, nil)
	descMemoryLimit = prometheus.NewDesc(metricsNamespace+"_memory_limit_bytes",
		"Memory the process may use: its cgroup's limit (systemd's MemoryMax=), else the machine's memory.", nil, nil)
)

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descServedBytes, descStored, descNotStored, descBackendErrors,
		descBypassed, descEntries, descBytes, descEvictions, descMemoryEvictions, descDiskWriteErrors, descDiskLoading, descLockWaits, descLockTimeouts,
		descBackground, descPurged, descFetch, descMemoryLimit, descUndefinedZone, descIndexBytes, descOpenFiles, descOpenFileBytes, descFlushes, descSoftPurged, descTagIndexBytes,
		descSharedUp, descSharedLookups, descSharedErrors, descSharedCorrupt, descSharedSkipped, descSharedStores,
		descSharedDropped, descSharedUndone, descSharedLockWaits, descSharedLockTimeouts, descSharedCalls, descSharedWakeUps,
		descSharedReleaseRetries, descCollapsedErrors} {
		ch <- d
	}
}

func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(descUndefinedZone, undefinedZones.requests.Load())
	ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, memoryMax())
	if f := c.app.Fleet(); f != nil {
		node, st := f.Node(), &f.Stats
		up := int64(0)
		if f.Up() {
			up = 1
		}
		gauge(descSharedUp, up, node)
		counter(descSharedLookups, st.Hits.Load(), node, "hit")
		counter(descSharedLookups, st.Misses.Load(), node, "miss")
		counter(descSharedErrors, st.Errors.Load(), node)
		counter(descSharedCorrupt, st.Corrupt.Load(), node)
		counter(descSharedSkipped, st.Skipped.Load(), node)
		counter(descSharedStores, st.Stores.Load(), node)
		counter(descSharedDropped, st.StoresDropped.Load(), node)
		counter(descSharedUndone, st.StoresUndone.Load(), node)
		counter(descSharedLockWaits, st.LockWaits.Load(), node)
		counter(descSharedLockTimeouts, st.LockTimeouts.Load(), node)
		counter(descSharedReleaseRetries, st.ReleaseRetries.Load(), node)
		buckets, count, sum := st.Calls.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descSharedCalls, count, sum, buckets, node)
		buckets, count, sum = st.WakeUps.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descSharedWakeUps, count, sum, buckets, node)
	}
	for _, name := range c.app.ZoneNames() {
		z := c.app.Zone(name)
		if z == nil {
			continue
		}
		st := &z.Stats
		for _, s := range cache.Statuses() {
			counter(descRequests, st.Requests[s].Load(), name, s.String())
		}
		counter(descServedBytes, st.BytesServed.Load(), name)
		counter(descStored, st.Stored.Load(), name)
		st.StoreSkipped.Range(func(reason, n any) bool {
			counter(descNotStored, n.(interface{ Load() int64 }).Load(), name, reason.(string))
			return true
		})
		for kind := range cache.NumBackendErrors {
			counter(descBackendErrors, st.BackendErrors[kind].Load(), name, kind.String())
		}
		for reason := cache.BypassPrivate; reason < cache.NumBypassReasons; reason++ {
			counter(descBypassed, st.Bypassed[reason].Load(), name, reason.String())
		}
		counter(descLockWaits, st.LockWaits.Load(), name)
		counter(descLockTimeouts, st.LockTimeouts.Load(), name)
		counter(descCollapsedErrors, st.CollapsedErrors.Load(), name)
		counter(descBackground, st.BackgroundUpdates.Load(), name)
		counter(descPurged, st.Purged.Load(), name)
		counter(descSoftPurged, st.SoftPurged.Load(), name)
		tagBytes, _, _ := z.TagIndexBytes()
		gauge(descTagIndexBytes, tagBytes, name)
		buckets, count, sum := st.FetchLatency.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descFetch, count, sum, buckets, name)

		tiers := z.Tiers()
		gauge(descEntries, tiers.MemoryEntries, name, "memory")
		gauge(descBytes, tiers.MemoryBytes, name, "memory")
		counter(descMemoryEvictions, tiers.MemoryEvictions, name)
		if d := tiers.Disk; d != nil {
			gauge(descEntries, d.Entries, name, "disk")
			gauge(descBytes, d.Bytes, name, "disk")
			gauge(descIndexBytes, d.IndexBytes, name)
			gauge(descOpenFiles, d.OpenFiles, name)
			gauge(descOpenFileBytes, d.OpenFileBytes, name)
			counter(descFlushes, d.Flushes, name)
			counter(descEvictions, d.Evictions, name, "max_size")
			counter(descEvictions, d.InactiveRemovals, name, "inactive")
			counter(descEvictions, d.CorruptRemovals, name, "corrupt")
			for reason, n := range d.WriteErrors {
				counter(descDiskWriteErrors, n, name, reason)
			}
			loading := int64(0)
			if d.Loading {
				loading = 1
			}
			gauge(descDiskLoading, loading, name)
		}
	}
}

// registerMetrics adds the collector to this config's registry.
func (a *App) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metricsCollector{app: a}, fleetEventsCollector{app: a}} {
		err := reg.Register(c)
		if are := (prometheus.AlreadyRegisteredError{}); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

var _ prometheus.Collector = metricsCollector{}
