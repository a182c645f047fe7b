package caddymodule

import (
	"bytes"
	"context"
	_ "embed"
	"html"
	"maps"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/statustable"
	"github.com/edgecache/edgecache/maintenance"
)

func init() {
	caddy.RegisterModule(adminStatus{})
}

// adminStatus serves the status on Caddy's admin endpoint (localhost by
// default: reach it over an SSH tunnel), as nginx's vts page or HAProxy's
// stats page:
//
//	GET /edge_cache/status       -> one HTML page, no external assets, that polls status.json every 2 s
//	GET /edge_cache/status.json  -> adminapi.Status
//
// Caddy's admin endpoint refuses what a graphical browser sends when a
// URL is typed (Sec-Fetch-Mode without an Origin or a Referer: its
// cross-site mitigation), so browsers get the same page from the
// edge_cache_status handler (status_handler.go) on a localhost site; here
// the page serves curl, w3m and lynx, and status.json the CLI and scripts.
//
// It reads counters the zones keep anyway (and their per-second history,
// sampled by the app): a request pays nothing for it.
type adminStatus struct{}

// CaddyModule returns the Caddy module information.
func (adminStatus) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.edge_cache_status",
		New: func() caddy.Module { return new(adminStatus) },
	}
}

// Routes implements caddy.AdminRouter.
func (s adminStatus) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: adminapi.StatusPath, Handler: caddy.AdminHandlerFunc(s.handlePage)},
		{Pattern: adminapi.StatusJSONPath, Handler: caddy.AdminHandlerFunc(s.handleJSON)},
	}
}

//go:embed status.html
var statusPage []byte

func (adminStatus) handlePage(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != adminapi.StatusPath {
		return adminError(http.StatusNotFound, "not found: the status page is %s", adminapi.StatusPath)
	}
	return servePage(w, r)
}

func (adminStatus) handleJSON(w http.ResponseWriter, r *http.Request) error {
	return serveStatusJSON(w, r)
}

// servePage serves the status page; its script reads status.json beside
// it (a relative URL).
func servePage(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	// The tables as text, for a browser without scripts (which reloads
	// the page every 2 s instead).
	var text strings.Builder
	if err := statustable.Write(&text, currentStatus(r.Context(), runningApp()), 100); err != nil {
		return err
	}
	page := bytes.Replace(statusPage, []byte("{{TEXT}}"), []byte(html.EscapeString(text.String())), 1)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but itself: the page has its script and style inline.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(page)
	return err
}

// serveStatusJSON serves adminapi.Status.
func serveStatusJSON(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, currentStatus(r.Context(), runningApp()))
}

// processStarted is when the process started, near enough.
var processStarted = time.Now()

// currentStatus gathers the status of the running app (nil: none).
func currentStatus(ctx context.Context, app *App) adminapi.Status {
	now := time.Now()
	st := adminapi.Status{
		Time:        now,
		Process:     processStatus(now),
		Draining:    draining.Load(),
		Maintenance: []adminapi.Maintenance{},
		Zones:       []adminapi.Zone{},
		Backends:    backends(),
		Events:      []adminapi.Event{},
	}
	st.Process.Node = nodeName()
	for _, f := range maintenance.Flags() {
		st.Maintenance = append(st.Maintenance, adminapi.Maintenance{FlagFile: f.FlagFile, On: f.On, Since: f.Since})
	}
	if app == nil {
		return st
	}
	for _, name := range app.ZoneNames() {
		z := app.Zone(name)
		if z == nil {
			continue
		}
		st.Zones = append(st.Zones, app.zoneStatus(z))
		for _, ev := range z.Activity().Events() {
			st.Events = append(st.Events, adminapi.Event{Time: ev.At, Zone: name, Kind: ev.Kind,
				Target: adminapi.KeyText(ev.Target), Count: ev.Count, By: ev.By})
		}
	}
	slices.SortStableFunc(st.Events, func(a, b adminapi.Event) int { return b.Time.Compare(a.Time) })
	st.Events = st.Events[:min(len(st.Events), adminapi.MaxEvents)]
	if app.fleet != nil {
		st.Fleet = fleetStatus(ctx, app, now)
	}
	return st
}

// rateStep is the sparkline's resolution.
const rateStep = 5 * time.Second

