package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddycmd.RegisterCommand(drainCommand)
}

var drainCommand = caddycmd.Command{
	Name:  "drain",
	Usage: "[--off] [--address <interface>]",
	Short: "Makes the health check of a running instance answer 503 draining, before a restart",
	Long: `
Tells a running edgecache that it is about to be restarted: its
edge_cache_health handler answers 503 with "status": "draining" from now on,
so that the load balancer stops sending it new requests. The proxy itself
keeps serving everything it is sent. Wait for the load balancer's checks to
notice (its interval times its fall count), then restart.

--off undoes it: the health check answers as before.

The state lives in the running process only: it survives config reloads,
and a restarted process starts healthy (not draining). It prints the
health state after the change.` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().Bool("off", false, "Stop draining: the health check answers as before")
		cmd.RunE = adminRun(runDrain)
	},
}

func runDrain(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var state adminapi.HealthState
	if err := client.do(ctx, http.MethodPost, adminapi.DrainPath, adminapi.DrainRequest{Draining: !fl.Bool("off")}, &state); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("draining: %v", err)
	}
	fmt.Fprintf(stdout, "health: %s\n", state.Status)
	return caddy.ExitCodeSuccess, nil
}
