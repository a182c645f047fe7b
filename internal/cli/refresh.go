package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/warm"
)

func init() {
	caddycmd.RegisterCommand(refreshCommand)
}

var refreshCommand = caddycmd.Command{
	Name:  "refresh",
	Usage: "(--tag <tag>... | --tags-from <file> | --prefix <prefix>) [--zone <name>] [--via <listener URL>] [--concurrency <n>] [--rate <n>] [--restart] [--address <interface>]",
	Short: "Refreshes the cached entries of tags or of a prefix through the cache buster",
	Long: `
Refreshes what the cache holds of some objects without a cold start: it
lists the keys of the entries that carry the tags (--tag, repeatable, or
--tags-from a file of one tag a line, - for standard input) or that start
with a prefix (--prefix), from the admin API of the running edgecache, and
requests each through the cache buster (--via, http://127.0.0.1:9000 by
default), which fetches it from the backend and replaces the entry in
place: visitors get the stored answer until the new one lands, never a
miss.

It runs as warm does: --concurrency requests at a time, at most --rate
requests a second (0: no bound), retries (--retries), progress on stderr,
and a state file: Ctrl-C stops cleanly, and the same command run again
resumes where it stopped, with the same list of keys (--restart lists them
anew). The list is kept in --list (default refresh-<hash of the
selection>.urls in the current folder) until the run is complete.

The keys must be URLs (a request URI, as Caddyfile.example's key
{http.request.uri}): a zone with another key template cannot be refreshed
this way, and the command says so and stops.

Exit status: 0 every entry refreshed, 1 some failed, 2 the run could not be
done, 130 interrupted.` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().StringP("zone", "z", "", "Cache zone whose entries to refresh (default every zone)")
		cmd.Flags().StringArrayP("tag", "t", nil, "Refresh the entries that carry this tag (repeatable)")
		cmd.Flags().String("tags-from", "", "Refresh the entries of the tags listed in this file, one a line (- for standard input)")
		cmd.Flags().StringP("prefix", "p", "", "Refresh the entries whose key starts with this prefix (needs --zone)")
		cmd.Flags().String("via", "http://127.0.0.1:9000", "Base URL of the cache buster to send the requests to")
		cmd.Flags().String("host", "", "Host header to send, if not the one of --via")
		cmd.Flags().Int("concurrency", warm.DefaultConcurrency, "Number of requests in flight at most")
		cmd.Flags().Float64("rate", 0, "Requests started per second at most (0: no bound)")
		cmd.Flags().Int("retries", warm.DefaultRetries, "Retries of a URL after a connection error, timeout, 5xx or 429")
		cmd.Flags().String("timeout", "15m", "Time limit of one request, body included")
		cmd.Flags().String("list", "", "File keeping the keys to refresh until the run is complete (default refresh-<hash>.urls)")
		cmd.Flags().String("state", "", "State file recording the keys done (default <list>.warm-state)")
		cmd.Flags().Bool("restart", false, "List the keys anew and refresh every one")
		cmd.Flags().Bool("no-progress", false, "Show no progress, only failures and the summary")
		cmd.MarkFlagsOneRequired("tag", "tags-from", "prefix")
		cmd.MarkFlagsMutuallyExclusive("tag", "prefix")
		cmd.MarkFlagsMutuallyExclusive("tags-from", "prefix")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			ctx, stop := untilInterrupted()
			defer stop()
			return runRefresh(ctx, fl, os.Stdin, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
		})
	},
}

