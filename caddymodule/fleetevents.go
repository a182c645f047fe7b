package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/fleet"
	"github.com/edgecache/edgecache/internal/adminapi"
)

// The operations side of a fleet, for an app with a shared block: the
// event log's reader (another proxy's purges, invalidations and refreshes
// applied here), this proxy's heartbeat in the member list, and the
// position in the log kept in each shared disk zone's folder across
// restarts.

// fleetEvents is what an app runs for the fleet between Start and Stop.
type fleetEvents struct {
	app      *App
	follower *fleet.Follower
	stopBeat func()
	done     chan struct{} // closed at Stop: ends waits for a zone's index
	log      *zap.Logger
	saved    fleet.Position // the position last written to the zone folders
	identity string         // fleetIdentity
}

// following is the process's running reader: the config that starts next
// (a reload starts the new config before it stops the old one) goes on
// from its position, rather than from a file saved up to 2 s before.
var following struct {
	sync.Mutex
	f     *fleet.Follower
	fleet string // fleetIdentity of its fleet
}

// fleetIdentity names the log a position belongs to: a position in
// another fleet's log (another Redis, another prefix) means nothing.
func fleetIdentity(f *fleet.Fleet) string {
	cfg := f.Config()
	return strings.Join(cfg.Addrs, ",") + " " + cfg.Prefix
}

// positionRecord is the content of a position file.
type positionRecord struct {
	fleet.Position
	Fleet string `json:"fleet"` // fleetIdentity
}

// positionFile holds, in a shared disk zone's folder, how far the proxy
// had applied the event log when it last wrote it (every heartbeat, and
// at a stop). A dotfile, so that the operators' flush (rm -rf zone/*)
// leaves it: the folder's entries are then gone, and the position is
// still right for whatever is stored after.
const positionFile = ".edgecache-fleet-position"

// startFleetEvents starts the reader and the heartbeat; nothing without a
// shared block.
func (a *App) startFleetEvents() {
	if a.fleet == nil {
		return
	}
	fe := &fleetEvents{app: a, done: make(chan struct{}), log: a.logger.Named("fleet")}
	identity := fleetIdentity(a.fleet)
	following.Lock()
	var from *fleet.Position
	saved := false
	if following.f != nil && following.fleet == identity {
		p := following.f.Position()
		from = &p
	} else {
		from = fe.savedPosition(identity)
		saved = from != nil
	}
	fe.follower = a.fleet.Follow(from, fe.apply, fe.drop)
	following.f, following.fleet, fe.identity = fe.follower, identity, identity
	following.Unlock()
	if saved {
		// A restarted proxy applies what it missed before it serves what
		// its disk tier kept, as far as a short wait allows: not at all
		// when Redis does not answer, and a long log may take longer.
		select {
		case <-fe.follower.Settled():
		case <-time.After(startCatchUpMax):
		}
		select {
		case <-fe.follower.CaughtUp():
		default:
			fe.log.Warn("serving before the fleet's event log is caught up (Redis does not answer, or the log is long); its events are applied as they are read")
		}
	}
	version := edgecacheVersion()
	fe.stopBeat = a.fleet.Heartbeat(func() fleet.Member {
		fe.savePosition()
		return fleet.Member{Version: version, Zones: a.sharedZoneNames(), LastEvent: fe.follower.Position().ID}
	})
	a.events = fe
}

// startCatchUpMax bounds how long a start waits for the catch-up.
const startCatchUpMax = 3 * time.Second

// stopFleetEvents stops them, saving the position.
func (a *App) stopFleetEvents() {
	fe := a.events
	if fe == nil {
		return
	}
	a.events = nil
	close(fe.done)
	fe.stopBeat()
	fe.follower.Stop()
	fe.savePosition()
	following.Lock()
	if following.f == fe.follower {
		following.f = nil
	}
	following.Unlock()
}

// sharedZoneNames lists the zones that take part in the fleet, in order.
func (a *App) sharedZoneNames() []string {
	var names []string
	for _, n := range a.zoneNames() {
		if a.sharedZones[n] {
			names = append(names, n)
		}
	}
	if names == nil {
		names = []string{}
	}
	return names
}

