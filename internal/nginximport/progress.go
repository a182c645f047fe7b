package nginximport

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
)

// progress shows files and bytes done, the rate and the ETA: redrawn in
// place on a terminal, a plain line at intervals otherwise.
type progress struct {
	w           io.Writer
	interactive bool
	interval    time.Duration
	files       int64
	bytes       int64
	start       time.Time

	doneFiles atomic.Int64
	doneBytes atomic.Int64
	mu        sync.Mutex
}

func newProgress(w io.Writer, interactive bool, interval time.Duration, files, bytes int64) *progress {
	return &progress{w: w, interactive: interactive, interval: interval, files: files, bytes: bytes, start: time.Now()}
}

func (p *progress) add(size int64) {
	p.doneFiles.Add(1)
	p.doneBytes.Add(size)
}

// run draws until stop is closed, then a last time.
func (p *progress) run(stop <-chan struct{}) {
	if p.w == nil {
		<-stop
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			p.draw(true)
			return
		case <-t.C:
			p.draw(false)
		}
	}
}

func (p *progress) draw(last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := p.line(time.Since(p.start))
	if p.interactive {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		if last {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintf(p.w, "import-nginx: %s\n", line)
}

// line is "files done/total, bytes done/total, files/s, MB/s, ETA".
func (p *progress) line(elapsed time.Duration) string {
	files, bytes := p.doneFiles.Load(), p.doneBytes.Load()
	secs := elapsed.Seconds()
	var fileRate, byteRate float64
	if secs > 0 {
		fileRate, byteRate = float64(files)/secs, float64(bytes)/secs
	}
	eta := "-"
	switch {
	case files >= p.files:
		eta = "0s"
	case byteRate > 0 && p.bytes > 0:
		eta = time.Duration(float64(p.bytes-bytes) / byteRate * float64(time.Second)).Round(time.Second).String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d files, %s/%s", files, p.files, humanize.IBytes(uint64(bytes)), humanize.IBytes(uint64(p.bytes)))
	if p.interactive && p.files > 0 {
		const width = 24
		filled := int(float64(files) / float64(p.files) * width)
		b.WriteString(" [" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]")
	}
	fmt.Fprintf(&b, ", %.0f files/s, %.1f MB/s, ETA %s", fileRate, byteRate/1e6, eta)
	return b.String()
}

// WriteSummary prints the outcome: imported, one "skipped <reason>: N"
// line per reason, failures and bytes.
func (s Summary) WriteSummary(w io.Writer) {
	verb := "imported"
	if s.DryRun {
		verb = "would import (dry run, nothing written)"
	}
	fmt.Fprintf(w, "%s: %d entries, %s, of %d files in %s\n", verb, s.Imported, humanize.IBytes(uint64(s.Bytes)), s.Files, s.Elapsed.Round(time.Millisecond))
	reasons := make([]string, 0, len(s.Skipped))
	for r, n := range s.Skipped {
		if n > 0 {
			reasons = append(reasons, r)
		}
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "skipped %s: %d\n", r, s.Skipped[r])
	}
	if s.Failed > 0 {
		fmt.Fprintf(w, "failed: %d (first: %v)\n", s.Failed, s.FirstError)
	}
	if s.Interrupted {
		fmt.Fprintln(w, "interrupted: run the same command again to resume (entries already imported are skipped)")
	}
}