func runRefresh(ctx context.Context, fl caddycmd.Flags, stdin io.Reader, stderr io.Writer, interactive bool) (int, error) {
	zone, prefix := fl.String("zone"), fl.String("prefix")
	var tags []string
	if fl.Changed("tag") || fl.Changed("tags-from") {
		var err error
		if tags, err = tagsFromFlags(fl, stdin); err != nil {
			return warmExitCannotRun, err
		}
	}
	switch {
	case len(tags) == 0 && !fl.Changed("prefix"):
		return warmExitCannotRun, errors.New("give --tag, --tags-from or --prefix")
	case len(tags) == 0 && zone == "":
		return warmExitCannotRun, errors.New("--prefix needs --zone: a prefix is a zone's")
	}
	rate, err := fl.GetFloat64("rate")
	if err != nil {
		return warmExitCannotRun, err
	}
	if rate < 0 {
		return warmExitCannotRun, fmt.Errorf("--rate %g: must not be negative", rate)
	}
	list := fl.String("list")
	if list == "" {
		sum := sha256.Sum256([]byte(strings.Join(append([]string{zone, prefix}, tags...), "\x00")))
		list = "refresh-" + hex.EncodeToString(sum[:4]) + ".urls"
	}
	opts, err := requestOptions(fl, list)
	if err != nil {
		return warmExitCannotRun, err
	}
	opts.Rate = rate
	if opts.StateFile == "" {
		opts.StateFile = list + warm.StateSuffix
	}
	_, statErr := os.Stat(opts.StateFile)
	resuming := statErr == nil && !opts.Restart
	if !resuming {
		client, err := adminClientFromFlags(fl)
		if err != nil {
			return warmExitCannotRun, err
		}
		n, err := writeRefreshList(ctx, client, list, zone, prefix, tags)
		if err != nil {
			return warmExitCannotRun, err
		}
		fmt.Fprintf(stderr, "refreshing %d cached entries (the list is in %s)\n", n, list)
		opts.Restart = true // a state file of an earlier list is not this one's
	} else {
		fmt.Fprintf(stderr, "resuming the refresh of %s (--restart lists the keys anew)\n", list)
	}
	if !fl.Bool("no-progress") {
		opts.Progress = stderr
		opts.Interactive = interactive
	}
	sum, err := warm.Run(ctx, opts)
	if err == nil && sum.Total == 0 {
		os.Remove(list)
		fmt.Fprintln(stderr, "nothing cached to refresh")
		return warmExitDone, nil
	}
	code, err := warmOutcome(stderr, sum, err, "keys")
	if code == warmExitDone {
		os.Remove(list)
	}
	return code, err
}

// writeRefreshList lists the keys to refresh into path (through a
// temporary file: a list is whole or absent), and returns how many. Each
// key must be a URL, a request URI or an absolute http(s) URL.
func writeRefreshList(ctx context.Context, client *adminClient, path, zone, prefix string, tags []string) (int, error) {
	queries := []adminapi.KeysRequest{{Zone: zone, Prefix: prefix}}
	if len(tags) > 0 {
		queries = queries[:0]
		for _, t := range tags {
			queries = append(queries, adminapi.KeysRequest{Zone: zone, Tag: t})
		}
	}
	tmp, err := os.CreateTemp(".", ".refresh-*.urls")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	seen := make(map[string]bool)
	var keyErr error
	for _, q := range queries {
		err := eachKey(ctx, client, q, func(text string) bool {
			key, err := adminapi.ParseKeyText(text)
			if i := strings.IndexByte(key, 0); i >= 0 {
				key = key[:i] // a variant: its URL is its primary key
			}
			if err == nil {
				err = refreshableKey(key)
			}
			if err != nil {
				keyErr = err
				return false
			}
			if !seen[key] {
				seen[key] = true
				_, keyErr = fmt.Fprintln(tmp, key)
			}
			return keyErr == nil
		})
		if err == nil {
			err = keyErr
		}
		if err != nil {
			tmp.Close()
			return 0, err
		}
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return len(seen), os.Rename(tmp.Name(), path)
}

// refreshableKey refuses a key that is not a URL the cache buster can be
// asked for.
func refreshableKey(key string) error {
	switch {
	case strings.ContainsAny(key, "\r\n\x00"):
		return fmt.Errorf("key %q cannot be requested: it holds a line break or a NUL (a variant of a response that varies?)", key)
	case strings.HasPrefix(key, "/"), strings.HasPrefix(key, "http://"), strings.HasPrefix(key, "https://"):
		return nil
	}
	return fmt.Errorf("key %q is not a URL: the zone's key template is not the request URI ({http.request.uri}), so its entries cannot be refreshed through the cache buster; purge them instead (edgecache purge --soft)", key)
}