// sharedZonesNamed is the zone an event names if it takes part here, or
// every zone that does when it names none.
func (a *App) sharedZonesNamed(name string) []*cache.Zone {
	var zones []*cache.Zone
	for _, n := range a.sharedZoneNames() {
		if name == "" || name == n {
			zones = append(zones, a.zones[n])
		}
	}
	return zones
}

// apply applies another proxy's event to this proxy's zones. Purges are
// purges, as if asked here. An invalidation or a refresh drops the key's
// local copies with Invalidate, not Purge: a purge ends the zone's purge
// generation and would void every fill in flight in the zone, where only
// this key's fills (which may carry the old version) must be refused.
func (fe *fleetEvents) apply(ev fleet.Event) {
	by := byFleet + ev.Node
	for _, z := range fe.app.sharedZonesNamed(ev.Zone) {
		switch ev.Kind {
		case fleet.KindPurgeKey:
			n := 0
			switch {
			case ev.Soft:
				n = z.SoftPurge(ev.Key)
			case z.Purge(ev.Key):
				n = 1
			}
			recordPurge(z, eventKind(cache.EventPurgeKey, ev.Soft), ev.Key, n, by)
		case fleet.KindPurgePrefix:
			recordPurge(z, eventKind(cache.EventPurgePrefix, ev.Soft), ev.Key, fe.purgeIndexed(z, ev), by)
		case fleet.KindPurgeTag:
			recordPurge(z, eventKind(cache.EventPurgeTag, ev.Soft), ev.Key, fe.purgeIndexed(z, ev), by)
		case fleet.KindPurgeAll:
			purge := z.PurgeAll
			if ev.Soft {
				purge = z.SoftPurgeAll
			}
			n, err := purge()
			if err != nil {
				fe.log.Warn("applying another proxy's purge", zap.String("zone", z.Name()), zap.String("from", ev.Node), zap.Error(err))
			}
			recordPurge(z, eventKind(cache.EventPurgeAll, ev.Soft), "", n, by)
		case fleet.KindInvalidate:
			z.Invalidate(ev.Key)
		case fleet.KindRefresh:
			z.Invalidate(ev.Key)
			recordRefresh(z, ev.Key, by)
		}
	}
}

