package statustable

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgecache/edgecache/internal/adminapi"
)

func TestWriteFits80Columns(t *testing.T) {
	ratio := 0.75
	long := "/webgateway/render_image_region/" + strings.Repeat("1234567890", 20)
	st := adminapi.Status{
		Time:        time.Unix(1_700_000_000, 0),
		Process:     adminapi.Process{Version: "v1.2.3", Node: "idr-proxy-1", UptimeSeconds: 93784, MemoryBytes: 3 << 30, MemoryLimitBytes: 8 << 30, Goroutines: 210, OpenFiles: 57, MaxOpenFiles: 65536},
		Maintenance: []adminapi.Maintenance{{FlagFile: "/etc/edgecache/maintenance.on", On: true, Since: time.Unix(1_699_999_000, 0)}},
		Fleet:       &adminapi.Fleet{RedisUp: false, Members: []adminapi.Member{{Node: "idr-proxy-2", Version: "v1.2.3", AgeSeconds: 3, Behind: -1}}},
		Zones: []adminapi.Zone{{
			Name:          "images",
			Tiers:         []adminapi.Tier{{Name: "memory", Entries: 12345, Bytes: 100 << 20, MaxBytes: 192 << 20}, {Name: "disk", Entries: 1234567, Bytes: 90 << 30, Loading: true}},
			WindowSeconds: 60,
			LastMinute:    adminapi.Counts{Requests: map[string]int64{"HIT": 1500, "MISS": 500, "BYPASS": 7}, HitRatio: &ratio},
			SinceStart:    adminapi.Counts{Requests: map[string]int64{"HIT": 12_345_678, "MISS": 99}},
			Rates:         []float64{1, 2, 3, 40, 5},
			Evictions:     map[string]int64{"max_size": 3},
			TopMisses:     []adminapi.KeyCount{{Key: long, Count: 12, Over: 2}},
			Fills:         []adminapi.Fill{{Key: long, AgeSeconds: 4, Bytes: 1 << 20, Waiters: 2, Readers: 1}, {Key: "/k", Bytes: -1}},
		}},
		Backends: []adminapi.Backend{{Address: "omero-web-1:4080", Healthy: false, Checked: true, Fails: 3}},
		Events:   []adminapi.Event{{Time: time.Unix(1_699_999_990, 0), Zone: "images", Kind: "purge prefix", Target: long, Count: 1200, By: "cli"}},
	}
	var b strings.Builder
	if err := Write(&b, st, 80); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("%d columns: %q", n, line)
		}
	}
	for _, want := range []string{"ON since", "UNREACHABLE", "UNHEALTHY", "disk (loading)", "12,345,678", "75.0%", "≤12", "purge prefix", "[#####.....] 52%", "…"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Wider terminals show more of a key.
	b.Reset()
	Write(&b, st, 300)
	if !strings.Contains(b.String(), long) {
		t.Errorf("at 300 columns, the key is cut:\n%s", b.String())
	}
}

func TestSpark(t *testing.T) {
	if got := spark(nil, 5); got != strings.Repeat(" ", 30) {
		t.Errorf("no history: %q", got)
	}
	// Two points a cell: 4 points fill the last two cells, the newest
	// (the peak) right.
	got := []rune(spark([]float64{0, 2, 10, 10}, 5))
	if len(got) != 30 || got[29] != '█' || got[28] != '▂' || got[27] != ' ' {
		t.Errorf("four points: %q", string(got))
	}
}
