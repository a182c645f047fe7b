package cli

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/testkit"
)

// parseFlags returns the flags of a command parsed from args.
func parseFlags(t *testing.T, c caddycmd.Command, args ...string) caddycmd.Flags {
	t.Helper()
	cmd := &cobra.Command{Use: c.Name}
	c.CobraFunc(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return caddycmd.Flags{FlagSet: cmd.Flags()}
}

// startProxy runs edgecache in this process for the commands to talk to:
// the global options' body (zones, a shared block) and site blocks, with
// the admin API on a free port of 127.0.0.1, whose address it returns.
// Each $NAME of names in sites becomes a free port, also returned. Caddy
// stops at the end of the test.
func startProxy(t *testing.T, options, sites string, names ...string) (admin string, ports map[string]string) {
	t.Helper()
	admin = freeAddr(t)
	ports = map[string]string{}
	var pairs []string
	for _, n := range names {
		ports[n] = freeAddr(t)
		pairs = append(pairs, "127.0.0.1:$"+n, ports[n])
	}
	cf := `{
	admin ` + admin + `
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	grace_period 1s
	log {
		output discard
	}
	edge_cache {
` + options + `
	}
}
` + strings.NewReplacer(pairs...).Replace(sites)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, cf)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return admin, ports
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
