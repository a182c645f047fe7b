package testkit

import (
	"fmt"
	"testing"
	"time"
)

// pollInterval is how often Wait checks its condition.
const pollInterval = 10 * time.Millisecond

// Wait calls check every pollInterval until it returns "" (the condition
// holds) and returns how long that took; check's message says what is
// still missing. After within, it returns an error with the last message.
func Wait(within time.Duration, check func() string) (time.Duration, error) {
	start := time.Now()
	for {
		msg := check()
		if msg == "" {
			return time.Since(start), nil
		}
		if time.Since(start) > within {
			return time.Since(start), fmt.Errorf("after %s: %s", within, msg)
		}
		time.Sleep(pollInterval)
	}
}

// Eventually is Wait that fails the test when within passes first.
func Eventually(tb testing.TB, within time.Duration, check func() string) time.Duration {
	tb.Helper()
	took, err := Wait(within, check)
	if err != nil {
		tb.Fatal(err)
	}
	return took
}

// Holds turns a yes-or-no condition into a check for Wait and Eventually;
// what names the condition in the failure.
func Holds(what string, cond func() bool) func() string {
	return func() string {
		if cond() {
			return ""
		}
		return "not yet: " + what
	}
}
