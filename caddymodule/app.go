package caddymodule

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/fleet"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the edge_cache app: the cache zones, defined once in the global
// options and shared by every site that names them, as nginx's
// proxy_cache_path zones are shared by all server blocks.
//
// A zone survives a config reload that leaves its definition unchanged, so a
// reload does not empty the memory tier.
type App struct {
	// Zones by name.
	Zones map[string]*ZoneConfig `json:"zones,omitempty"`
	// Shared joins this proxy to a fleet: proxies that share one cache
	// tier, one fill lock per key and their purges through Redis. None:
	// every zone is this proxy's own, and nothing touches Redis.
	Shared *SharedConfig `json:"shared,omitempty"`

	zones    map[string]*cache.Zone
	keys     []string               // zone-pool keys held by this config
	diskKeys []string               // disk-pool keys held by this config
	disks    map[string]*disk.Store // by zone name, opened at Start
	logger   *zap.Logger
	stopMem  chan struct{} // ends the memory limit's updates

	// servers whose connections carry the listener wrapper's connection
	// in their context (see listener.go): registered once per server.
	// Provisioning is sequential, so this needs no lock.
	connContextServers map[*caddyhttp.Server]bool
	// zone map problems already logged (zonecheck.go), for the same reason.
	zoneMapWarned map[string]bool

	// fleet is the connection to the fleet's Redis (nil without Shared),
	// opened at Provision and closed at Cleanup; sharedZones names the
	// zones that take part (all but those that say shared off).
	fleet       *fleet.Fleet
	sharedZones map[string]bool
	// events runs the event log's reader and the heartbeat from Start to
	// Stop (fleetevents.go).
	events *fleetEvents
}

// SharedConfig says how the proxy reaches the fleet's Redis. String
// fields take placeholders ({env.EDGECACHE_REDIS_PASSWORD}), resolved
// when the config loads.
type SharedConfig struct {
	// Redis lists the addresses (host:port): one is a single node,
	// several are Redis Cluster seeds.
	Redis []string `json:"redis,omitempty"`
	// Username and Password authenticate (Redis ACL; a password alone is
	// requirepass's default user).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS connects with TLS, verifying the server's certificate.
	TLS bool `json:"tls,omitempty"`
	// Prefix starts every key the fleet writes. Default "edgecache:".
	Prefix string `json:"prefix,omitempty"`
	// Timeout bounds each Redis call a request makes; a slower answer
	// counts as a miss. Default 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// EntryMax is the largest body stored in Redis, in bytes; larger ones
	// stay in this proxy's tiers. Default 8MiB.
	EntryMax int64 `json:"entry_max,omitempty"`
	// Node is this proxy's name in logs, metrics and the fleet list.
	// Default: the host name.
	Node string `json:"node,omitempty"`
	// EventRetention is how long the fleet's event log (purges,
	// invalidations, refreshes) keeps an event: a proxy away for longer
	// keeps only the entries Redis proves current. Default 1h.
	EventRetention caddy.Duration `json:"event_retention,omitempty"`
}

// ZoneConfig defines one cache zone.
type ZoneConfig struct {
	// Memory is the hot tier's size in bytes: what it may take in all,
	// entries and the collector's headroom for them (see memlimit.go).
	// Default: 256 MiB.
	Memory int64 `json:"memory,omitempty"`
	// MemoryEntryMax is the largest body the hot tier holds, in bytes.
	// Default: a sixteenth of Memory, at most 64 MiB.
	MemoryEntryMax int64 `json:"memory_entry_max,omitempty"`
	// Path is the disk tier's folder; none means a memory-only zone.
	// The folder holds no absolute paths and no host names: it can be
	// copied to another machine. Deleting its contents is a full flush.
	Path string `json:"path,omitempty"`
	// MaxSize bounds the disk tier in bytes (least recently used entries
	// go first). Default: unlimited.
	MaxSize int64 `json:"max_size,omitempty"`
	// Inactive removes disk entries not read for this long, fresh or not.
	// Default: 10m, as nginx's.
	Inactive caddy.Duration `json:"inactive,omitempty"`
	// Levels are the subfolder levels, as nginx's levels=1:2. Default: [1, 2].
	Levels []int `json:"levels,omitempty"`
	// Verify says when a disk entry's block checksums are checked: "once"
	// (the default) on the first read of each entry file the zone keeps
	// open, after which its hits are sent with sendfile, unread; "always"
	// on every read. Bit rot after the first read is found with "always"
	// only (nginx never verifies); see docs/performance.md.
	Verify string `json:"verify,omitempty"`
	// OpenFiles is how many disk entry files, with their parsed headers,
	// the zone keeps open for the next hits, as nginx's open_file_cache
	// max=: a hit from one makes no open and reads no header. Each takes
	// a file descriptor and a few KiB of heap (counted in the memory
	// limit). Default (0): 512; negative: none.
	OpenFiles int `json:"open_files,omitempty"`
	// Shared false keeps the zone out of the fleet (shared off): its
	// entries stay in this proxy. Default: the zone takes part when the
	// app has a shared block.
	Shared *bool `json:"shared,omitempty"`
}

