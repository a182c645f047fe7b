// Package statustable writes a proxy's status (adminapi.Status) as plain
// text tables that fit a terminal of a given width: `edgecache status`
// prints it, and the status page shows it to a browser without scripts.
package statustable

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// statuses in the order they are shown: cache answers first.
var statuses = []string{"HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS"}

// Write writes s as tables at most width columns wide (80 at least;
// longer keys are cut, ending in "…").
func Write(w io.Writer, s adminapi.Status, width int) error {
	width = max(width, 80)
	t := &table{width: width}
	p := s.Process
	t.line("edgecache %s on %s, up %s, at %s", p.Version, orDash(p.Node), duration(p.UptimeSeconds), s.Time.Local().Format("15:04:05"))
	t.line("memory %s, goroutines %d, open files %s",
		ofLimit(bytes(p.MemoryBytes), p.MemoryBytes, p.MemoryLimitBytes, bytes), p.Goroutines,
		ofLimit(fmt.Sprint(p.OpenFiles), int64(p.OpenFiles), p.MaxOpenFiles, func(n int64) string { return fmt.Sprint(n) }))
	maint := "off"
	for _, m := range s.Maintenance {
		if m.On {
			maint = fmt.Sprintf("ON since %s (%s)", m.Since.Local().Format("15:04:05"), m.FlagFile)
			break
		}
	}
	t.line("maintenance %s, draining %s", maint, yesNo(s.Draining))
	if f := s.Fleet; f != nil {
		redis := "reachable"
		if !f.RedisUp {
			redis = "UNREACHABLE"
		}
		t.line("fleet: %d members, Redis %s", len(f.Members), redis)
	}
	for _, z := range s.Zones {
		t.blank()
		t.line("ZONE %s", z.Name)
		t.row("tier", "entries", "held", "limit", "use")
		for _, tr := range z.Tiers {
			limit, use := "none", ""
			if tr.MaxBytes > 0 {
				limit, use = bytes(tr.MaxBytes), meter(tr.Bytes, tr.MaxBytes)
			}
			name := tr.Name
			if tr.Loading {
				name += " (loading)"
			}
			t.row(name, count(tr.Entries), bytes(tr.Bytes), limit, use)
		}
		t.flush()
		t.row("status", fmt.Sprintf("last %.0fs", z.WindowSeconds), "since start")
		for _, st := range statuses {
			t.row(st, count(z.LastMinute.Requests[st]), count(z.SinceStart.Requests[st]))
		}
		t.row("hit ratio", ratio(z.LastMinute.HitRatio), ratio(z.SinceStart.HitRatio), "(BYPASS left out)")
		t.row("served", bytes(z.LastMinute.ServedBytes), bytes(z.SinceStart.ServedBytes))
		t.row("backend errors", count(z.LastMinute.BackendErrors), count(z.SinceStart.BackendErrors))
		t.flush()
		t.line("req/s, 5 min %s now %.1f, peak %.1f", spark(z.Rates, z.RateStepSeconds), last(z.Rates), peak(z.Rates))
		if _, disk := z.Evictions["max_size"]; disk {
			t.line("evictions: memory %d, disk max_size %d, inactive %d, corrupt %d", z.Evictions["memory"], z.Evictions["max_size"], z.Evictions["inactive"], z.Evictions["corrupt"])
		} else {
			t.line("evictions: memory %d", z.Evictions["memory"])
		}
		t.line("top missed keys, 5 min: %s", noneIf(len(z.TopMisses)))
		for i, k := range z.TopMisses {
			n := count(k.Count)
			if k.Over > 0 {
				n = "≤" + n
			}
			t.row(fmt.Sprint(i+1), n, t.cut(k.Key, 18))
		}
		t.flush()
		t.line("fills in flight: %s", noneIf(len(z.Fills)))
		if len(z.Fills) > 0 {
			t.row("age", "stored", "waiting", "reading", "key")
			for _, f := range z.Fills {
				stored := "-"
				if f.Bytes >= 0 {
					stored = bytes(f.Bytes)
				}
				t.row(duration(f.AgeSeconds), stored, count(int64(f.Waiters)), count(int64(f.Readers)), t.cut(f.Key, 44))
			}
			t.flush()
		}
	}
	t.blank()
	t.line("BACKENDS: %s", noneIf(len(s.Backends)))
	if len(s.Backends) > 0 {
		t.row("address", "health", "in flight", "fails")
		for _, b := range s.Backends {
			health := "healthy"
			switch {
			case !b.Healthy:
				health = "UNHEALTHY"
			case !b.Checked:
				health = "unchecked"
			}
			t.row(t.cut(b.Address, 40), health, count(int64(b.Requests)), count(int64(b.Fails)))
		}
		t.flush()
	}
	if f := s.Fleet; f != nil && len(f.Members) > 0 {
		t.blank()
		t.line("FLEET MEMBERS")
		t.row("node", "version", "seen", "behind")
		for _, m := range f.Members {
			behind := count(m.Behind)
			if m.Behind < 0 {
				behind = "?"
			}
			t.row(t.cut(m.Node, 50), m.Version, duration(m.AgeSeconds)+" ago", behind)
		}
		t.flush()
	}
	t.blank()
	t.line("PURGES AND REFRESHES: %s", noneIf(len(s.Events)))
	if len(s.Events) > 0 {
		t.row("time", "zone", "kind", "entries", "by", "key")
		for _, e := range s.Events {
			target := e.Target
			if target == "" {
				target = "(all)"
			}
			t.row(e.Time.Local().Format("15:04:05"), e.Zone, e.Kind, count(int64(e.Count)), e.By, t.cut(target, 60))
		}
		t.flush()
	}
	_, err := io.WriteString(w, t.out.String())
	return err
}