// purgeIndexed waits for the zone's index (rebuilt after a start) before
// purging by prefix or tag: the events after this one wait meanwhile, as
// they must apply in order. It returns how many entries it purged.
func (fe *fleetEvents) purgeIndexed(z *cache.Zone, ev fleet.Event) int {
	purge := z.PurgePrefix
	switch {
	case ev.Kind == fleet.KindPurgeTag && ev.Soft:
		purge = z.SoftPurgeTag
	case ev.Kind == fleet.KindPurgeTag:
		purge = z.PurgeTag
	case ev.Soft:
		purge = z.SoftPurgePrefix
	}
	for {
		n, err := purge(ev.Key)
		if !errors.Is(err, cache.ErrIndexLoading) {
			if err != nil {
				fe.log.Warn("applying another proxy's purge", zap.String("zone", z.Name()), zap.String("from", ev.Node), zap.Error(err))
			}
			return n
		}
		select {
		case <-fe.done:
			return 0
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drop handles lost events: the shared zones drop the entries that may be
// ones they purged. When Redis kept its values (the log was trimmed while
// this proxy was away), an entry of which Redis holds the same version is
// current and stays (fleet.Current); the others go. When Redis began
// again, nothing can be proven, and the zones are emptied. Each zone's
// figures are logged.
func (fe *fleetEvents) drop(loss fleet.Loss) {
	for _, z := range fe.app.sharedZonesNamed("") {
		if !loss.ValuesKept {
			n, err := z.PurgeAll()
			fe.log.Warn("dropped the zone's entries: fleet events it had not applied are lost, and Redis's values cannot prove any entry current",
				zap.String("zone", z.Name()), zap.Int("entries", n), zap.String("reason", loss.Reason), zap.Error(err))
			continue
		}
		kept, dropped, err := fe.reconcile(z)
		fe.log.Warn("dropped the zone's entries that Redis does not prove current: fleet events it had not applied are lost",
			zap.String("zone", z.Name()), zap.Int("kept", kept), zap.Int("dropped", dropped), zap.String("reason", loss.Reason), zap.Error(err))
	}
}

// reconcile keeps a zone's entries that Redis holds in the same version,
// waiting for the zone's index (rebuilt after a start) first; the events
// after the loss wait meanwhile, as they must apply in order.
func (fe *fleetEvents) reconcile(z *cache.Zone) (kept, dropped int, err error) {
	for {
		kept, dropped, err = z.Reconcile(func(vs []cache.Version) ([]bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), reconcileTimeout)
			defer cancel()
			return fe.app.fleet.Current(ctx, z.Name(), vs)
		})
		if !errors.Is(err, cache.ErrIndexLoading) {
			return kept, dropped, err
		}
		select {
		case <-fe.done:
			return 0, 0, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reconcileTimeout bounds one batch of reconcile's reads from Redis.
const reconcileTimeout = 5 * time.Second

// savedPosition is the oldest position in this fleet's log saved in the
// shared disk zones' folders, or nil when none has one: the reader then
// starts at the log's end. A disk zone without one keeps its entries (it
// never was in this fleet, or its folder was copied without the file);
// that is logged.
func (fe *fleetEvents) savedPosition(identity string) *fleet.Position {
	var oldest *fleet.Position
	for _, name := range fe.app.sharedZoneNames() {
		path := fe.app.positionPath(name)
		if path == "" {
			continue // a memory-only zone starts empty
		}
		var p positionRecord
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &p)
		}
		if err == nil && (p.ID == "" || p.Fleet != identity) {
			err = errors.New("the position is in another fleet's log (another Redis or prefix)")
		}
		if err != nil {
			fe.log.Info("no position in the fleet's event log saved in the zone's folder: its entries are kept, and events from now on are applied",
				zap.String("zone", name), zap.String("file", path), zap.NamedError("reason", err))
			continue
		}
		if oldest == nil || p.Added < oldest.Added {
			oldest = &p.Position
		}
	}
	if oldest != nil {
		fe.log.Info("catching up with the fleet's event log from the position saved in the zone folders", zap.String("position", oldest.ID))
	}
	return oldest
}

// positionPath is the position file of a disk zone; "" for a memory zone.
func (a *App) positionPath(zone string) string {
	zc := a.Zones[zone]
	if zc == nil || zc.Path == "" {
		return ""
	}
	dir, err := filepath.Abs(zc.Path)
	if err != nil {
		return ""
	}
	return filepath.Join(dir, positionFile)
}

// savePosition writes the reader's position into every shared disk
// zone's folder (through a temporary file: never half written).
func (fe *fleetEvents) savePosition() {
	p := fe.follower.Position()
	if p.ID == "" || p == fe.saved {
		return
	}
	fe.saved = p
	b, _ := json.Marshal(positionRecord{Position: p, Fleet: fe.identity})
	for _, name := range fe.app.sharedZoneNames() {
		path := fe.app.positionPath(name)
		if path == "" {
			continue
		}
		if err := disk.WriteFolderFile(path, b); err != nil {
			fe.log.Warn("saving the position in the fleet's event log", zap.String("zone", name), zap.Error(err))
		}
	}
}

// publishTimeout bounds an admin purge's Redis work (SCAN of every
// master included), beyond the per-call timeout.
const publishTimeout = time.Minute

// publishPurge removes a purge's entries from Redis and tells the other
// proxies; nothing when the zone does not take part. It returns the count
// of Redis keys removed, or nil when there was nothing to do.
func (a *App) publishPurge(ctx context.Context, req adminapi.PurgeRequest) (*int, error) {
	if a == nil || a.fleet == nil || (req.Zone != "" && !a.sharedZones[req.Zone]) {
		return nil, nil
	}
	events := []fleet.Event{{Zone: req.Zone, Key: req.Key, Soft: req.Soft}}
	switch {
	case req.Key != "":
		events[0].Kind = fleet.KindPurgeKey
	case req.Prefix != "":
		events[0].Kind, events[0].Key = fleet.KindPurgePrefix, req.Prefix
	case len(req.Tags) > 0:
		// One event per tag: each reads its tag's set in Redis.
		events = events[:0]
		for _, t := range req.Tags {
			events = append(events, fleet.Event{Zone: req.Zone, Kind: fleet.KindPurgeTag, Key: t, Soft: req.Soft})
		}
	default:
		events[0].Kind = fleet.KindPurgeAll
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	total := 0
	for _, ev := range events {
		n, err := a.fleet.Purge(ctx, ev, a.sharedZoneNames())
		total += n
		if err != nil {
			return &total, err
		}
	}
	return &total, nil
}

// publishInvalidation removes an invalidated key's entry from Redis and
// tells the other proxies, while the unsafe request's answer waits (a
// client that asks another proxy next must not get the old version):
// only when some tier held the key, this proxy's (heldHere) or Redis's
// (fleet.Invalidate). It adds nothing while Redis is known to be down
// (the breaker is open): the invalidation then reaches only this proxy,
// and is counted.
func (a *App) publishInvalidation(ctx context.Context, zone *cache.Zone, key string, heldHere bool) {
	if a.fleet == nil || !a.sharedZones[zone.Name()] {
		return
	}
	if _, err := a.fleet.Invalidate(context.WithoutCancel(ctx), zone.Name(), key, heldHere); err != nil {
		a.logger.Debug("an invalidation did not reach the fleet", zap.String("zone", zone.Name()), zap.String("key", key), zap.Error(err))
	}
}

// edgecacheVersion is the version of the module the binary was built
// from (a commit, for a build of a working tree).
func edgecacheVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	version := bi.Main.Version
	if bi.Main.Path != "github.com/edgecache/edgecache" {
		for _, m := range bi.Deps {
			if m.Path == "github.com/edgecache/edgecache" {
				version = m.Version
			}
		}
	}
	if version == "" || version == "(devel)" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel+" + s.Value[:12]
			}
		}
		return "devel"
	}
	return version
}