// The values of ZoneConfig.Verify.
const (
	VerifyOnce   = "once"
	VerifyAlways = "always"
)

// DefaultInactive is how long an unread disk entry is kept, as in nginx.
const DefaultInactive = caddy.Duration(10 * time.Minute)

// DefaultZoneMemory is a zone's hot tier size when none is configured.
const DefaultZoneMemory = 256 << 20

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "edge_cache",
		New: func() caddy.Module { return new(App) },
	}
}

// zonePool holds the live zones across config reloads, keyed by name and
// definition: a reload with the same definition gets the same zone.
var zonePool = caddy.NewUsagePool()

type pooledZone struct{ *cache.Zone }

func (z pooledZone) Destruct() error { return z.Close() }

// Provision fills defaults and makes the zones. It touches nothing on disk,
// so that `edgecache validate` is safe next to a running proxy: the zone
// folders are only checked (CheckDir), and Start opens them.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.zones = make(map[string]*cache.Zone, len(a.Zones))
	a.disks = make(map[string]*disk.Store)
	for _, name := range a.zoneNames() {
		zc := a.Zones[name]
		if zc == nil {
			zc = new(ZoneConfig)
			a.Zones[name] = zc
		}
		if zc.Memory == 0 {
			zc.Memory = DefaultZoneMemory
		}
		if zc.MemoryEntryMax == 0 {
			// From the configured size, as documented, not from the
			// three quarters the entries get.
			zc.MemoryEntryMax = cache.DefaultMemoryEntryMax(zc.Memory)
		}
		if zc.Path != "" && zc.Inactive == 0 {
			zc.Inactive = DefaultInactive
		}
		if err := zc.validate(name); err != nil {
			return err
		}
		// Joining or leaving the fleet keeps the zone's entries, and so
		// do the settings the disk store follows across reloads.
		local := *zc
		local.Shared, local.Verify, local.OpenFiles = nil, "", 0
		def, err := json.Marshal(&local)
		if err != nil {
			return err
		}
		poolKey := name + "\x00" + string(def)
		var store *disk.Store
		if zc.Path != "" {
			if store, err = a.diskStore(name, zc); err != nil {
				return fmt.Errorf("zone %s: %v", name, err)
			}
			a.disks[name] = store
		}
		val, loaded, err := zonePool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
			z, err := cache.NewZone(cache.ZoneConfig{Name: name, MemorySize: entryBudget(zc.Memory), MemoryEntryMax: zc.MemoryEntryMax, Disk: store})
			if err != nil {
				return nil, err
			}
			return pooledZone{z}, nil
		})
		if err != nil {
			return fmt.Errorf("zone %s: %v", name, err)
		}
		a.keys = append(a.keys, poolKey)
		a.zones[name] = val.(pooledZone).Zone
		a.logger.Debug("zone ready", zap.String("zone", name), zap.Bool("reused", loaded))
	}
	a.checkOpenFiles()
	if err := a.openFleet(); err != nil {
		return err
	}
	return a.registerMetrics(ctx.GetMetricsRegistry())
}