// table gathers lines, and rows aligned by a tabwriter.
type table struct {
	width int
	out   strings.Builder
	tw    *tabwriter.Writer
}

func (t *table) line(format string, args ...any) {
	t.flush()
	t.out.WriteString(t.cut(fmt.Sprintf(format, args...), 0) + "\n")
}

func (t *table) blank() { t.flush(); t.out.WriteString("\n") }

func (t *table) row(cells ...string) {
	if t.tw == nil {
		t.tw = tabwriter.NewWriter(&t.out, 0, 0, 2, ' ', 0)
	}
	fmt.Fprintln(t.tw, "  "+strings.Join(cells, "\t"))
}

func (t *table) flush() {
	if t.tw != nil {
		t.tw.Flush()
		t.tw = nil
	}
}

// cut shortens s to the width less room (the row's other columns).
func (t *table) cut(s string, room int) string {
	n := t.width - room
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func bytes(n int64) string {
	if n < 0 {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}

func count(n int64) string { return humanize.Comma(n) }

func ratio(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**r)
}

func ofLimit(v string, n, limit int64, format func(int64) string) string {
	if limit <= 0 || n < 0 {
		return v
	}
	return fmt.Sprintf("%s of %s (%.0f%%)", v, format(limit), 100*float64(n)/float64(limit))
}

// meter draws n of limit as a bar of ten cells, then the percentage.
func meter(n, limit int64) string {
	f := math.Min(1, float64(n)/float64(limit))
	full := int(math.Round(f * 10))
	return "[" + strings.Repeat("#", full) + strings.Repeat(".", 10-full) + fmt.Sprintf("] %.0f%%", 100*f)
}

var blocks = []rune("▁▂▃▄▅▆▇█")

// spark draws rates (one per step seconds, over five minutes) in 30
// characters, the oldest left; blank before the history begins.
func spark(rates []float64, step float64) string {
	const cells = 30
	if step <= 0 {
		step = 5
	}
	perCell := max(1, int(300/step)/cells)
	out := []rune(strings.Repeat(" ", cells))
	top := math.Max(1, peak(rates))
	for c := cells - 1; c >= 0; c-- {
		end := len(rates) - (cells-1-c)*perCell
		if end <= 0 {
			break
		}
		var sum float64
		n := 0
		for i := max(0, end-perCell); i < end; i++ {
			sum += rates[i]
			n++
		}
		out[c] = blocks[int(math.Round(sum/float64(n)/top*float64(len(blocks)-1)))]
	}
	return string(out)
}

func peak(rates []float64) float64 {
	p := 0.0
	for _, r := range rates {
		p = math.Max(p, r)
	}
	return p
}

func last(rates []float64) float64 {
	if len(rates) == 0 {
		return 0
	}
	return rates[len(rates)-1]
}

func duration(s float64) string {
	d := time.Duration(s) * time.Second
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%.0fs", s)
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func noneIf(n int) string {
	if n == 0 {
		return "none"
	}
	return ""
}
