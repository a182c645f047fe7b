package edgecache

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// update rewrites the golden files with what the adapter gives now:
// go test -run Adapt -update, then review the diff.
var update = flag.Bool("update", false, "rewrite the golden files of the Caddyfile adapt tests")

// goldenDir holds the adapt tests, one per directive, as Caddy's own
// caddytest/integration/caddyfile_adapt: a Caddyfile, a line of dashes,
// then the JSON it adapts to, or text that the adapter's error contains.
const goldenDir = "testdata/caddyfile_adapt"

const separator = "----------"

func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests in %s: %v", goldenDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := strings.Cut(string(text), separator)
			if !ok {
				t.Fatalf("no %s line between the Caddyfile and the JSON", separator)
			}
			caddyfile, want = strings.TrimSpace(caddyfile)+"\n", strings.TrimSpace(want)
			if !strings.HasPrefix(want, "{") {
				// An error case.
				_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("adapt error %v, want one containing %q", err, want)
				}
				return
			}
			if *update {
				got, err := adapt(caddyfile)
				if err != nil {
					t.Fatal(err)
				}
				writeGolden(t, file, caddyfile+separator+"\n"+got)
				return
			}
			if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", want) {
				t.Errorf("%s does not adapt to its JSON (diff above; -update rewrites it)", file)
			}
		})
	}
}

// Caddyfile.example, with every environment variable at its default, as
// `edgecache adapt --config Caddyfile.example` gives it.
func TestCaddyfileExampleAdapt(t *testing.T) {
	text, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "EDGECACHE_") || strings.HasPrefix(name, "OMERO_") ||
			name == "GRAFANA" || name == "PROMETHEUS" || name == "SEARCHENGINE" {
			t.Setenv(name, "") // restored after the test
			os.Unsetenv(name)
		}
	}
	golden := filepath.Join(goldenDir, "Caddyfile.example.json")
	if *update {
		got, err := adapt(string(text))
		if err != nil {
			t.Fatal(err)
		}
		writeGolden(t, golden, got)
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !caddytest.CompareAdapt(t, "Caddyfile.example", string(text), "caddyfile", strings.TrimSpace(string(want))) {
		t.Errorf("Caddyfile.example does not adapt to %s (diff above; -update rewrites it)", golden)
	}
}

// adapt returns the JSON of a Caddyfile, indented as CompareAdapt wants it.
func adapt(caddyfile string) (string, error) {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, cfg, "", "\t"); err != nil {
		return "", err
	}
	return out.String() + "\n", nil
}

func writeGolden(t *testing.T, file, text string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrote %s", file)
}