// openFleet connects to the fleet's Redis when the app has a shared block
// (without waiting for it: a proxy serves from its own tiers while Redis
// is down), and notes the zones that take part.
func (a *App) openFleet() error {
	if a.Shared == nil {
		return nil
	}
	cfg, err := a.Shared.fleetConfig(caddy.NewReplacer())
	if err != nil {
		return fmt.Errorf("shared: %v", err)
	}
	f, err := fleet.Open(cfg, a.logger.Named("fleet"))
	if err != nil {
		return fmt.Errorf("shared: %v", err)
	}
	a.fleet = f
	a.sharedZones = make(map[string]bool, len(a.Zones))
	for name, zc := range a.Zones {
		if zc.Shared == nil || *zc.Shared {
			a.sharedZones[name] = true
		}
	}
	return nil
}

// fleetConfig resolves the placeholders ({env.X}) and sizes of the block.
// An unknown placeholder is an error: a password must not silently be
// empty.
func (sc *SharedConfig) fleetConfig(repl *caddy.Replacer) (fleet.Config, error) {
	resolve := func(field, v string) (string, error) {
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("%s: %v", field, err)
		}
		return out, nil
	}
	var cfg fleet.Config
	for _, addr := range sc.Redis {
		a, err := resolve("redis", addr)
		if err != nil {
			return cfg, err
		}
		cfg.Addrs = append(cfg.Addrs, strings.Fields(a)...)
	}
	var err error
	for _, f := range []struct {
		name string
		from string
		to   *string
	}{
		{"username", sc.Username, &cfg.Username},
		{"password", sc.Password, &cfg.Password},
		{"prefix", sc.Prefix, &cfg.Prefix},
		{"node", sc.Node, &cfg.Node},
	} {
		if *f.to, err = resolve(f.name, f.from); err != nil {
			return cfg, err
		}
	}
	if sc.Timeout < 0 || sc.EntryMax < 0 || sc.EventRetention < 0 {
		return cfg, fmt.Errorf("timeout, entry_max and event_retention must not be negative")
	}
	cfg.TLS, cfg.Timeout, cfg.EntryMax = sc.TLS, time.Duration(sc.Timeout), sc.EntryMax
	cfg.EventRetention = time.Duration(sc.EventRetention)
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}

// Fleet is the connection to the fleet's Redis; nil without a shared
// block.
func (a *App) Fleet() *fleet.Fleet { return a.fleet }

// SharedZone reports whether the named zone takes part in the fleet.
func (a *App) SharedZone(name string) bool { return a.sharedZones[name] }

// sharedFor is the shared tier of zone, or nil when the zone does not
// take part (no shared block, or shared off).
func (a *App) sharedFor(zone *cache.Zone) cache.Shared {
	if a.fleet == nil || !a.sharedZones[zone.Name()] {
		return nil
	}
	return a.fleet
}

// checkOpenFiles warns when the zones' open-file caches may hold more
// than half the process's file descriptors (RLIMIT_NOFILE): the rest are
// the connections', and a process out of them refuses clients. A warning,
// not an error: the limit is the machine's, not the config's.
func (a *App) checkOpenFiles() {
	limit := maxOpenFiles()
	if limit <= 0 {
		return
	}
	var total int64
	for _, zc := range a.Zones {
		switch {
		case zc.Path == "" || zc.OpenFiles < 0:
		case zc.OpenFiles == 0:
			total += disk.DefaultOpenFiles
		default:
			total += int64(zc.OpenFiles)
		}
	}
	if total > limit/2 {
		a.logger.Warn("the zones' open_files may take more than half the process's file descriptors: raise its limit (LimitNOFILE=) or lower open_files",
			zap.Int64("open_files", total), zap.Int64("max_open_files", limit))
	}
}

