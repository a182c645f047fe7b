package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/statustable"
)

func init() {
	caddycmd.RegisterCommand(statusCommand)
}

var statusCommand = caddycmd.Command{
	Name:  "status",
	Usage: "[--watch] [--interval <duration>] [--json] [--address <interface>]",
	Short: "Shows what a running instance is doing: zones, requests, fills, backends, maintenance, fleet",
	Long: `
Prints the status of a running edgecache as tables that fit the terminal
(80 columns at least): for each zone, entries and bytes per tier against
their limits, requests by cache status over the last minute and since the
start, the hit ratio without BYPASS, served bytes, requests per second over
the last 5 minutes, evictions, the keys that missed most over the last 5
minutes and the fills in flight; then the backends, the maintenance flag,
the fleet, the last purges and refreshes, and the process.

--watch redraws it in place every --interval (2s) until interrupted.
--json prints the admin API's answer (GET /edge_cache/status.json) as it is.

A browser shows the same as a page, refreshed every 2 s, from an
edge_cache_status handler on a localhost site (see docs/operations.md).
` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().BoolP("watch", "w", false, "Redraw in place every --interval until interrupted")
		cmd.Flags().Duration("interval", 2*time.Second, "How often --watch redraws")
		cmd.Flags().Bool("json", false, "Print the JSON status as the admin API answers it")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdStatus)
	},
}

func cmdStatus(fl caddycmd.Flags) (int, error) {
	ctx, stop := untilInterrupted()
	defer stop()
	width := 80
	if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w > 0 {
		width = w
	}
	return runStatus(ctx, fl, os.Stdout, width)
}

// clearScreen moves the cursor home and clears the screen (ANSI), so that
// --watch redraws in place.
const clearScreen = "\x1b[H\x1b[2J"

func runStatus(ctx context.Context, fl caddycmd.Flags, stdout io.Writer, width int) (int, error) {
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	watch, interval := fl.Bool("watch"), fl.Duration("interval")
	if watch && interval < 100*time.Millisecond {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--interval %v: want 100ms or more", interval)
	}
	for {
		var st adminapi.Status
		err := client.do(ctx, http.MethodGet, adminapi.StatusJSONPath, nil, &st)
		if ctx.Err() != nil {
			return caddy.ExitCodeSuccess, nil
		}
		var out strings.Builder
		switch {
		case err != nil && !watch:
			return caddy.ExitCodeFailedStartup, fmt.Errorf("status: %v", err)
		case err != nil:
			fmt.Fprintf(&out, "%s\n(retrying every %v)\n", err, interval)
		case fl.Bool("json"):
			b, _ := json.MarshalIndent(st, "", "  ")
			out.Write(append(b, '\n'))
		default:
			statustable.Write(&out, st, width)
		}
		if watch {
			io.WriteString(stdout, clearScreen)
		}
		io.WriteString(stdout, out.String())
		if !watch {
			return caddy.ExitCodeSuccess, nil
		}
		select {
		case <-ctx.Done():
			return caddy.ExitCodeSuccess, nil
		case <-time.After(interval):
		}
	}
}
