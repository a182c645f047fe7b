package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// initialAge is how old a response already is when it arrives: its Age
// (the time it spent in caches upstream) plus the time the backend took to
// answer (RFC 9111 §4.2.3's corrected_age_value). The RFC's apparent_age
// (our clock minus the backend's Date) is left out on purpose: it measures
// the skew between two clocks as much as an age, and a backend a second
// behind would make every short lifetime expire on arrival. The current
// age of a stored response is this plus the time it has been resident, so
// it is computed once, at store time, and a hit only adds.
func initialAge(h http.Header, requested, received time.Time) time.Duration {
	var ageValue time.Duration
	if v, ok := ageHeader(h); ok {
		ageValue = time.Duration(v) * time.Second
	}
	delay := max(received.Sub(requested), 0)
	return min(ageValue+delay, maxDelta*time.Second)
}

// ageHeader reads Age as §5.1 asks: the first member of a list, and an
// invalid value is ignored.
func ageHeader(h http.Header) (int64, bool) {
	lines := h["Age"]
	if len(lines) == 0 {
		return 0, false
	}
	first, _, _ := strings.Cut(lines[0], ",")
	return parseDelta(strings.TrimSpace(first))
}

// dateOf is the response's Date, when it has exactly one valid one.
func dateOf(h http.Header, now time.Time) (time.Time, bool) {
	lines := h["Date"]
	if len(lines) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(lines[0], now)
}

// Age is the entry's current age (RFC 9111 §4.2.3) at now.
func (e *Entry) Age(now time.Time) time.Duration {
	return e.InitialAge + max(now.Sub(e.StoredAt), 0)
}

// AgeValue is the Age header value for a response served from the entry at
// now, in whole seconds. The string is kept per entry for the second it
// names, so hits within one second format it once and allocate nothing.
func (e *Entry) AgeValue(now time.Time) string {
	sec := min(int64(e.Age(now)/time.Second), maxDelta)
	if a := e.age.Load(); a != nil && a.sec == sec {
		return a.value
	}
	a := &ageString{sec: sec, value: strconv.FormatInt(sec, 10)}
	e.age.Store(a)
	return a.value
}

type ageString struct {
	sec   int64
	value string
}
