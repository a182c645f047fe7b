package main

import (
	"testing"
	"time"
)

// wrk 4.1.0 output, as printed with --latency.
const wrkSample = `Running 10s test @ http://127.0.0.1:41234/10k
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.37ms    1.02ms  31.68ms   91.39%
    Req/Sec    19.13k     1.58k   22.07k    72.00%
  Latency Distribution
     50%    1.14ms
     75%    1.52ms
     90%    2.11ms
     99%    4.53ms
  380712 requests in 10.00s, 3.77GB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 17
Requests/sec:  38064.51
Transfer/sec:    386.12MB
`

func TestParseWrk(t *testing.T) {
	res, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{
		ReqPerSec: 38064.51,
		P50:       1140 * time.Microsecond,
		P99:       4530 * time.Microsecond,
		Requests:  380712,
		Errors:    "connect 0, read 3, write 0, timeout 2",
		Non2xx:    17,
	}
	if res != want {
		t.Errorf("parseWrk = %+v, want %+v", res, want)
	}
}

func TestParseWrkRejectsOutputWithoutLatency(t *testing.T) {
	if _, err := parseWrk("Running 10s test @ http://x/\nRequests/sec:  1.00\n"); err == nil {
		t.Error("parseWrk accepted output without the latency distribution")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"812.00us": 812 * time.Microsecond,
		"4.53ms":   4530 * time.Microsecond,
		"1.20s":    1200 * time.Millisecond,
		"2.00m":    2 * time.Minute,
		"1.00h":    time.Hour,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ms", "12", "1.5xs", "-1ms"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) succeeded", bad)
		}
	}
}
