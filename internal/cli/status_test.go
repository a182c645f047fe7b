package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// cancelAfter is a writer that cancels a context after n redraws.
type cancelAfter struct {
	mu     sync.Mutex
	out    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if string(p) == clearScreen {
		if w.n--; w.n < 0 {
			w.cancel()
		}
	}
	return w.out.Write(p)
}

// TestStatusCommand prints a running proxy's status once, as JSON, and
// redrawn in place with --watch, and says why when there is no proxy.
func TestStatusCommand(t *testing.T) {
	admin, _ := startProxy(t, "zone default 16MiB", "")
	status := func(ctx context.Context, w interface{ Write([]byte) (int, error) }, args ...string) (int, error) {
		return runStatus(ctx, parseFlags(t, statusCommand, append(args, "--address", admin)...), w, 80)
	}

	var out bytes.Buffer
	if code, err := status(context.Background(), &out); err != nil || code != 0 {
		t.Fatalf("status: %d %v", code, err)
	}
	if !strings.Contains(out.String(), "ZONE default") || strings.Contains(out.String(), clearScreen) {
		t.Errorf("status printed:\n%s", out.String())
	}

	out.Reset()
	if _, err := status(context.Background(), &out, "--json"); err != nil {
		t.Fatal(err)
	}
	var st adminapi.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Zones) != 1 || st.Zones[0].Name != "default" {
		t.Errorf("status --json: %v, %s", err, out.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelAfter{n: 2, cancel: cancel}
	if code, err := status(ctx, w, "--watch", "--interval", "100ms"); err != nil || code != 0 {
		t.Fatalf("status --watch: %d %v", code, err)
	}
	if n := strings.Count(w.out.String(), clearScreen); n != 3 || strings.Count(w.out.String(), "ZONE default") != 3 {
		t.Errorf("status --watch drew %d times:\n%s", n, w.out.String())
	}

	if _, err := status(context.Background(), &out, "--watch", "--interval", "10ms"); err == nil || !strings.Contains(err.Error(), "--interval") {
		t.Errorf("--interval 10ms: error %v", err)
	}

	nobody := freeAddr(t)
	_, err := runStatus(context.Background(), parseFlags(t, statusCommand, "--address", nobody), &out, 80)
	if err == nil || !strings.Contains(err.Error(), "status: cannot reach the admin API at "+nobody) {
		t.Errorf("no proxy: error %v", err)
	}
	// Watching, it says so and tries again.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	w = &cancelAfter{n: 1, cancel: cancel}
	if _, err := runStatus(ctx, parseFlags(t, statusCommand, "--address", nobody, "--watch", "--interval", "100ms"), w, 80); err != nil {
		t.Errorf("watching no proxy: error %v", err)
	}
	if !strings.Contains(w.out.String(), "retrying every 100ms") {
		t.Errorf("watching no proxy printed:\n%s", w.out.String())
	}
}
