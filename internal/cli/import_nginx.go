package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

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
	ctx, stop := untilInterrupted()
	defer stop()
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
	if target.tags != nil {
		sink = taggingSink{Sink: sink, rules: target.tags}
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
