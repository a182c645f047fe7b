package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/internal/nginximport"
)

// Exit codes of `edgecache import-nginx`.
const (
	importExitDone        = 0
	importExitFailed      = 1 // some entries could not be stored
	importExitCannotRun   = 2
	importExitInterrupted = 130
)

func init() {
	caddycmd.RegisterCommand(importNginxCommand)
}

var importNginxCommand = caddycmd.Command{
	Name:  "import-nginx",
	Usage: "--from <nginx cache folder> --zone <name> [--config <file>] [--adapter <name>] [--key-prefix-strip <host>] [--dry-run] [--since <date>] [--vary-value 'Name: value']...",
	Short: "Imports an nginx proxy_cache folder into a cache zone (migration without a cold start)",
	Long: `
Reads the entry files of an nginx proxy_cache folder (--from, one
proxy_cache_path) and stores each entry into the cache zone --zone of the
configuration (--config and --adapter, read as 'edgecache run' reads them),
keyed as edgecache keys the same request: the nginx key (the KEY line of each
file) goes through the key template and strip_query of the zone's edge_cache
handlers. nginx's map for jQuery's _= parameter leaves its separator behind
(/x?_=1 has the nginx key /x?); such keys become edgecache's (/x).
--key-prefix-strip <host> turns keys of $scheme$host$request_uri into the URI.

Freshness (valid_sec), ETag and Last-Modified carry over; the stored
Set-Cookie is dropped. Vary variants that nginx stored are imported when the
zone honours Vary and the request values can be recovered from nginx's hash
(the header absent, or a --vary-value candidate); otherwise they are skipped.
Temporary, truncated, unknown-version and damaged files are skipped with
their reason; the import never stops on one. When the zone's max_size
cannot hold everything, the most recently used entries (file atime/mtime)
win. --since skips entries nginx stored before a date (2026-01-01).

If the configuration's admin API answers, the running proxy stores the
entries itself (they are HITs at once, no restart). Otherwise the zone's
folder is opened directly; the next start finds the entries.

An interrupted import (Ctrl-C) resumes when run again: entries the zone
already holds, as new or newer, are skipped. --dry-run writes nothing and
prints the same summary.

Exit status: 0 done, 1 some entries could not be stored, 2 the import could
not run, 130 interrupted.`,
	CobraFunc: func(cmd *cobra.Command) {
		cmd.Flags().String("from", "", "The nginx cache folder (a proxy_cache_path) to import (required)")
		cmd.Flags().StringP("zone", "z", "", "The edgecache zone to import into (required)")
		cmd.Flags().StringP("config", "c", "", "Configuration file (as for 'edgecache run')")
		cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
		cmd.Flags().String("address", "", "The admin API of the running proxy, if not the configuration's")
		cmd.Flags().String("key-prefix-strip", "", "Host of nginx keys made of $scheme$host$request_uri: keys become the URI")
		cmd.Flags().Bool("dry-run", false, "Decode and count, write nothing")
		cmd.Flags().String("since", "", "Skip entries nginx stored before this date (2006-01-02 or RFC 3339)")
		cmd.Flags().StringArray("vary-value", nil, "A request value 'Name: value' to recover nginx's Vary variants (repeatable)")
		cmd.Flags().Int("workers", 4, "Files imported at once")
		cmd.Flags().Bool("no-progress", false, "Show no progress, only the summary")
		cmd.MarkFlagRequired("from")
		cmd.MarkFlagRequired("zone")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdImportNginx)
	},
}

