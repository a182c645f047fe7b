package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what the harness keeps of one wrk run.
type wrkResult struct {
	ReqPerSec float64
	P50, P99  time.Duration
	Requests  int64
	Errors    string // wrk's "Socket errors" line, if any
	Non2xx    int64  // wrk's "Non-2xx or 3xx responses"
}

// runWrk runs wrk with --latency against url, and the Lua script of
// script's path, if any.
func runWrk(ctx context.Context, url string, threads, connections int, duration time.Duration, nice int, script ...string) (wrkResult, string, error) {
	argv := []string{"wrk"}
	if nice != 0 {
		argv = []string{"nice", "-n", strconv.Itoa(nice), "wrk"}
	}
	args := append(argv[1:],
		"-t"+strconv.Itoa(threads),
		"-c"+strconv.Itoa(connections),
		"-d"+strconv.Itoa(int(duration.Round(time.Second)/time.Second))+"s")
	if len(script) > 0 {
		args = append(args, "-s", script[0])
	}
	cmd := exec.CommandContext(ctx, argv[0], append(args, "--latency", url)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, out.String(), fmt.Errorf("wrk: %w\n%s", err, out.String())
	}
	res, err := parseWrk(out.String())
	return res, out.String(), err
}

// parseWrk reads req/s, the 50% and 99% latencies, the request count and the
// error lines from wrk's --latency output.
func parseWrk(out string) (wrkResult, error) {
	var res wrkResult
	var haveRate, haveP50, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(fields) == 2:
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return res, fmt.Errorf("wrk output: bad Requests/sec %q", fields[1])
			}
			res.ReqPerSec, haveRate = v, true
		case len(fields) == 2 && (fields[0] == "50%" || fields[0] == "99%"):
			d, err := parseWrkDuration(fields[1])
			if err != nil {
				return res, fmt.Errorf("wrk output: %w", err)
			}
			if fields[0] == "50%" {
				res.P50, haveP50 = d, true
			} else {
				res.P99, haveP99 = d, true
			}
		case len(fields) >= 3 && fields[1] == "requests" && fields[2] == "in":
			n, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return res, fmt.Errorf("wrk output: bad request count %q", fields[0])
			}
			res.Requests = n
		case strings.HasPrefix(line, "Socket errors:"):
			res.Errors = strings.TrimSpace(strings.TrimPrefix(line, "Socket errors:"))
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(fields) == 5:
			n, err := strconv.ParseInt(fields[4], 10, 64)
			if err != nil {
				return res, fmt.Errorf("wrk output: bad non-2xx count %q", fields[4])
			}
			res.Non2xx = n
		}
	}
	if !haveRate || !haveP50 || !haveP99 {
		return res, fmt.Errorf("wrk output lacks Requests/sec or the 50%%/99%% latencies (was --latency given?):\n%s", out)
	}
	return res, nil
}

// parseWrkDuration reads wrk's latency format: a number and one of the units
// us, ms, s, m, h (wrk's format_time).
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{
		// Longest suffixes first: "ms" and "us" also end in "s".
		{"us", time.Microsecond},
		{"ms", time.Millisecond},
		{"s", time.Second},
		{"m", time.Minute},
		{"h", time.Hour},
	}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("bad latency %q", s)
		}
		return time.Duration(math.Round(v * float64(u.unit))), nil
	}
	return 0, fmt.Errorf("bad latency %q: unknown unit", s)
}
