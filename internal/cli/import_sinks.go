package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/caddymodule"
	"github.com/edgecache/edgecache/internal/adminapi"
)

// adminImportSink stores entries through the running proxy's admin API.
type adminImportSink struct {
	client *adminClient
	zone   string
}

// runningProxy reports whether the configuration's admin API answers for
// the zone.
func runningProxy(ctx context.Context, fl caddycmd.Flags, cfgJSON []byte, cfgFile, zone string) (*adminImportSink, bool, error) {
	if cfgFile == "" {
		cfgFile = "Caddyfile" // only tells DetermineAdminAPIAddress to read cfgJSON
	}
	address, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), cfgJSON, cfgFile, "")
	if err != nil {
		return nil, false, fmt.Errorf("finding the admin API address: %v", err)
	}
	c, err := newAdminClient(address)
	if err != nil {
		return nil, false, err
	}
	s := &adminImportSink{client: c, zone: zone}
	var info adminapi.ImportInfo
	err = c.do(ctx, http.MethodGet, adminapi.ImportURI(zone), nil, &info)
	if _, down := errors.AsType[unreachableError](err); down && fl.String("address") == "" {
		return s, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// waitLoaded returns the zone's state once its disk index is loaded, so
// that the budget is computed from every entry it holds.
func (s *adminImportSink) waitLoaded(ctx context.Context, stderr io.Writer) (adminapi.ImportInfo, error) {
	said := false
	for {
		var info adminapi.ImportInfo
		if err := s.client.do(ctx, http.MethodGet, adminapi.ImportURI(s.zone), nil, &info); err != nil {
			return info, err
		}
		if !info.Loading {
			return info, nil
		}
		if !said {
			fmt.Fprintln(stderr, "import-nginx: waiting for the zone's disk index to load")
			said = true
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *adminImportSink) Import(ctx context.Context, m cache.Meta, body io.Reader) error {
	line, err := json.Marshal(adminapi.ImportMetaOf(m))
	if err != nil {
		return err
	}
	line = append(line, '\n')
	req, err := s.client.newRequest(ctx, http.MethodPost, adminapi.ImportURI(s.zone), io.MultiReader(bytes.NewReader(line), body))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(line)) + m.BodySize
	var res adminapi.ImportResult
	if err := s.client.send(req, &res); err != nil {
		return err
	}
	if !res.Stored {
		return cache.ErrNewerInZone
	}
	return nil
}

// localZone is a zone opened by the command itself, over the folder of a
// stopped proxy.
type localZone struct {
	zone *cache.Zone
	disk *disk.Store
	used int64 // bytes in the folder, for a dry run
}

// folderBytes is what the files under dir take, counted as the disk tier
// counts them (4 KiB blocks); 0 when dir does not exist.
func folderBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += (fi.Size() + 4095) / 4096 * 4096
			}
		}
		return nil
	})
	return n
}

func openLocalZone(name string, zc *caddymodule.ZoneConfig, dryRun bool) (*localZone, error) {
	if zc.Path == "" {
		return nil, fmt.Errorf("zone %q has no disk tier (path) and no proxy is running: a memory-only zone can only be filled while the proxy runs", name)
	}
	dir, err := filepath.Abs(zc.Path)
	if err != nil {
		return nil, err
	}
	if dryRun {
		// Opening the store would tidy the folder (crash leftovers): a dry
		// run only measures what it holds.
		return &localZone{used: folderBytes(dir)}, nil
	}
	d, err := disk.Open(dir, disk.Options{
		MaxSize: zc.MaxSize, Inactive: time.Duration(zc.Inactive), Levels: zc.Levels,
		Logger: func(msg string, err error) { caddy.Log().Warn(msg) },
	})
	if err != nil {
		return nil, fmt.Errorf("zone %q: %v", name, err)
	}
	<-d.Loaded()
	z, err := cache.NewZone(cache.ZoneConfig{Name: name, MemorySize: 1 << 20, Disk: d})
	if err != nil {
		d.Close()
		return nil, err
	}
	return &localZone{zone: z, disk: d}, nil
}

func (l *localZone) Import(_ context.Context, m cache.Meta, body io.Reader) error {
	return l.zone.Import(m, body)
}

func (l *localZone) close() {
	if l.zone != nil {
		l.zone.Close()
	}
	if l.disk != nil {
		l.disk.Close()
	}
}
