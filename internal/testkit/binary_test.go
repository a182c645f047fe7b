package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The binary is built from this tree, runs, and is reused under the same
// key.
func TestBinary(t *testing.T) {
	binary, moduleDir, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moduleDir, "Caddyfile.example")); err != nil {
		t.Errorf("module folder %s: %v", moduleDir, err)
	}
	if out, err := exec.Command(binary, "list-modules").CombinedOutput(); err != nil {
		t.Fatalf("%s list-modules: %v\n%s", binary, err, out)
	}
	key, err := sourceKey(moduleDir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(binary) != "edgecache-"+key {
		t.Errorf("binary %s, want the key %s", binary, key)
	}
}
