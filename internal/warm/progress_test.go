package warm

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress(nil, false, time.Second, 1000, 100)
	p.start = start
	p.succeeded.Store(190)
	p.failed.Store(10)
	// 200 completed in 30 s, but the rate looks back only to the newest
	// sample older than 10 s: 120 in the last 15 s
	p.rate(start.Add(5*time.Second), 20)
	p.rate(start.Add(15*time.Second), 80)
	if got, want := p.line(start.Add(30*time.Second)), "300/1000  30.0%, 8.0 URL/s, ETA 1m28s, 10 errors"; got != want {
		t.Errorf("plain line\n got %q\nwant %q", got, want)
	}

	p = newProgress(nil, true, time.Second, 8, 0)
	p.start = start
	p.succeeded.Store(4)
	if got, want := p.line(start.Add(2*time.Second)), "4/8 [############------------]  50.0%, 2.0 URL/s, ETA 2s, 0 errors"; got != want {
		t.Errorf("bar line\n got %q\nwant %q", got, want)
	}

	p = newProgress(nil, false, time.Second, 5, 0)
	p.start = start
	if got, want := p.line(start), "0/5   0.0%, 0.0 URL/s, ETA -, 0 errors"; got != want {
		t.Errorf("start line\n got %q\nwant %q", got, want)
	}
}

func TestRunProgressOutput(t *testing.T) {
	b := newBackend(t, nil)
	list := writeList(t, append(paths(3), "no-slash")...)
	for _, interactive := range []bool{false, true} {
		var out bytes.Buffer
		opts := testOptions(list, b.URL)
		opts.Progress = &out
		opts.Interactive = interactive
		opts.Restart = true
		if _, err := Run(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		for _, want := range []string{"failed: line 4 no-slash: want a path", "4/4 ", "100.0%", "1 errors"} {
			if !strings.Contains(got, want) {
				t.Errorf("interactive=%v: output lacks %q:\n%q", interactive, want, got)
			}
		}
		if interactive != strings.Contains(got, "\r\033[K") {
			t.Errorf("interactive=%v: output %q", interactive, got)
		}
		if !strings.HasSuffix(got, "\n") {
			t.Errorf("interactive=%v: output does not end its line: %q", interactive, got)
		}
	}
}
