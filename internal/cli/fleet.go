package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/fleet"
	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddycmd.RegisterCommand(fleetCommand)
}

var fleetCommand = caddycmd.Command{
	Name:  "fleet",
	Usage: "[--json] [--address <interface>]",
	Short: "Lists the proxies of the fleet a running instance belongs to",
	Long: `
Prints the proxies that share this one's Redis (its shared block), as the
admin API of a running edgecache lists them: each proxy announces itself
every 2 s, and leaves the list 10 s after its last announcement.

For each: its node name, version and shared zones; the last event of the
fleet's event log (purges, invalidations, refreshes) it applied; how many
events it is behind the log's end (counted up to 1000; "?" when it cannot
be told); and how long ago it announced itself.

--json prints the admin API's answer as it is.

Exit status: 0 listed, 1 the admin API or Redis could not be asked, or the
instance has no shared block.` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().Bool("json", false, "Print the admin API's JSON answer")
		cmd.RunE = adminRun(func(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
			return runFleet(ctx, fl, stdout, time.Now())
		})
	},
}

func runFleet(ctx context.Context, fl caddycmd.Flags, stdout io.Writer, now time.Time) (int, error) {
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var resp adminapi.FleetResponse
	if err := client.do(ctx, http.MethodGet, adminapi.FleetPath, nil, &resp); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing the fleet: %v", err)
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return caddy.ExitCodeSuccess, enc.Encode(resp)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERSION\tZONES\tLAST EVENT\tBEHIND\tSEEN")
	for _, m := range resp.Members {
		behind := strconv.FormatInt(m.Behind, 10)
		switch {
		case m.Behind < 0:
			behind = "?"
		case m.Behind >= fleet.MaxBehind:
			behind = ">=" + behind
		}
		zones := strings.Join(m.Zones, ",")
		if zones == "" {
			zones = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", m.Node, m.Version, zones, m.LastEvent, behind,
			max(now.Sub(m.Seen), 0).Round(100*time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}
