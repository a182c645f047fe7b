// Package testbin builds the edgecache command for the end-to-end test
// packages, from this module's source, once per test binary (in TestMain),
// and holds the helpers every test package shares.
package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles ./cmd/edgecache into dir (without -race, whatever the
// tests run with: the proxy is measured as deployed) and returns the
// binary's path and the module's root folder, which holds Caddyfile.example
// and www.
func Build(dir string) (binary, moduleRoot string, err error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/edgecache/edgecache").Output()
	if err != nil {
		return "", "", fmt.Errorf("finding the module root: %w", err)
	}
	moduleRoot = strings.TrimSpace(string(out))
	binary = filepath.Join(dir, "edgecache")
	build := exec.Command("go", "build", "-o", binary, "./cmd/edgecache")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building edgecache: %v\n%s", err, out)
	}
	return binary, moduleRoot, nil
}

// Run is a whole TestMain: it builds the binary into a temporary folder,
// sets *binary, runs the tests and removes the folder. Use it as
// os.Exit(testbin.Run(m, &binary)).
func Run(m *testing.M, binary *string) int {
	dir, err := os.MkdirTemp("", "edgecache-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	if *binary, _, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return m.Run()
}

// FreePort returns a port of 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
