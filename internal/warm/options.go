package warm

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultConcurrency    = 4
	DefaultRetries        = 3
	DefaultTimeout        = 15 * time.Minute // the long-timeout listener allows 900 s
	DefaultRetryWait      = time.Second
	DefaultMaxRetryWait   = time.Minute
	DefaultRedrawInterval = 200 * time.Millisecond
	DefaultPlainInterval  = 5 * time.Second

	// StateSuffix and FailedSuffix are appended to the URL list's name
	// to name the state and failure files when none is given.
	StateSuffix  = ".warm-state"
	FailedSuffix = ".warm-failed"
)

// Options configure one warming run.
type Options struct {
	// URLsFile is the URL list: one URL path (/webclient/...) or full
	// http(s) URL per line; blank lines and lines starting with # are
	// skipped. Only the path and query of a full URL are used.
	URLsFile string

	// Via is the base URL of the proxy listener every request is sent to,
	// e.g. http://127.0.0.1:9000. A path in it is prefixed to each URL.
	Via string

	// Host, if set, is sent as the Host header instead of Via's host.
	Host string

	// Concurrency is the number of requests in flight at most.
	Concurrency int

	// Rate, when positive, is the most requests started per second
	// (retries included), so that a refresh does not load the backend
	// more than it can take beside the visitors.
	Rate float64

	// Retries is how many times a URL is retried after a connection error,
	// a timeout, a 5xx or a 429 response; zero means never (unlike the
	// other fields, zero is not replaced by a default: use DefaultRetries).
	Retries int

	// Timeout bounds one request, body included.
	Timeout time.Duration

	// RetryWait and MaxRetryWait bound the exponential backoff (with
	// jitter) between attempts at the same URL.
	RetryWait    time.Duration
	MaxRetryWait time.Duration

	// StateFile records the line numbers done; default URLsFile+StateSuffix.
	StateFile string

	// FailedFile lists the lines that failed in this run; default
	// URLsFile+FailedSuffix. It is itself a valid URL list.
	FailedFile string

	// Restart ignores (and replaces) an existing state file.
	Restart bool

	// Progress receives the progress display and failure messages;
	// nil shows nothing.
	Progress io.Writer

	// Interactive redraws a one-line progress bar in place every
	// RedrawInterval (for a terminal); otherwise a plain progress line
	// is written every PlainInterval.
	Interactive    bool
	RedrawInterval time.Duration
	PlainInterval  time.Duration

	// Client sends the requests; nil uses a client made for warming
	// (no redirects followed, no transparent decompression).
	Client *http.Client
}

// withDefaults returns a copy of o with zero fields filled and checks it.
func (o Options) withDefaults() (Options, *url.URL, error) {
	if o.URLsFile == "" {
		return o, nil, fmt.Errorf("no URL list given")
	}
	if o.Via == "" {
		return o, nil, fmt.Errorf("no proxy listener (via) given")
	}
	via, err := url.Parse(o.Via)
	if err != nil {
		return o, nil, fmt.Errorf("via %q: %v", o.Via, err)
	}
	if via.Scheme != "http" && via.Scheme != "https" || via.Host == "" {
		return o, nil, fmt.Errorf("via %q: want an http:// or https:// URL with a host, like http://127.0.0.1:9000", o.Via)
	}
	if via.RawQuery != "" || via.Fragment != "" {
		return o, nil, fmt.Errorf("via %q: must not have a query or fragment", o.Via)
	}
	via.Path = strings.TrimSuffix(via.Path, "/")
	via.RawPath = strings.TrimSuffix(via.RawPath, "/")
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Rate < 0 {
		return o, nil, fmt.Errorf("rate %g: must not be negative", o.Rate)
	}
	if o.Concurrency < 0 {
		return o, nil, fmt.Errorf("concurrency %d: must be at least 1", o.Concurrency)
	}
	if o.Retries < 0 {
		return o, nil, fmt.Errorf("retries %d: must not be negative", o.Retries)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryWait == 0 {
		o.RetryWait = DefaultRetryWait
	}
	if o.MaxRetryWait == 0 {
		o.MaxRetryWait = DefaultMaxRetryWait
	}
	if o.MaxRetryWait < o.RetryWait {
		o.MaxRetryWait = o.RetryWait
	}
	if o.RedrawInterval == 0 {
		o.RedrawInterval = DefaultRedrawInterval
	}
	if o.PlainInterval == 0 {
		o.PlainInterval = DefaultPlainInterval
	}
	if o.StateFile == "" {
		o.StateFile = o.URLsFile + StateSuffix
	}
	if o.FailedFile == "" {
		o.FailedFile = o.URLsFile + FailedSuffix
	}
	if o.Client == nil {
		o.Client = newClient(o.Concurrency)
	}
	return o, via, nil
}

// newClient returns the HTTP client used to warm: redirects are not
// followed (a 3xx is the proxy's answer to store, and its Location may
// point away from the listener), and no Accept-Encoding is sent so the
// proxy stores the identity encoding that every client accepts.
func newClient(concurrency int) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableCompression = true
	transport.MaxIdleConnsPerHost = concurrency
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Failure is one URL that could not be warmed.
type Failure struct {
	Line     int    // 1-based line number in the URL list
	URL      string // the line as written in the list
	Err      error
	Attempts int
}

// Summary reports a run.
type Summary struct {
	Total       int // URLs in the list
	Skipped     int // done by an earlier run, according to the state file
	Succeeded   int // warmed by this run
	Failed      []Failure
	Interrupted bool  // the context was cancelled before the end
	Bytes       int64 // response body bytes read
	Elapsed     time.Duration

	StateFile  string // the state file, "" if removed because everything is done
	FailedFile string // the failure list, "" if there was no failure
}

// Remaining is the number of URLs not yet warmed, failures included.
func (s Summary) Remaining() int {
	return s.Total - s.Skipped - s.Succeeded
}
