package testkit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// LockedBuffer collects a process's output, written from several
// goroutines (its stdout and stderr).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Metric is the sum of the samples of a Prometheus metric at url (an
// admin endpoint's /metrics) whose labels include every given
// label="value"; 0 when there are none.
func Metric(tb testing.TB, client *http.Client, url, name string, labels ...string) float64 {
	tb.Helper()
	resp, err := client.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	sum, _, err := SumMetric(string(body), name, labels...)
	if err != nil {
		tb.Fatal(err)
	}
	return sum
}

// SumMetric sums the samples of metric name in a Prometheus text
// exposition whose labels include every given label="value"; found is
// false when there are none.
func SumMetric(text, name string, labels ...string) (sum float64, found bool, err error) {
lines:
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || (!strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ")) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, false, fmt.Errorf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	return sum, found, nil
}
