package operations_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// The alert rules, the promtool unit tests that make each one fire, and
// the Grafana dashboard, from this package's folder.
const (
	alertsFile     = "../../docs/alerts.yml"
	alertTestsFile = "testdata/alerts_test.yml"
	dashboardFile  = "../../docs/grafana-dashboard.json"
)

// exportedAtStart scrapes a proxy that has just started, with a disk zone
// and before any request: the metric names it exports then are those an
// alert or a panel may use, since a series that appears only at its first
// event is missed by rate().
func exportedAtStart(t *testing.T) map[string]bool {
	t.Helper()
	b := newBackend(t, objects)
	s := newDiskSetup(t, b, "64MiB")
	r := s.mustGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", s.admin))
	names := make(map[string]bool)
	for _, line := range strings.Split(string(r.body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
		// And the series with its labels, for the alerts' selectors.
		if i := strings.IndexByte(line, '{'); i > 0 {
			names[line[:strings.LastIndexByte(line, ' ')]] = true
		}
	}
	return names
}

var (
	// Quoted strings, label matchers, ranges and groupings are not metric names.
	promQLNoise = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promQLWord  = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	// Aggregations may take their grouping before the parenthesis.
	promQLWords = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "and", "or", "unless", "offset", "bool", "inf", "nan"}
)

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function (followed by a parenthesis), an
// aggregation or a keyword, or inside a string, matcher, range or grouping.
func metricNames(expr string) []string {
	expr = promQLNoise.ReplaceAllString(expr, " ")
	var names []string
	for _, w := range promQLWord.FindAllString(expr, -1) {
		if strings.HasSuffix(w, "(") {
			continue // a function, or by/on (...) whose labels follow
		}
		w = strings.TrimSpace(w)
		if !slices.Contains(promQLWords, strings.ToLower(w)) {
			names = append(names, w)
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`max without (job) (rate(edgecache_requests_total{cache_status!="BYPASS"}[1h] offset 1d)) / on (instance) process_resident_memory_bytes > 0.9`)
	want := []string{"edgecache_requests_total", "process_resident_memory_bytes"}
	if !slices.Equal(got, want) {
		t.Errorf("metricNames = %q, want %q", got, want)
	}
}

// checkExported fails for each metric an expression selects that the
// running binary does not export.
func checkExported(t *testing.T, where, expr string, exported map[string]bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if !exported[n] {
			t.Errorf("%s uses %s, which edgecache does not export", where, n)
		}
	}
}

// alertExprs reads each rule's name and expression from the rules file, as
// promtool does: the test needs no YAML library for this fixed layout.
func alertExprs(t *testing.T, raw string) map[string]string {
	t.Helper()
	exprs := make(map[string]string)
	var name string
	lines := strings.Split(raw, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(line, "- alert:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "- alert:"))
		case line == "expr: |":
			var b strings.Builder
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" ||
				len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				b.WriteString(lines[i] + "\n")
			}
			exprs[name] = b.String()
		case strings.HasPrefix(line, "expr:"):
			exprs[name] = strings.TrimPrefix(line, "expr:")
		}
	}
	return exprs
}

// withoutAnnotations drops the rules' annotations, so that promtool's unit
// tests compare labels only and do not repeat every alert's text.
func withoutAnnotations(raw string) string {
	var out []string
	skipIndent := -1
	for _, line := range strings.Split(raw, "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		if skipIndent >= 0 {
			if strings.TrimSpace(line) == "" || indent > skipIndent {
				continue
			}
			skipIndent = -1
		}
		if strings.TrimSpace(line) == "annotations:" {
			skipIndent = indent
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// TestAlertRules checks docs/alerts.yml with promtool, makes each alert
// fire on example series (testdata/alerts_test.yml), and checks that every
// metric the rules use is exported by the binary from the start.
func TestAlertRules(t *testing.T) {
	promtool := testkit.RequireTool(t, "promtool", "prometheus")
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(withoutAnnotations(string(raw))), 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	exprs := alertExprs(t, string(raw))
	if len(exprs) < 7 {
		t.Fatalf("found %d alert expressions in %s, want the 7 of the issue", len(exprs), alertsFile)
	}
	for name := range exprs {
		if !strings.Contains(string(tests), "alertname: "+name) {
			t.Errorf("alert %s has no example in %s", name, alertTestsFile)
		}
	}
	exported := exportedAtStart(t)
	for name, expr := range exprs {
		checkExported(t, "alert "+name, expr, exported)
	}
	// The labelled series the alerts select exist at 0 before any event.
	for _, series := range []string{
		`edgecache_disk_write_errors_total{reason="no_space",zone="disk"}`,
		`edgecache_disk_write_errors_total{reason="io",zone="disk"}`,
		`edgecache_backend_errors_total{reason="timeout",zone="disk"}`,
		`edgecache_requests_total{cache_status="HIT",zone="disk"}`,
	} {
		if !exported[series] {
			t.Errorf("series %s is not exported from the start", series)
		}
	}
}

// TestDashboard checks the Grafana dashboard: an instance variable that
// every query uses, a hit ratio without BYPASS, a panel per tier, and only
// metrics the binary exports.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Targets []struct{ Expr string }
	}
	var dash struct {
		Templating struct {
			List []struct {
				Name, Definition string
				IncludeAll       bool
				Multi            bool
			}
		}
		Panels []panel
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	instance := false
	for _, v := range dash.Templating.List {
		if v.Name == "instance" && v.Multi && v.IncludeAll && strings.Contains(v.Definition, "instance") {
			instance = true
		}
	}
	if !instance {
		t.Error("no multi-value instance variable")
	}

	exported := exportedAtStart(t)
	var hitRatio, memoryTier, diskTier bool
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			e := target.Expr
			checkExported(t, fmt.Sprintf("panel %q", p.Title), e, exported)
			if !strings.Contains(e, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s ignores the instance variable", p.Title, e)
			}
			if strings.Contains(p.Title, "Hit ratio") {
				hitRatio = true
				if !strings.Contains(e, `cache_status!="BYPASS"`) {
					t.Errorf("panel %q counts BYPASS: %s", p.Title, e)
				}
			}
			memoryTier = memoryTier || strings.Contains(e, `tier="memory"`)
			diskTier = diskTier || strings.Contains(e, `tier="disk"`)
		}
	}
	if !hitRatio || !memoryTier || !diskTier {
		t.Errorf("panels: hit ratio %v, memory tier %v, disk tier %v; want all", hitRatio, memoryTier, diskTier)
	}
}
