package operations_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestSystemdUnit runs systemd-analyze verify on dist/edgecache.service,
// its binary path pointed at the built binary, and fails on anything it
// says about the unit (unknown keys and bad values are only warnings).
func TestSystemdUnit(t *testing.T) {
	analyze := testkit.RequireTool(t, "systemd-analyze", "systemd")
	raw, err := os.ReadFile("../../dist/edgecache.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "/usr/bin/edgecache ") {
		t.Fatal("the unit does not run /usr/bin/edgecache")
	}
	unit := filepath.Join(t.TempDir(), "edgecache.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(raw), "/usr/bin/edgecache ", edgecacheBin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "edgecache") {
			t.Errorf("systemd-analyze verify: %s", line)
		} else if line != "" {
			t.Logf("systemd-analyze verify (not about the unit): %s", line)
		}
	}
	for _, key := range []string{"User=edgecache", "CacheDirectory=edgecache", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"ExecReload=/usr/bin/edgecache reload", "LimitNOFILE=", "ProtectSystem=strict", "ReadWritePaths=",
		"NoNewPrivileges=true", "PrivateTmp=true", "EnvironmentFile="} {
		if !strings.Contains(string(raw), "\n"+key) {
			t.Errorf("the unit lacks %s", key)
		}
	}
}

// TestEnvironmentFile: dist/edgecache.env sets every variable that
// Caddyfile.example reads, and no other.
func TestEnvironmentFile(t *testing.T) {
	caddyfile, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile("../../dist/edgecache.env")
	if err != nil {
		t.Fatal(err)
	}
	var read, set []string
	for _, m := range regexp.MustCompile(`\{\$([A-Z_]+)`).FindAllStringSubmatch(string(caddyfile), -1) {
		read = append(read, m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+)=`).FindAllStringSubmatch(string(env), -1) {
		set = append(set, m[1])
	}
	slices.Sort(read)
	read = slices.Compact(read)
	slices.Sort(set)
	if !slices.Equal(read, set) {
		t.Errorf("Caddyfile.example reads %v; dist/edgecache.env sets %v", read, set)
	}
}
