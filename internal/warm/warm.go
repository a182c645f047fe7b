package warm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bitset"

	"golang.org/x/time/rate"
)

// outcome is what became of one URL.
type outcome struct {
	line     listLine
	attempts int
	err      error // nil on success
}

// Run warms every URL of opts.URLsFile not already done according to the
// state file, and returns what happened. Cancelling ctx stops the run
// cleanly: requests in flight are cancelled, the state is saved and the
// summary says Interrupted; a later Run with the same list resumes. An
// error is returned only when the run could not be done at all (unreadable
// list, bad options, state file not writable).
func Run(ctx context.Context, opts Options) (Summary, error) {
	started := time.Now()
	opts, via, err := opts.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	list, err := scanList(opts.URLsFile)
	if err != nil {
		return Summary{}, err
	}
	done := bitset.New(uint(list.lines + 1))
	var validSize int64
	if !opts.Restart {
		done, validSize, err = loadState(opts.StateFile, list)
		if err != nil {
			return Summary{}, err
		}
	}
	state, err := openStateLog(opts.StateFile, validSize, list)
	if err != nil {
		return Summary{}, fmt.Errorf("opening the state file: %v", err)
	}
	sum := Summary{Total: list.urls, Skipped: int(done.Count()), StateFile: opts.StateFile}

	// runCtx also ends when the state cannot be saved, as going on would
	// do work that a resumed run would do again
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var bytes atomic.Int64
	var limiter *rate.Limiter
	if opts.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(opts.Rate), 1)
	}
	f := &fetcher{limiter: limiter,
		client: opts.Client, host: opts.Host, timeout: opts.Timeout, retries: opts.Retries,
		retryWait: opts.RetryWait, maxRetryWait: opts.MaxRetryWait,
		bytes: func(n int64) { bytes.Add(n) },
	}
	interval := opts.PlainInterval
	if opts.Interactive {
		interval = opts.RedrawInterval
	}
	prog := newProgress(opts.Progress, opts.Interactive, interval, sum.Total, sum.Skipped)
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); prog.run(stopProgress) }()

	// feed the lines not done to the workers
	jobs := make(chan listLine)
	var feedErr error
	go func() {
		defer close(jobs)
		feedErr = feed(runCtx, opts.URLsFile, done, jobs)
	}()

	outcomes := make(chan outcome, opts.Concurrency)
	var workers sync.WaitGroup
	for range opts.Concurrency {
		workers.Go(func() {
			for line := range jobs {
				if runCtx.Err() != nil {
					continue // interrupted: leave the rest for the next run
				}
				o := outcome{line: line}
				if t, err := target(via, line.text); err != nil {
					o.err = err
				} else {
					o.attempts, o.err = f.fetch(runCtx, t)
				}
				outcomes <- o
			}
		})
	}
	go func() { workers.Wait(); close(outcomes) }()

	// record outcomes; only this goroutine writes the state
	var stateErr error
	syncTicker := time.NewTicker(stateSyncInterval)
	defer syncTicker.Stop()
	for pending := true; pending; {
		select {
		case o, ok := <-outcomes:
			if !ok {
				pending = false
				break
			}
			switch {
			case o.err == nil:
				sum.Succeeded++
				prog.succeeded.Add(1)
				if stateErr == nil {
					if err := state.markDone(o.line.num); err != nil {
						stateErr = err
						cancel()
					}
				}
			case runCtx.Err() != nil && errors.Is(o.err, runCtx.Err()):
				// cut short by the interruption: neither done nor failed
			default:
				sum.Failed = append(sum.Failed, Failure{Line: o.line.num, URL: o.line.text, Err: o.err, Attempts: o.attempts})
				prog.failed.Add(1)
				prog.message("failed: line %d %s: %v%s", o.line.num, o.line.text, o.err, attemptsNote(o.attempts))
			}
		case <-syncTicker.C:
			if stateErr == nil {
				if err := state.sync(); err != nil {
					stateErr = err
					cancel()
				}
			}
		}
	}
	if err := state.Close(); err != nil && stateErr == nil {
		stateErr = err
	}
	close(stopProgress)
	<-progressDone

	slices.SortFunc(sum.Failed, func(a, b Failure) int { return a.Line - b.Line })
	sum.Interrupted = ctx.Err() != nil
	sum.Bytes = bytes.Load()
	sum.Elapsed = time.Since(started)
	if stateErr != nil {
		return sum, fmt.Errorf("writing the state file %s: %v", opts.StateFile, stateErr)
	}
	if feedErr != nil && !sum.Interrupted {
		return sum, fmt.Errorf("reading %s: %v", opts.URLsFile, feedErr)
	}

	complete := !sum.Interrupted && len(sum.Failed) == 0
	if complete {
		// everything is warm: the next run starts over
		if err := os.Remove(opts.StateFile); err != nil {
			return sum, fmt.Errorf("removing the state file: %v", err)
		}
		sum.StateFile = ""
	}
	switch {
	case len(sum.Failed) > 0:
		if err := writeFailures(opts.FailedFile, sum.Failed); err != nil {
			return sum, fmt.Errorf("writing the failure list: %v", err)
		}
		sum.FailedFile = opts.FailedFile
	case complete:
		if err := os.Remove(opts.FailedFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return sum, fmt.Errorf("removing the failure list of an earlier run: %v", err)
		}
	}
	return sum, nil
}

func attemptsNote(attempts int) string {
	if attempts > 1 {
		return fmt.Sprintf(" (%d attempts)", attempts)
	}
	return ""
}

// feed sends every URL line of the list not marked done to jobs.
func feed(ctx context.Context, path string, done *bitset.BitSet, jobs chan<- listLine) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return eachLine(f, func(num int, line string) error {
		text := urlText(line)
		if text == "" || done.Test(uint(num)) {
			return nil
		}
		if ctx.Err() != nil {
			return errStop
		}
		select {
		case jobs <- listLine{num: num, text: text}:
			return nil
		case <-ctx.Done():
			return errStop
		}
	})
}

// writeFailures writes the failed lines as a URL list, each preceded by a
// comment giving its line number and error, so the file can be given to
// --from as it is.
func writeFailures(path string, failures []Failure) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# edgecache warm: %d URLs failed on %s\n", len(failures), time.Now().Format(time.RFC3339))
	for _, f := range failures {
		fmt.Fprintf(&b, "# line %d: %s%s\n%s\n", f.Line, oneLine(f.Err.Error()), attemptsNote(f.Attempts), f.URL)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// oneLine keeps an error message on one line of a list file.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