// The event log's metrics, on the same registry as the zones' (metrics.go).
var (
	descEventsPublished = prometheus.NewDesc(metricsNamespace+"_fleet_events_published_total",
		"Purges, invalidations and refreshes this proxy appended to the fleet's event log.", nil, nil)
	descEventsUnpublished = prometheus.NewDesc(metricsNamespace+"_fleet_events_unpublished_total",
		"Events this proxy could not append (Redis down or failing): they reached this proxy only.", nil, nil)
	descEventsUnheld = prometheus.NewDesc(metricsNamespace+"_fleet_invalidations_unheld_total",
		"Invalidations (unsafe requests answered 2xx/3xx) not published: no tier held the key, so no proxy had anything to drop.", nil, nil)
	descEventsApplied = prometheus.NewDesc(metricsNamespace+"_fleet_events_applied_total",
		"Other proxies' events this proxy applied to its zones.", nil, nil)
	descEventDrops = prometheus.NewDesc(metricsNamespace+"_fleet_event_drops_total",
		"Times this proxy dropped the shared zones' entries it could not prove current because events it had not applied were lost (trimmed log, Redis restarted empty).", nil, nil)
	descEventLag = prometheus.NewDesc(metricsNamespace+"_fleet_event_lag_seconds",
		"From the last applied event's addition to the log to its application here.", nil, nil)
)

// fleetEventsCollector exports the event log's counters; nothing without
// a shared block.
type fleetEventsCollector struct{ app *App }

func (fleetEventsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEventsPublished, descEventsUnpublished, descEventsUnheld, descEventsApplied, descEventDrops, descEventLag} {
		ch <- d
	}
}

func (c fleetEventsCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.app.fleet
	if f == nil {
		return
	}
	s := f.EventStats()
	for _, m := range []struct {
		d *prometheus.Desc
		v int64
	}{{descEventsPublished, s.Published}, {descEventsUnpublished, s.Unpublished}, {descEventsUnheld, s.Unheld}, {descEventsApplied, s.Applied}, {descEventDrops, s.Drops}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
	ch <- prometheus.MustNewConstMetric(descEventLag, prometheus.GaugeValue, s.Lag.Seconds())
}

var _ prometheus.Collector = fleetEventsCollector{}

// refreshAnnouncer is the claim of a store through the cache buster: when
// the shared store ends it announces the refresh, so that the other
// proxies drop their copies only once the new entry is in Redis (or,
// when it could not be stored there, once the old one is gone from it).
// Then their next request takes the new version from Redis, or from the
// backend, never the old one.
type refreshAnnouncer struct {
	inner     cache.SharedClaim
	fleet     *fleet.Fleet
	zone, key string
}

func (r refreshAnnouncer) Release(end cache.Awaited) {
	if r.inner != nil {
		r.inner.Release(end)
	}
	_ = r.fleet.Refreshed(context.Background(), r.zone, r.key, end.Result == cache.AwaitStored)
}
