// Package production_test runs the real edgecache binary with the
// repository's Caddyfile.example (the production layout: public site,
// cache-buster and long-timeout ports, maintenance page, read-only pool and
// read-write server) against in-process OMERO stand-ins (internal/omerodemo),
// and checks the behaviours of the nginx proxy it replaces from outside:
// status headers, access log lines, listeners, backend request counts.
//
// TestMain builds the binary once and starts one shared instance for the
// tests that leave it as they found it; tests that change an instance for
// good (maintenance, a closed node, a scaled-down timeout, a modified
// Caddyfile) start their own and run in parallel.
package production_test

import (
	"fmt"
	"github.com/edgecache/edgecache/internal/testkit"
	"os"
	"path/filepath"
	"testing"
)

var (
	// repoRoot is the module's root folder, holding Caddyfile.example and www.
	repoRoot string
	// binary is the edgecache binary (testkit.Binary).
	binary string
	// shared is the instance of the tests that do not change it.
	shared *edge
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "edgecache-production-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)

	if binary, repoRoot, err = testkit.Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	shared, err = startEdge(edgeConfig{ReadOnly: 3, Dir: filepath.Join(tmp, "shared")})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the shared instance: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := shared.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the shared instance: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- shared instance log (last lines):\n%s\n", shared.logTail(0, 60))
	}
	return code
}

// sharedEdge returns the shared instance, and on failure shows what it
// logged during the test.
func sharedEdge(t *testing.T) *edge {
	t.Helper()
	from := shared.logSize()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared instance log during the test:\n%s", shared.logTail(from, 80))
		}
	})
	return shared
}
