package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/edgecache/edgecache/internal/warm"
)

// Exit codes of `edgecache warm`.
const (
	warmExitDone        = 0   // every URL warmed
	warmExitFailed      = 1   // some URLs failed; they are listed
	warmExitCannotRun   = 2   // bad flags, unreadable list, state file problem
	warmExitInterrupted = 130 // SIGINT or SIGTERM; run again to resume
)

// warmFailuresShown is how many failures the summary lists; all of them
// are in the failure file.
const warmFailuresShown = 20

func init() {
	caddycmd.RegisterCommand(warmCommand)
}

var warmCommand = caddycmd.Command{
	Name:  "warm",
	Usage: "--from <urls.txt> [--via <listener URL>] [--concurrency <n>] [--retries <n>] [--timeout <duration>] [--state <file>] [--restart]",
	Short: "Requests every URL of a list through the proxy to fill its cache",
	Long: `
Requests every URL of a list through an edgecache listener so that the
responses are stored: the refresh listener (http://127.0.0.1:9000 by
default), which always fetches from the backend and overwrites the cached
entry, or the long-timeout listener (8009) to fill only what is missing.

The list (--from) has one URL per line: a path with its query
(/webclient/render_thumbnail/123/) or a full http(s) URL, of which only the
path and query are used. Blank lines and lines starting with # are skipped.
Each response body is read and discarded.

Connection errors, timeouts (--timeout per request), 5xx and 429 responses
are retried up to --retries times, with exponential backoff and jitter; other
4xx responses fail at once. Failed URLs are listed at the end and written to
<list>.warm-failed, itself a URL list for --from.

Progress (done/total, rate, ETA, errors) is redrawn on stderr when it is a
terminal, otherwise printed every few seconds.

Ctrl-C (or SIGTERM) stops cleanly: requests in flight are cancelled and the
lines done are kept in the state file (--state, default <list>.warm-state).
Running the same command again resumes where it stopped; --restart ignores
the state and starts over. The state file is removed once every URL is done.

Exit status: 0 all URLs warmed, 1 some failed, 2 the run could not be done
(bad flags, unreadable list or state file), 130 interrupted.`,
	CobraFunc: func(cmd *cobra.Command) {
		cmd.Flags().StringP("from", "f", "", "File listing the URLs to warm, one per line (required)")
		cmd.Flags().String("via", "http://127.0.0.1:9000", "Base URL of the proxy listener to send the requests to")
		cmd.Flags().String("host", "", "Host header to send, if not the one of --via")
		cmd.Flags().IntP("concurrency", "c", warm.DefaultConcurrency, "Number of requests in flight at most")
		cmd.Flags().Int("retries", warm.DefaultRetries, "Retries of a URL after a connection error, timeout, 5xx or 429")
		cmd.Flags().String("timeout", "15m", "Time limit of one request, body included")
		cmd.Flags().String("state", "", "State file recording the lines done (default <list>.warm-state)")
		cmd.Flags().Bool("restart", false, "Ignore the state of an earlier run and warm every URL")
		cmd.Flags().Bool("no-progress", false, "Show no progress, only failures and the summary")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdWarm)
	},
}

func cmdWarm(fl caddycmd.Flags) (int, error) {
	ctx, stop := untilInterrupted()
	defer stop()
	return runWarm(ctx, fl, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

// runWarm runs the warm command with its output on stderr.
func runWarm(ctx context.Context, fl caddycmd.Flags, stderr io.Writer, interactive bool) (int, error) {
	opts, err := warmOptions(fl)
	if err != nil {
		return warmExitCannotRun, err
	}
	if !fl.Bool("no-progress") {
		opts.Progress = stderr
		opts.Interactive = interactive
	}
	sum, err := warm.Run(ctx, opts)
	if err == nil && sum.Total == 0 {
		fmt.Fprintf(stderr, "no URL in %s\n", opts.URLsFile)
		return warmExitDone, nil
	}
	return warmOutcome(stderr, sum, err, "URLs")
}

// warmOutcome prints a run's summary and gives its exit status and error;
// what names the lines (URLs, keys).
func warmOutcome(stderr io.Writer, sum warm.Summary, err error, what string) (int, error) {
	printWarmSummary(stderr, sum)
	if err != nil {
		return warmExitCannotRun, err
	}
	switch {
	case sum.Interrupted:
		return warmExitInterrupted, fmt.Errorf("interrupted with %d of %d %s left; run the same command again to resume", sum.Remaining(), sum.Total, what)
	case len(sum.Failed) > 0:
		return warmExitFailed, fmt.Errorf("%d of %d %s failed; they are listed in %s", len(sum.Failed), sum.Total, what, sum.FailedFile)
	}
	return warmExitDone, nil
}

// warmOptions reads the flags.
func warmOptions(fl caddycmd.Flags) (warm.Options, error) {
	if fl.String("from") == "" {
		return warm.Options{}, errors.New("no URL list: give one with --from")
	}
	return requestOptions(fl, fl.String("from"))
}

// requestOptions reads the flags warm and refresh share, for the URL list
// at list.
func requestOptions(fl caddycmd.Flags, list string) (warm.Options, error) {
	opts := warm.Options{
		URLsFile:  list,
		Via:       fl.String("via"),
		Host:      fl.String("host"),
		StateFile: fl.String("state"),
		Restart:   fl.Bool("restart"),
	}
	var err error
	if opts.Concurrency, err = fl.GetInt("concurrency"); err != nil {
		return opts, err
	}
	if opts.Concurrency < 1 {
		return opts, fmt.Errorf("--concurrency %d: must be at least 1", opts.Concurrency)
	}
	if opts.Retries, err = fl.GetInt("retries"); err != nil {
		return opts, err
	}
	if opts.Retries < 0 {
		return opts, fmt.Errorf("--retries %d: must not be negative", opts.Retries)
	}
	timeout := fl.String("timeout")
	if opts.Timeout, err = caddy.ParseDuration(timeout); err != nil {
		return opts, fmt.Errorf("--timeout %q: %v", timeout, err)
	}
	if opts.Timeout <= 0 {
		return opts, fmt.Errorf("--timeout %q: must be positive", timeout)
	}
	return opts, nil
}

// printWarmSummary reports a run in a few lines.
func printWarmSummary(w io.Writer, sum warm.Summary) {
	if sum.Total == 0 {
		return // the run did not start
	}
	fmt.Fprintf(w, "warmed %d URLs (%s) in %s", sum.Succeeded, humanize.IBytes(uint64(sum.Bytes)), sum.Elapsed.Round(100*time.Millisecond))
	if sum.Skipped > 0 {
		fmt.Fprintf(w, "; %d were done by an earlier run", sum.Skipped)
	}
	fmt.Fprintf(w, "; %d of %d remain\n", sum.Remaining(), sum.Total)
	if len(sum.Failed) > 0 {
		fmt.Fprintf(w, "%d failed:\n", len(sum.Failed))
		for i, f := range sum.Failed {
			if i == warmFailuresShown {
				fmt.Fprintf(w, "  ... and %d more\n", len(sum.Failed)-i)
				break
			}
			attempts := ""
			if f.Attempts > 1 {
				attempts = fmt.Sprintf(" (%d attempts)", f.Attempts)
			}
			fmt.Fprintf(w, "  line %d %s: %v%s\n", f.Line, f.URL, f.Err, attempts)
		}
		fmt.Fprintf(w, "failed URLs are listed in %s\n", sum.FailedFile)
	}
	if sum.StateFile != "" {
		fmt.Fprintf(w, "state kept in %s: the next run with the same list resumes\n", sum.StateFile)
	}
}
