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
	descUndefinedZone = prometheus.NewDesc(metricsNamespace+"_undefined_zone_requests_total",
		"Requests whose zone placeholder named no defined zone: proxied uncached (BYPASS).", nil, nil)
	descIndexBytes = prometheus.NewDesc(metricsNamespace+"_disk_index_bytes",
		"Heap taken by the disk tier's index (counted in the Go memory limit).", []string{"zone"}, nil)
	descFlushes = prometheus.NewDesc(metricsNamespace+"_disk_flushes_total",
		"Times the zone folder was found emptied from outside (rm -rf zone/*) and the zone flushed.", []string{"zone"}, nil)
	descFetch = prometheus.NewDesc(metricsNamespace+"_backend_fetch_seconds",
		"Time backend fetches take, to the end of the body.", []string{"zone"}, nil)
	descMemoryLimit = prometheus.NewDesc(metricsNamespace+"_memory_limit_bytes",
		"Memory the process may use: its cgroup's limit (systemd's MemoryMax=), else the machine's memory.", nil, nil)
)

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descServedBytes, descStored, descNotStored, descBackendErrors,
		descBypassed, descEntries, descBytes, descEvictions, descDiskWriteErrors, descDiskLoading, descLockWaits, descLockTimeouts,
		descBackground, descPurged, descFetch, descMemoryLimit, descUndefinedZone, descIndexBytes, descFlushes} {
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
		counter(descBackground, st.BackgroundUpdates.Load(), name)
		counter(descPurged, st.Purged.Load(), name)
		buckets, count, sum := st.FetchLatency.Snapshot()
		ch <- prometheus.MustNewConstHistogram(descFetch, count, sum, buckets, name)

		tiers := z.Tiers()
		gauge(descEntries, tiers.MemoryEntries, name, "memory")
		gauge(descBytes, tiers.MemoryBytes, name, "memory")
		if d := tiers.Disk; d != nil {
			gauge(descEntries, d.Entries, name, "disk")
			gauge(descBytes, d.Bytes, name, "disk")
			gauge(descIndexBytes, d.IndexBytes, name)
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
