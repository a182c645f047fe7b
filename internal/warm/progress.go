package warm

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rateWindow is how far back the rate (and so the ETA) looks, so that it
// follows changes of speed without jumping at every URL.
const rateWindow = 10 * time.Second

// barWidth is the number of cells of the interactive bar.
const barWidth = 24

// progress counts a run's outcomes and displays them on a writer: redrawn
// in place on a terminal, as a plain line at intervals otherwise.
type progress struct {
	w           io.Writer
	interactive bool
	interval    time.Duration
	total       int
	skipped     int
	start       time.Time

	succeeded atomic.Int64
	failed    atomic.Int64

	mu      sync.Mutex // serialises writes to w and guards below
	drawn   bool       // the interactive bar is on the current line
	samples []sample   // completions over the last rateWindow
}

type sample struct {
	at        time.Time
	completed int64
}

func newProgress(w io.Writer, interactive bool, interval time.Duration, total, skipped int) *progress {
	return &progress{w: w, interactive: interactive, interval: interval,
		total: total, skipped: skipped, start: time.Now()}
}

// run redraws until stop is closed, then draws a last time.
func (p *progress) run(stop <-chan struct{}) {
	if p.w == nil {
		return
	}
	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			p.draw(time.Now(), true)
			return
		case now := <-ticker.C:
			p.draw(now, false)
		}
	}
}

// draw shows the current state; last ends the interactive line.
func (p *progress) draw(now time.Time, last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.line(now)
	if p.interactive {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = !last
		if last {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintf(p.w, "warm: %s\n", line)
}

// message writes a line of its own, keeping the interactive bar below it.
func (p *progress) message(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.drawn {
		fmt.Fprint(p.w, p.line(time.Now()))
	}
}

// line renders the state: done/total, percentage, rate, ETA and errors.
// The caller holds p.mu.
func (p *progress) line(now time.Time) string {
	succeeded, failed := p.succeeded.Load(), p.failed.Load()
	completed := succeeded + failed
	processed := int64(p.skipped) + completed
	fraction := 1.0
	if p.total > 0 {
		fraction = float64(processed) / float64(p.total)
	}

	rate := p.rate(now, completed)
	eta := "-"
	if remaining := int64(p.total) - processed; remaining == 0 {
		eta = "0s"
	} else if rate > 0 {
		eta = (time.Duration(float64(remaining) / rate * float64(time.Second))).Round(time.Second).String()
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d ", processed, p.total)
	if p.interactive {
		filled := int(fraction * barWidth)
		b.WriteString("[" + strings.Repeat("#", filled) + strings.Repeat("-", barWidth-filled) + "] ")
	}
	fmt.Fprintf(&b, "%5.1f%%, %.1f URL/s, ETA %s, %d errors", fraction*100, rate, eta, failed)
	return b.String()
}

// rate is the completions per second over the last rateWindow (since the
// start while the run is younger than that). The caller holds p.mu.
func (p *progress) rate(now time.Time, completed int64) float64 {
	if len(p.samples) == 0 {
		p.samples = append(p.samples, sample{p.start, 0})
	}
	p.samples = append(p.samples, sample{now, completed})
	// keep as the base the newest sample older than the window
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) > rateWindow {
		p.samples = p.samples[1:]
	}
	oldest := p.samples[0]
	elapsed := now.Sub(oldest.at).Seconds()
	if elapsed <= 0 {
		return 0
	}
	return float64(completed-oldest.completed) / elapsed
}
