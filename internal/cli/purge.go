package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddycmd.RegisterCommand(purgeCommand)
}

var purgeCommand = caddycmd.Command{
	Name:  "purge",
	Usage: "[--address <interface>] [--zone <name>] (--key <key> | --prefix <prefix> | --tag <tag>... | --tags-from <file> | --all) [--soft]",
	Short: "Removes entries from the edge cache of a running instance",
	Long: `
Removes cached entries through the admin API of a running edgecache:
one entry by its key (--key, the request URI as cached), every entry whose
key starts with a prefix (--prefix), every entry that carries a tag (--tag,
repeatable, or --tags-from a file of one tag a line, - for standard input;
the handlers' tags blocks set them), or every entry (--all). Exactly one of
these is required. It prints how many entries were removed: 0 when no
entry matched.

--soft keeps the entries and marks them expired now, and prints how many
it marked: the next request of each refreshes it as an expired entry is
refreshed (with use_stale updating, served stale while one background
request updates it), so a soft purge never turns a hit into a miss.

A key or prefix is given as cache-keys prints it: as it is, or Go-quoted
when it is not printable UTF-8 text or starts with a double quote
("/a\xff"; quote it for the shell: --key '"/a\xff"').

With --zone only that cache zone is purged; without it, every zone.

In a fleet (a shared block), the purge also removes the entries from Redis
and reaches every other proxy through the fleet's event log within a
second; it prints how many values it removed from Redis. A zone that says
shared off is purged on this proxy only. If Redis cannot be reached, this
proxy's entries are purged all the same and the command fails, saying so:
purge again once Redis answers.` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().StringP("zone", "z", "", "Cache zone to purge (default every zone)")
		cmd.Flags().StringP("key", "k", "", "Purge the entry with this key")
		cmd.Flags().StringP("prefix", "p", "", "Purge every entry whose key starts with this prefix")
		cmd.Flags().StringArrayP("tag", "t", nil, "Purge every entry that carries this tag (repeatable)")
		cmd.Flags().String("tags-from", "", "Purge the entries of the tags listed in this file, one a line (- for standard input)")
		cmd.Flags().Bool("all", false, "Purge every entry")
		cmd.Flags().Bool("soft", false, "Keep the entries, marked expired, to be refreshed when next asked for")
		cmd.MarkFlagsOneRequired("key", "prefix", "tag", "tags-from", "all")
		cmd.MarkFlagsMutuallyExclusive("key", "prefix", "tag", "all")
		cmd.MarkFlagsMutuallyExclusive("key", "prefix", "tags-from", "all")
		cmd.RunE = adminRun(runPurge)
	},
}

func runPurge(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	req := adminapi.PurgeRequest{Zone: fl.String("zone"), Key: fl.String("key"), Prefix: fl.String("prefix"), All: fl.Bool("all"), Soft: fl.Bool("soft")}
	chosen := 0
	for _, name := range []string{"key", "prefix", "all"} {
		if fl.Changed(name) {
			chosen++
		}
	}
	if fl.Changed("tag") || fl.Changed("tags-from") {
		chosen++
		var err error
		if req.Tags, err = tagsFromFlags(fl, os.Stdin); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	switch {
	case chosen != 1:
		return caddy.ExitCodeFailedStartup, errors.New("give exactly one of --key, --prefix, --tag (or --tags-from) or --all")
	case fl.Changed("key") && req.Key == "":
		return caddy.ExitCodeFailedStartup, errors.New("--key is empty")
	case fl.Changed("prefix") && req.Prefix == "":
		return caddy.ExitCodeFailedStartup, errors.New("--prefix is empty: use --all to purge everything")
	case fl.Changed("all") && !req.All:
		return caddy.ExitCodeFailedStartup, errors.New("--all=false purges nothing")
	}
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var resp adminapi.PurgeResponse
	if err := client.do(ctx, http.MethodPost, adminapi.PurgePath, req, &resp); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("purging: %v", err)
	}
	zone := "every zone"
	if req.Zone != "" {
		zone = "zone " + req.Zone
	}
	did := fmt.Sprintf("purged %d entries from %s", resp.Purged, zone)
	if resp.Marked != nil {
		did = fmt.Sprintf("marked %d entries expired in %s (soft purge: each is refreshed when next asked for)", *resp.Marked, zone)
	}
	if resp.Shared != nil {
		others := "the other proxies purge theirs within a second"
		if req.Soft {
			others = "marked; the other proxies mark theirs within a second"
		}
		fmt.Fprintf(stdout, "%s, and %d values from the fleet's Redis (%s)\n", did, *resp.Shared, others)
	} else {
		fmt.Fprintln(stdout, did)
	}
	return caddy.ExitCodeSuccess, nil
}

// tagsFromFlags reads the tags of --tag and --tags-from (a file, or
// stdin for -): one tag a line, blank lines and lines starting with #
// skipped, each checked.
func tagsFromFlags(fl caddycmd.Flags, stdin io.Reader) ([]string, error) {
	tags, err := fl.GetStringArray("tag")
	if err != nil {
		return nil, err
	}
	if from := fl.String("tags-from"); from != "" {
		r := stdin
		if from != "-" {
			f, err := os.Open(from)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		sc := bufio.NewScanner(r)
		for line := 1; sc.Scan(); line++ {
			t := strings.TrimSpace(sc.Text())
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			if err := cache.CheckTag(t); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", from, line, err)
			}
			tags = append(tags, t)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %v", from, err)
		}
	}
	for _, t := range tags {
		if err := cache.CheckTag(t); err != nil {
			return nil, fmt.Errorf("--tag: %v", err)
		}
	}
	if len(tags) == 0 {
		return nil, errors.New("no tag given (--tags-from lists none)")
	}
	return tags, nil
}
