package testkit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The binary is built once per source tree, not once per test package: `go
// test ./...` runs each package's tests in its own process, and go build -o
// links Caddy again each time (the build cache keeps compiled packages, not
// linked binaries). So Binary keeps the build in binDir under a hash of
// everything the link depends on, and the packages of one run (and later
// runs on the same tree) share it.
var binDir = filepath.Join(os.TempDir(), "edgecache-test-bin")

// unusedFor is how long a cached binary is kept after its last use.
const unusedFor = 6 * time.Hour

var built struct {
	once              sync.Once
	binary, moduleDir string
	err               error
}

// Binary returns the path of the edgecache command built from this
// module's source (./cmd/edgecache, without -race whatever the tests run
// with: the proxy is measured as deployed) and the module's root folder,
// which holds Caddyfile.example and www.
func Binary() (binary, moduleDir string, err error) {
	built.once.Do(func() { built.binary, built.moduleDir, built.err = build() })
	return built.binary, built.moduleDir, built.err
}

func build() (binary, moduleDir string, err error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/edgecache/edgecache").Output()
	if err != nil {
		return "", "", fmt.Errorf("finding the module root: %w", err)
	}
	moduleDir = strings.TrimSpace(string(out))
	key, err := sourceKey(moduleDir)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", "", err
	}
	binary = filepath.Join(binDir, "edgecache-"+key)
	// One process links, the others of the run wait for it.
	unlock, err := lockFile(binary + ".lock")
	if err != nil {
		return "", "", err
	}
	defer unlock()
	now := time.Now()
	if os.Chtimes(binary, now, now) == nil { // built already; marked as used
		return binary, moduleDir, nil
	}
	prune()
	tmp := fmt.Sprintf("%s.tmp-%d", binary, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./cmd/edgecache")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", "", fmt.Errorf("building edgecache: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, binary); err != nil {
		return "", "", err
	}
	return binary, moduleDir, nil
}

// sourceKey hashes what the binary is linked from: the Go toolchain and
// build settings, each dependency's module version, and the content of
// every file of the main module's packages (and of modules replaced by a
// local folder).
func sourceKey(moduleDir string) (string, error) {
	h := sha256.New()
	env, err := exec.Command("go", "env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "CGO_ENABLED", "GOFLAGS", "GOEXPERIMENT").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	h.Write(env)
	if err := hashFile(h, filepath.Join(moduleDir, "go.mod")); err != nil {
		return "", err
	}
	list := exec.Command("go", "list", "-deps", "-json=Dir,ImportPath,Standard,Module,GoFiles,CgoFiles,CFiles,SFiles,HFiles,EmbedFiles", "./cmd/edgecache")
	list.Dir = moduleDir
	out, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list: %w", err)
	}
	type module struct {
		Path, Version string
		Replace       *struct{ Path, Version string }
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir, ImportPath                           string
			Standard                                  bool
			Module                                    *module
			GoFiles, CgoFiles, CFiles, SFiles, HFiles []string
			EmbedFiles                                []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return "", err
		}
		if p.Standard { // covered by GOVERSION
			continue
		}
		m := p.Module
		if m != nil && m.Version != "" && (m.Replace == nil || m.Replace.Version != "") {
			// From the module cache, which is read-only.
			fmt.Fprintf(h, "%s %s@%s %v\n", p.ImportPath, m.Path, m.Version, m.Replace)
			continue
		}
		fmt.Fprintf(h, "%s\n", p.ImportPath)
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.SFiles, p.HFiles, p.EmbedFiles} {
			for _, name := range files {
				if err := hashFile(h, filepath.Join(p.Dir, name)); err != nil {
					return "", err
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(w, "%s\n", path)
	_, err = io.Copy(w, bufio.NewReader(f))
	return err
}

// prune removes the binaries of other source trees unused for unusedFor.
func prune() {
	names, _ := filepath.Glob(filepath.Join(binDir, "edgecache-*"))
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil && time.Since(fi.ModTime()) > unusedFor {
			os.Remove(name)
		}
	}
}

// Run is a whole TestMain for a package that runs the binary: it builds it
// (see Binary), sets *binary to its path and runs the tests. Use it as
// os.Exit(testkit.Run(m, &binary)).
func Run(m *testing.M, binary *string) int {
	var err error
	if *binary, _, err = Binary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return m.Run()
}