func cmdImportNginx(fl caddycmd.Flags) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	return runImportNginx(ctx, fl, os.Stdout, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

func runImportNginx(ctx context.Context, fl caddycmd.Flags, stdout, stderr io.Writer, interactive bool) (int, error) {
	zoneName := fl.String("zone")
	from := fl.String("from")
	if fi, err := os.Stat(from); err != nil || !fi.IsDir() {
		return importExitCannotRun, fmt.Errorf("--from %q: not a folder (%v)", from, err)
	}
	cfgJSON, cfgFile, _, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return importExitCannotRun, err
	}
	target, err := importTargetFromConfig(cfgJSON, zoneName)
	if err != nil {
		return importExitCannotRun, err
	}
	for _, w := range target.warnings {
		fmt.Fprintln(stderr, "import-nginx:", w)
	}
	opts := nginximport.Options{
		From:         from,
		HonourVary:   target.honourVary,
		StatusHeader: target.statusHeader,
		DryRun:       fl.Bool("dry-run"),
		MaxBody:      target.maxBody(),
	}
	if opts.Workers, err = fl.GetInt("workers"); err != nil || opts.Workers < 1 {
		return importExitCannotRun, fmt.Errorf("--workers: want a positive number")
	}
	keyer := importKeyer{handler: target.handler, host: fl.String("key-prefix-strip")}
	opts.Key = keyer.key
	if s := fl.String("since"); s != "" {
		if opts.Since, err = parseSince(s); err != nil {
			return importExitCannotRun, err
		}
	}
	varyValues, _ := fl.GetStringArray("vary-value")
	if opts.VaryValues, err = parseVaryValues(varyValues); err != nil {
		return importExitCannotRun, err
	}
	if !fl.Bool("no-progress") {
		opts.Progress, opts.Interactive = stderr, interactive
	}

	var sink nginximport.Sink
	admin, running, err := runningProxy(ctx, fl, cfgJSON, cfgFile, zoneName)
	if err != nil {
		return importExitCannotRun, err
	}
	if running {
		fmt.Fprintf(stderr, "import-nginx: the proxy is running (admin API at %s): it stores the entries itself\n", admin.client.address)
		info, err := admin.waitLoaded(ctx, stderr)
		if err != nil {
			return importExitCannotRun, err
		}
		opts.Budget = budget(info.MaxSize, info.DiskBytes)
		sink = admin
	} else {
		fmt.Fprintf(stderr, "import-nginx: no proxy answers at the admin address %s: writing into the zone's folder %s directly\n", admin.client.address, target.zone.Path)
		local, err := openLocalZone(zoneName, target.zone, opts.DryRun)
		if err != nil {
			return importExitCannotRun, err
		}
		defer local.close()
		if d := local.disk; d != nil {
			opts.Budget = budget(d.MaxSize(), d.Stats().Bytes)
		} else {
			opts.Budget = budget(target.zone.MaxSize, local.used)
		}
		sink = local
	}
	sum, err := nginximport.Run(ctx, opts, sink)
	if err != nil {
		return importExitCannotRun, err
	}
	sum.WriteSummary(stdout)
	switch {
	case sum.Interrupted:
		return importExitInterrupted, errors.New("interrupted; run the same command again to resume")
	case sum.Failed > 0:
		return importExitFailed, fmt.Errorf("%d entries could not be stored: %v", sum.Failed, sum.FirstError)
	}
	return importExitDone, nil
}

// budget is what a zone of maxSize holding used bytes may still take; 0
// means no bound, so a full zone gets a budget of one byte (nothing fits).
func budget(maxSize, used int64) int64 {
	if maxSize <= 0 {
		return 0
	}
	return max(maxSize-used, 1)
}

func parseSince(s string) (time.Time, error) {
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a date (2006-01-02) or an RFC 3339 time", s)
}

