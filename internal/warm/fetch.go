package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"

	"golang.org/x/time/rate"
)

// statusError is a response that is not a success (2xx or 3xx).
type statusError struct {
	status     string
	code       int
	retryAfter time.Duration // from a Retry-After header, 0 if none
}

func (e *statusError) Error() string { return "HTTP " + e.status }

// As lets backoff.Retry honour Retry-After (capped by the caller) while
// keeping this error as the one reported.
func (e *statusError) As(target any) bool {
	if ra, ok := target.(**backoff.RetryAfterError); ok && e.retryAfter > 0 {
		*ra = &backoff.RetryAfterError{Duration: e.retryAfter}
		return true
	}
	return false
}

// retryable reports whether another attempt may succeed: the backend or
// the proxy was failing or busy.
func (e *statusError) retryable() bool {
	return e.code >= 500 || e.code == http.StatusTooManyRequests
}

// fetcher requests URLs through the proxy listener.
type fetcher struct {
	client       *http.Client
	host         string
	timeout      time.Duration
	retries      int
	retryWait    time.Duration
	maxRetryWait time.Duration
	bytes        func(n int64)
	limiter      *rate.Limiter // nil: no bound on the rate
}

// fetch gets target, reading and discarding the body so that the proxy
// stores it, retrying with exponential backoff and jitter. It returns the
// number of attempts made and the last error, or ctx's error if ctx ended
// first.
func (f *fetcher) fetch(ctx context.Context, target string) (attempts int, err error) {
	policy := backoff.NewExponentialBackOff()
	policy.InitialInterval = f.retryWait
	policy.MaxInterval = f.maxRetryWait
	policy.Multiplier = 2
	policy.RandomizationFactor = 0.5

	attempt := func() (struct{}, error) {
		if f.limiter != nil {
			if err := f.limiter.Wait(ctx); err != nil {
				return struct{}{}, backoff.Permanent(ctx.Err())
			}
		}
		attempts++
		err := f.once(ctx, target)
		if err == nil {
			return struct{}{}, nil
		}
		if ctx.Err() != nil {
			return struct{}{}, backoff.Permanent(ctx.Err())
		}
		if se, ok := errors.AsType[*statusError](err); ok {
			if !se.retryable() {
				return struct{}{}, backoff.Permanent(err)
			}
			se.retryAfter = min(se.retryAfter, f.maxRetryWait)
		}
		return struct{}{}, err
	}
	_, err = backoff.Retry(ctx, attempt,
		backoff.WithBackOff(policy),
		backoff.WithMaxTries(uint(f.retries)+1),
		backoff.WithMaxElapsedTime(0))
	if ctx.Err() != nil {
		return attempts, ctx.Err()
	}
	return attempts, err
}

// once makes one attempt.
func (f *fetcher) once(ctx context.Context, target string) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return backoff.Permanent(err)
	}
	if f.host != "" {
		req.Host = f.host
	}
	req.Header.Set("User-Agent", "edgecache-warm")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("no complete response within %s", f.timeout)
		}
		if ue, ok := errors.AsType[*url.Error](err); ok {
			return ue.Err // the URL is reported next to the error already
		}
		return err
	}
	n, readErr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	f.bytes(n)
	if resp.StatusCode >= 400 {
		return &statusError{status: resp.Status, code: resp.StatusCode,
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	}
	if readErr != nil {
		if errors.Is(readErr, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("no complete response within %s", f.timeout)
		}
		return fmt.Errorf("reading the body: %v", readErr)
	}
	return nil
}

// parseRetryAfter reads a Retry-After header in seconds; the HTTP-date
// form is rare on 429/503 and is ignored (the backoff applies).
func parseRetryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(v)
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}