func (a *App) zoneStatus(z *cache.Zone) adminapi.Zone {
	now := z.Clock().Now()
	cur := z.Current(now)
	zs := adminapi.Zone{
		Name:            z.Name(),
		SinceStart:      counts(cur, cache.Sample{}),
		Rates:           z.Activity().Rates(cur, 5*time.Minute, rateStep),
		RateStepSeconds: rateStep.Seconds(),
		Evictions:       map[string]int64{},
		TopMisses:       []adminapi.KeyCount{},
		Fills:           []adminapi.Fill{},
		LockWaits:       z.Stats.LockWaits.Load(),
		Background:      z.Stats.BackgroundUpdates.Load(),
	}
	if zs.Rates == nil {
		zs.Rates = []float64{}
	}
	if ago, ok := z.Activity().Since(now.Add(-time.Minute)); ok {
		zs.WindowSeconds = now.Sub(ago.At).Seconds()
		zs.LastMinute = counts(cur, ago)
	} else {
		zs.LastMinute = counts(cache.Sample{}, cache.Sample{})
	}
	memMax := int64(DefaultZoneMemory)
	if zc := a.Zones[z.Name()]; zc != nil && zc.Memory > 0 {
		memMax = zc.Memory
	}
	tiers := z.Tiers()
	zs.Tiers = append(zs.Tiers, adminapi.Tier{Name: "memory", Entries: tiers.MemoryEntries, Bytes: tiers.MemoryBytes, MaxBytes: entryBudget(memMax)})
	zs.Evictions["memory"] = tiers.MemoryEvictions
	if d := tiers.Disk; d != nil {
		var maxSize int64
		if zc := a.Zones[z.Name()]; zc != nil {
			maxSize = zc.MaxSize
		}
		zs.Tiers = append(zs.Tiers, adminapi.Tier{Name: "disk", Entries: d.Entries, Bytes: d.Bytes, MaxBytes: maxSize, Loading: d.Loading})
		zs.Evictions["max_size"] = d.Evictions
		zs.Evictions["inactive"] = d.InactiveRemovals
		zs.Evictions["corrupt"] = d.CorruptRemovals
	}
	for _, kc := range z.Activity().TopMisses(now, adminapi.TopMisses) {
		zs.TopMisses = append(zs.TopMisses, adminapi.KeyCount{Key: adminapi.KeyText(kc.Key), Count: kc.Count, Over: kc.Over})
	}
	for _, f := range z.Fills() {
		zs.Fills = append(zs.Fills, adminapi.Fill{Key: adminapi.KeyText(f.Key), AgeSeconds: now.Sub(f.Started).Seconds(), Bytes: f.Bytes, Waiters: f.Waiters, Readers: f.Readers})
	}
	return zs
}

// counts are the requests between two samples of a zone.
func counts(to, from cache.Sample) adminapi.Counts {
	c := adminapi.Counts{
		Requests:      make(map[string]int64, len(cache.Statuses())),
		ServedBytes:   to.BytesServed - from.BytesServed,
		BackendErrors: to.BackendErrors - from.BackendErrors,
	}
	var cached, lookedUp int64
	for _, s := range cache.Statuses() {
		n := to.Count(s) - from.Count(s)
		c.Requests[s.String()] = n
		switch s {
		case cache.StatusHit, cache.StatusStale, cache.StatusUpdating, cache.StatusRevalidated:
			cached += n
		}
		if s != cache.StatusBypass {
			lookedUp += n
		}
	}
	if lookedUp > 0 {
		ratio := float64(cached) / float64(lookedUp)
		c.HitRatio = &ratio
	}
	return c
}

func fleetStatus(ctx context.Context, app *App, now time.Time) *adminapi.Fleet {
	fs := &adminapi.Fleet{RedisUp: app.fleet.Up(), Members: []adminapi.Member{}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	members, err := app.fleet.Members(ctx)
	if err != nil {
		fs.Error = err.Error()
	}
	for _, m := range members {
		fs.Members = append(fs.Members, adminapi.Member{Node: m.Node, Version: m.Version, AgeSeconds: now.Sub(m.Seen).Seconds(), Behind: m.Behind})
	}
	return fs
}

// processStatus measures the process.
func processStatus(now time.Time) adminapi.Process {
	p := adminapi.Process{
		Version:            edgecacheVersion(),
		Started:            processStarted,
		UptimeSeconds:      now.Sub(processStarted).Seconds(),
		GoMemoryLimitBytes: debug.SetMemoryLimit(-1),
		Goroutines:         runtime.NumGoroutine(),
		OpenFiles:          -1,
		MaxOpenFiles:       maxOpenFiles(),
	}
	if limit := memoryMax(); limit < 1<<62 {
		p.MemoryLimitBytes = int64(limit)
	}
	p.MemoryBytes = residentBytes()
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.OpenFiles = len(fds) - 1 // less the one reading the folder
	}
	return p
}

