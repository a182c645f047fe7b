package caddymodule

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/edgecache/edgecache/cache"
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

	zones  map[string]*cache.Zone
	keys   []string // usage-pool keys held by this config
	logger *zap.Logger
}

// ZoneConfig defines one cache zone.
type ZoneConfig struct {
	// Memory is the hot tier's size in bytes. Default: 256 MiB.
	Memory int64 `json:"memory,omitempty"`
	// MemoryEntryMax is the largest body the hot tier holds, in bytes.
	// Default: a sixteenth of Memory, at most 64 MiB.
	MemoryEntryMax int64 `json:"memory_entry_max,omitempty"`
}

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

// Provision fills defaults and opens the zones.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.zones = make(map[string]*cache.Zone, len(a.Zones))
	for _, name := range a.zoneNames() {
		zc := a.Zones[name]
		if zc == nil {
			zc = new(ZoneConfig)
			a.Zones[name] = zc
		}
		if zc.Memory == 0 {
			zc.Memory = DefaultZoneMemory
		}
		if err := zc.validate(name); err != nil {
			return err
		}
		def, err := json.Marshal(zc)
		if err != nil {
			return err
		}
		poolKey := name + "\x00" + string(def)
		val, loaded, err := zonePool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
			z, err := cache.NewZone(cache.ZoneConfig{Name: name, MemorySize: zc.Memory, MemoryEntryMax: zc.MemoryEntryMax})
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
	return nil
}

func (zc *ZoneConfig) validate(name string) error {
	if name == "" {
		return fmt.Errorf("a zone needs a name")
	}
	if zc.Memory < 0 {
		return fmt.Errorf("zone %s: memory must be positive", name)
	}
	if zc.MemoryEntryMax < 0 || zc.MemoryEntryMax > zc.Memory {
		return fmt.Errorf("zone %s: memory_entry_max must be between 0 and the memory size", name)
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

// Zone returns the named zone, or nil.
func (a *App) Zone(name string) *cache.Zone { return a.zones[name] }

// ZoneNames lists the zones in order.
func (a *App) ZoneNames() []string { return a.zoneNames() }

// Start implements caddy.App.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on its zones; a zone closes when no
// config holds it.
func (a *App) Cleanup() error {
	for _, k := range a.keys {
		_, _ = zonePool.Delete(k)
	}
	a.keys = nil
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
