package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddycmd.RegisterCommand(purgeCommand)
}

var purgeCommand = caddycmd.Command{
	Name:  "purge",
	Usage: "[--address <interface>] [--zone <name>] (--key <key> | --prefix <prefix> | --all)",
	Short: "Removes entries from the edge cache of a running instance",
	Long: `
Removes cached entries through the admin API of a running edgecache:
one entry by its key (--key, the request URI as cached), every entry whose
key starts with a prefix (--prefix), or every entry (--all). Exactly one of
the three is required. It prints how many entries were removed: 0 when no
entry matched.

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
		cmd.Flags().Bool("all", false, "Purge every entry")
		cmd.MarkFlagsOneRequired("key", "prefix", "all")
		cmd.MarkFlagsMutuallyExclusive("key", "prefix", "all")
		cmd.RunE = adminRun(runPurge)
	},
}

func runPurge(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	req := adminapi.PurgeRequest{Zone: fl.String("zone"), Key: fl.String("key"), Prefix: fl.String("prefix"), All: fl.Bool("all")}
	chosen := 0
	for _, name := range []string{"key", "prefix", "all"} {
		if fl.Changed(name) {
			chosen++
		}
	}
	switch {
	case chosen != 1:
		return caddy.ExitCodeFailedStartup, errors.New("give exactly one of --key, --prefix or --all")
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
	if resp.Shared != nil {
		fmt.Fprintf(stdout, "purged %d entries from %s, and %d values from the fleet's Redis; the other proxies purge theirs within a second\n", resp.Purged, zone, *resp.Shared)
	} else {
		fmt.Fprintf(stdout, "purged %d entries from %s\n", resp.Purged, zone)
	}
	return caddy.ExitCodeSuccess, nil
}