// residentBytes is the process's resident set size from /proc, else what
// the Go runtime holds from the system.
func residentBytes() int64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return pages * int64(os.Getpagesize())
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.Sys - ms.HeapReleased)
}

// backends lists the reverse_proxy upstreams of the running config, as
// Caddy's own /reverse_proxy/upstreams does, with their health: an
// address that several handlers dial is unhealthy when any of them finds
// it so.
func backends() []adminapi.Backend {
	out := []adminapi.Backend{}
	httpApp, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil || httpApp == nil {
		return out
	}
	seen := map[string]int{}
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, route := range routes {
			for _, h := range route.Handlers {
				switch h := h.(type) {
				case *caddyhttp.Subroute:
					walk(h.Routes)
					if h.Errors != nil {
						walk(h.Errors.Routes)
					}
				case *reverseproxy.Handler:
					checked := h.HealthChecks != nil && (h.HealthChecks.Active != nil || h.HealthChecks.Passive != nil)
					for _, u := range h.Upstreams {
						if u.Host == nil {
							continue
						}
						b := adminapi.Backend{Address: u.Dial, Healthy: u.Healthy(), Checked: checked,
							Requests: u.Host.NumRequests(), Fails: u.Host.Fails()}
						if i, ok := seen[b.Address]; ok {
							out[i].Healthy = out[i].Healthy && b.Healthy
							out[i].Checked = out[i].Checked || b.Checked
							continue
						}
						seen[b.Address] = len(out)
						out = append(out, b)
					}
				}
			}
		}
	}
	srvs := httpApp.(*caddyhttp.App).Servers
	for _, name := range slices.Sorted(maps.Keys(srvs)) {
		srv := srvs[name]
		walk(srv.Routes)
		if srv.Errors != nil {
			walk(srv.Errors.Routes)
		}
	}
	slices.SortFunc(out, func(a, b adminapi.Backend) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// sampleZones records each zone's counters once a second until stop is
// closed: the status page's last minute and sparkline.
func (a *App) sampleZones(stop <-chan struct{}) {
	sample := func() {
		for _, z := range a.zones {
			z.Sample(z.Clock().Now())
		}
	}
	sample()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			sample()
		}
	}
}

// Who made a purge or a refresh, on the status page.
const (
	byCLI      = "cli"
	byAdminAPI = "admin api"
	byRefresh  = "refresh listener"
	byEndpoint = "purge endpoint"
	byFleet    = "fleet "
)

// requester names who sent an admin request: the CLI says so in its
// User-Agent.
func requester(r *http.Request) string {
	if strings.HasPrefix(r.UserAgent(), adminapi.CLIUserAgent) {
		return byCLI
	}
	return byAdminAPI
}

// recordPurge remembers a purge of zone z that removed n entries.
func recordPurge(z *cache.Zone, kind, target string, n int, by string) {
	z.Activity().Record(cache.Event{At: z.Clock().Now(), Kind: kind, Target: target, Count: n, By: by})
}

// recordRefresh remembers a store through the cache buster (refresh on).
func recordRefresh(z *cache.Zone, key, by string) {
	z.Activity().Record(cache.Event{At: z.Clock().Now(), Kind: cache.EventRefresh, Target: key, Count: 1, By: by})
}

// Interface guards
var _ caddy.AdminRouter = (*adminStatus)(nil)

// purgeKind is the status page's name of a purge request's kind.
func purgeKind(req adminapi.PurgeRequest) string {
	kind := cache.EventPurgeAll
	switch {
	case req.Key != "":
		kind = cache.EventPurgeKey
	case req.Prefix != "":
		kind = cache.EventPurgePrefix
	case len(req.Tags) > 0:
		kind = cache.EventPurgeTag
	}
	return eventKind(kind, req.Soft)
}

// purgeTarget is what a purge request names: its key, prefix or tags.
func purgeTarget(req adminapi.PurgeRequest) string {
	if len(req.Tags) > 0 {
		return strings.Join(req.Tags, " ")
	}
	return req.Key + req.Prefix
}

// eventKind is a purge's kind, marked soft (entries kept, expired) when it is.
func eventKind(kind string, soft bool) string {
	if soft {
		return "soft " + kind
	}
	return kind
}
