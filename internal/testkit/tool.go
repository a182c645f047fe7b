package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireTool returns the path of a command a test needs, looked up on PATH
// and in /usr/sbin (where Debian puts nginx, often off a user's PATH).
// Missing, it skips the test, or fails it under CI=true: .ci/run installs
// debianPackage when the command is missing.
func RequireTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	for _, p := range []string{name, filepath.Join("/usr/sbin", name)} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("%s not found (apt-get install -y %s)", name, debianPackage)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + "; CI needs it")
	}
	tb.Skip(msg)
	return ""
}
