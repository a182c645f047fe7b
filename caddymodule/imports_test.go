package caddymodule

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNoCommandLineCode: the package every request runs through holds no
// command-line code. The subcommands and what only they use (cobra,
// x/term, the warm engine, the nginx importer, the demo's servers) are
// package cli's, and nothing here imports it. Caddy's own caddyhttp still
// brings cobra among the dependencies, for its `caddy respond`.
func TestNoCommandLineCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}\n--\n{{join .Deps \"\\n\"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports, deps, _ := strings.Cut(string(out), "\n--\n")
	for _, p := range []string{"github.com/caddyserver/caddy/v2/cmd", "github.com/spf13/cobra", "golang.org/x/term"} {
		if slices.Contains(strings.Fields(imports), p) {
			t.Errorf("caddymodule imports %s", p)
		}
	}
	for _, p := range []string{"cli", "warm", "nginximport", "omerodemo"} {
		if slices.Contains(strings.Fields(deps), "github.com/edgecache/edgecache/internal/"+p) {
			t.Errorf("caddymodule depends on internal/%s", p)
		}
	}
}