func parseVaryValues(list []string) (http.Header, error) {
	h := http.Header{}
	for _, nv := range list {
		name, value, ok := strings.Cut(nv, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("--vary-value %q: want 'Name: value'", nv)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

// importTarget is what the configuration says about the zone imported into.
type importTarget struct {
	zone         *ZoneConfig
	handler      Handler // key and strip_query of the zone's handlers
	honourVary   bool
	statusHeader string
	warnings     []string
}

func (t *importTarget) maxBody() int64 {
	if t.zone.Path != "" {
		return t.zone.MaxSize
	}
	if t.zone.MemoryEntryMax > 0 {
		return t.zone.MemoryEntryMax
	}
	return cache.DefaultMemoryEntryMax(cmp(t.zone.Memory, DefaultZoneMemory))
}

func cmp(v, def int64) int64 {
	if v > 0 {
		return v
	}
	return def
}

// importTargetFromConfig finds the zone and the edge_cache handlers that may
// store into it (those naming it, and those whose zone is a placeholder).
// They must agree on the key: an imported entry has one key.
func importTargetFromConfig(cfgJSON []byte, zoneName string) (*importTarget, error) {
	var cfg struct {
		Apps struct {
			EdgeCache *App `json:"edge_cache"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading the configuration: %v", err)
	}
	app := cfg.Apps.EdgeCache
	if app == nil || app.Zones[zoneName] == nil && !(zoneName == "default" && app != nil && len(app.Zones) == 0) {
		var names []string
		if app != nil {
			names = app.zoneNames()
		}
		return nil, fmt.Errorf("zone %q is not defined in the configuration's edge_cache options (defined: %s)", zoneName, strings.Join(names, ", "))
	}
	t := &importTarget{zone: app.Zones[zoneName], honourVary: true}
	if t.zone == nil {
		t.zone = new(ZoneConfig)
	}
	var raw []json.RawMessage
	collectHandlers(cfgJSON, &raw)
	var chosen []Handler
	for _, r := range raw {
		var h Handler
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, fmt.Errorf("reading an edge_cache handler: %v", err)
		}
		if h.Zone == "" {
			h.Zone = "default"
		}
		if h.Zone != zoneName && !strings.Contains(h.Zone, "{") {
			continue
		}
		if h.Key == "" {
			h.Key = defaultKey
		}
		h.defaultKey = h.Key == defaultKey
		chosen = append(chosen, h)
	}
	if len(chosen) == 0 {
		t.handler = Handler{Key: defaultKey, defaultKey: true}
		t.statusHeader = defaultStatusHeader
		t.warnings = append(t.warnings, fmt.Sprintf("no edge_cache handler stores into zone %q: keys are imported as nginx's, with no strip_query", zoneName))
		return t, nil
	}
	t.handler = chosen[0]
	for _, h := range chosen {
		if importKeyTemplate(h.Key) != importKeyTemplate(t.handler.Key) || !slices.Equal(h.StripQuery, t.handler.StripQuery) {
			return nil, fmt.Errorf("the edge_cache handlers of zone %q key requests differently (key %q strip_query %v, and key %q strip_query %v): an imported entry can have only one key",
				zoneName, t.handler.Key, t.handler.StripQuery, h.Key, h.StripQuery)
		}
		for _, name := range h.IgnoreHeaders {
			if http.CanonicalHeaderKey(name) == "Vary" {
				t.honourVary = false
			}
		}
	}
	t.statusHeader = http.CanonicalHeaderKey(cmpString(t.handler.StatusHeader, defaultStatusHeader))
	return t, nil
}

// importKeyTemplate is a key template as the import sees it: nginx stored
// the request as the client sent it, before any rewrite, so the original
// URI and the URI are the same thing there (Caddyfile.example keys grafana's
// rewritten requests by {http.request.orig_uri}, the others by
// {http.request.uri}).
func importKeyTemplate(key string) string {
	return strings.ReplaceAll(key, "{http.request.orig_uri}", "{http.request.uri}")
}

func cmpString(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// collectHandlers finds every JSON object with "handler": "edge_cache",
// wherever routes and subroutes nest it.
func collectHandlers(data []byte, out *[]json.RawMessage) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) == nil {
		if h, ok := obj["handler"]; ok && bytes.Equal(bytes.TrimSpace(h), []byte(`"edge_cache"`)) {
			*out = append(*out, data)
		}
		for _, v := range obj {
			collectHandlers(v, out)
		}
		return
	}
	var arr []json.RawMessage
	if json.Unmarshal(data, &arr) == nil {
		for _, v := range arr {
			collectHandlers(v, out)
		}
	}
}

// importKeyer turns nginx keys into the keys edgecache gives the same
// requests, through the handler's own keyFor.
type importKeyer struct {
	handler Handler
	host    string // --key-prefix-strip
}

func (k importKeyer) key(nginxKey string) (string, error) {
	uri := nginxKey
	host := "localhost"
	if k.host != "" {
		rest, ok := strings.CutPrefix(uri, "https")
		if !ok {
			rest, ok = strings.CutPrefix(uri, "http")
		}
		if rest, ok = strings.CutPrefix(rest, k.host); !ok {
			return "", nginximport.KeyError{Reason: "key not of $scheme" + k.host + "$request_uri (--key-prefix-strip)"}
		}
		uri, host = rest, k.host
	}
	if !strings.HasPrefix(uri, "/") {
		return "", nginximport.KeyError{Reason: "key is not a request URI (see --key-prefix-strip)"}
	}
	uri = restoreStripped(uri, k.handler.StripQuery)
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", nginximport.KeyError{Reason: "key is not a valid request URI"}
	}
	req := &http.Request{Method: http.MethodGet, URL: u, RequestURI: uri, Host: host, Header: http.Header{},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	// The request as received: {http.request.orig_*} read it.
	req = req.WithContext(context.WithValue(context.Background(), caddyhttp.OriginalRequestCtxKey, *req))
	repl := caddyhttp.NewTestReplacer(req)
	return k.handler.keyFor(req, repl), nil
}

// restoreStripped undoes what production's nginx map leaves of a removed
// parameter: `~^(.+[\?\&])_=\d+(.*)$ $1$2` keeps the separator, so /x?_=1
// has the key /x? and /x?a=1&_=2&b=3 the key /x?a=1&&b=3. An empty query
// part is that trace: putting the first strip_query parameter back there
// gives a request that edgecache keys as it keys the original (strip_query
// drops the parameter and empty parts). Without strip_query, or without
// such a trace, the URI is left as it is.
func restoreStripped(uri string, params []string) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 || len(params) == 0 {
		return uri
	}
	parts := strings.Split(uri[q+1:], "&")
	for i, p := range parts {
		if p == "" {
			parts[i] = params[0]
			return uri[:q+1] + strings.Join(parts, "&")
		}
	}
	return uri
}

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
	var info zoneImportInfo
	err = c.do(ctx, http.MethodGet, s.path(), nil, &info)
	if err != nil && strings.Contains(err.Error(), "cannot reach the admin API") && fl.String("address") == "" {
		return s, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return s, true, nil
}

func (s *adminImportSink) path() string {
	return adminImportPath + "?zone=" + url.QueryEscape(s.zone)
}

// waitLoaded returns the zone's state once its disk index is loaded, so
// that the budget is computed from every entry it holds.
func (s *adminImportSink) waitLoaded(ctx context.Context, stderr io.Writer) (zoneImportInfo, error) {
	said := false
	for {
		var info zoneImportInfo
		if err := s.client.do(ctx, http.MethodGet, s.path(), nil, &info); err != nil {
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
	line, err := json.Marshal(importMetaOf(m))
	if err != nil {
		return err
	}
	line = append(line, '\n')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.client.origin+s.path(), io.MultiReader(bytes.NewReader(line), body))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(line)) + m.BodySize
	if s.client.tcp {
		req.Header.Set("Origin", s.client.origin)
	}
	resp, err := s.client.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var res importResult
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("admin API: %v", err)
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

func openLocalZone(name string, zc *ZoneConfig, dryRun bool) (*localZone, error) {
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
