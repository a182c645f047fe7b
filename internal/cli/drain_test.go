package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDrainCommand switches a running proxy's health check to draining and
// back, and says the state after each change.
func TestDrainCommand(t *testing.T) {
	admin, _ := startProxy(t, "zone default 16MiB", "")
	drain := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		status, err := runDrain(context.Background(), parseFlags(t, drainCommand, append(args, "--address", admin)...), &out)
		if err != nil || status != 0 {
			t.Fatalf("drain %v: status %d, error %v", args, status, err)
		}
		return out.String()
	}
	// The state outlives the config: leave the process healthy.
	t.Cleanup(func() { drain("--off") })
	if got := drain(); got != "health: draining\n" {
		t.Errorf("drain printed %q", got)
	}
	if got := drain("--off"); got != "health: ok\n" {
		t.Errorf("drain --off printed %q", got)
	}

	var out bytes.Buffer
	nobody := freeAddr(t)
	_, err := runDrain(context.Background(), parseFlags(t, drainCommand, "--address", nobody), &out)
	if err == nil || !strings.Contains(err.Error(), "draining: cannot reach the admin API at "+nobody) {
		t.Errorf("no proxy: error %v", err)
	}
}