func (zc *ZoneConfig) validate(name string) error {
	if name == "" {
		return fmt.Errorf("a zone needs a name")
	}
	if zc.Memory < 0 {
		return fmt.Errorf("zone %s: memory must be positive", name)
	}
	if zc.MemoryEntryMax < 0 || (zc.Memory > 0 && zc.MemoryEntryMax > entryBudget(zc.Memory)) {
		return fmt.Errorf("zone %s: memory_entry_max must be between 0 and three quarters of the memory size (%d bytes; the rest is the collector's headroom)", name, entryBudget(zc.Memory))
	}
	if zc.Path == "" && (zc.MaxSize != 0 || zc.Inactive != 0 || len(zc.Levels) != 0) {
		return fmt.Errorf("zone %s: max_size, inactive and levels need a disk path", name)
	}
	if zc.Path == "" && zc.Verify != "" {
		return fmt.Errorf("zone %s: verify needs a disk path", name)
	}
	if zc.Path == "" && zc.OpenFiles != 0 {
		return fmt.Errorf("zone %s: open_files needs a disk path", name)
	}
	if zc.Verify != "" && zc.Verify != VerifyOnce && zc.Verify != VerifyAlways {
		return fmt.Errorf("zone %s: verify must be %s or %s, not %q", name, VerifyOnce, VerifyAlways, zc.Verify)
	}
	if zc.MaxSize < 0 || zc.Inactive < 0 {
		return fmt.Errorf("zone %s: max_size and inactive must not be negative", name)
	}
	if err := disk.CheckLevels(zc.Levels); err != nil {
		return fmt.Errorf("zone %s: %w", name, err)
	}
	return nil
}

func (a *App) zoneNames() []string {
	names := make([]string, 0, len(a.Zones))
	for n := range a.Zones {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// diskPool holds the open disk stores by folder: a folder is opened once
// per process, and a reload that keeps it keeps the store and its index.
var diskPool = caddy.NewUsagePool()

type pooledDisk struct{ *disk.Store }

func (d pooledDisk) Destruct() error { return d.Close() }

// diskStore returns the store of the zone's folder, made (not opened) if
// no config holds it yet.
func (a *App) diskStore(name string, zc *ZoneConfig) (*disk.Store, error) {
	dir, err := filepath.Abs(zc.Path)
	if err != nil {
		return nil, err
	}
	if err := disk.CheckDir(dir); err != nil {
		return nil, err
	}
	logger := a.logger.With(zap.String("zone", name), zap.String("path", dir))
	val, _, err := diskPool.LoadOrNew(dir, func() (caddy.Destructor, error) {
		d, err := disk.New(dir, disk.Options{
			MaxSize:      zc.MaxSize,
			Inactive:     time.Duration(zc.Inactive),
			Levels:       zc.Levels,
			VerifyAlways: zc.Verify == VerifyAlways,
			OpenFiles:    zc.OpenFiles,
			Logger:       func(msg string, err error) { logger.Warn(msg, zap.Error(err)) },
		})
		if err != nil {
			return nil, err
		}
		return pooledDisk{d}, nil
	})
	if err != nil {
		return nil, err
	}
	a.diskKeys = append(a.diskKeys, dir)
	store := val.(pooledDisk).Store
	// The store outlives a reload; its verify and open-file settings
	// follow the config.
	store.SetVerifyAlways(zc.Verify == VerifyAlways)
	store.SetOpenFiles(zc.OpenFiles)
	return store, nil
}

// Zone returns the named zone, or nil.
func (a *App) Zone(name string) *cache.Zone { return a.zones[name] }

// ZoneNames lists the zones in order.
func (a *App) ZoneNames() []string { return a.zoneNames() }

// Start opens the zone folders (a folder a previous config opened stays
// open, with its lock and index: a reload onto the same folders hands them
// over) and sets the memory limit.
func (a *App) Start() error {
	for _, name := range a.zoneNames() {
		d := a.disks[name]
		if d == nil {
			continue
		}
		if err := d.Open(); err != nil {
			return fmt.Errorf("zone %s: %v", name, err)
		}
	}
	if a.fleet != nil {
		go a.fleet.Warm()
	}
	applyMemoryLimit(a.zonesBytes(), a.logger)
	a.stopMem = make(chan struct{})
	go a.trackMemoryLimit(a.stopMem)
	go a.sampleZones(a.stopMem)
	a.startFleetEvents()
	return nil
}

// Stop implements caddy.App.
func (a *App) Stop() error {
	a.stopFleetEvents()
	if a.stopMem != nil {
		close(a.stopMem)
		a.stopMem = nil
	}
	return nil
}

// Cleanup releases this config's hold on its zones; a zone closes when no
// config holds it.
func (a *App) Cleanup() error {
	for _, k := range a.keys {
		_, _ = zonePool.Delete(k)
	}
	for _, k := range a.diskKeys {
		_, _ = diskPool.Delete(k)
	}
	a.keys, a.diskKeys = nil, nil
	if a.fleet != nil {
		_ = a.fleet.Close()
		a.fleet = nil
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
