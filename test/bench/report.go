package main

import (
	"fmt"
	"strings"
	"time"
)

// summary is a target's mean over the rounds of one load part.
type summary struct {
	reqPerSec float64
	p50, p99  time.Duration
	rounds    []float64
	origin    int64
	foreign   float64 // the most CPU other processes took in a round
	cpu       float64 // µs of CPU per request, mean over the rounds that measured it
	problems  []string
}

func summarize(runs []loadRun) (summary, bool) {
	if len(runs) == 0 {
		return summary{}, false
	}
	var s summary
	var p50, p99 time.Duration
	cpuRounds := 0
	for _, r := range runs {
		if r.cpuPerRequest > 0 {
			s.cpu += r.cpuPerRequest
			cpuRounds++
		}
		s.reqPerSec += r.ReqPerSec
		p50 += r.P50
		p99 += r.P99
		s.rounds = append(s.rounds, r.ReqPerSec)
		s.origin += r.originRequests
		s.foreign = max(s.foreign, r.foreignCPU)
		if r.Errors != "" && r.Errors != "connect 0, read 0, write 0, timeout 0" {
			s.problems = append(s.problems, "socket errors: "+r.Errors)
		}
		if r.Non2xx > 0 {
			s.problems = append(s.problems, fmt.Sprintf("%d non-2xx answers", r.Non2xx))
		}
	}
	n := len(runs)
	if cpuRounds > 0 {
		s.cpu /= float64(cpuRounds)
	}
	s.reqPerSec /= float64(n)
	s.p50 = p50 / time.Duration(n)
	s.p99 = p99 / time.Duration(n)
	return s, true
}

// reportLoad prints the table of one load part and the goals that apply.
func (b *bench) reportLoad(part, label string, targets []*target, runs map[string][]loadRun) {
	w := b.out
	fmt.Fprintf(w, "\n## %s cache hits\n\n", label)
	fmt.Fprintf(w, "wrk -t%d -c%d -d%s --latency, %d round(s) in alternation; means over the rounds.\n\n",
		b.opt.threads, b.opt.connections, b.opt.duration, b.opt.rounds)
	fmt.Fprintln(w, "| target | req/s | p50 | p99 | CPU µs/req | req/s per round | origin requests | other CPU | notes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---:|---:|---|")
	sums := map[string]summary{}
	busy := false
	for _, t := range targets {
		if t.unavailable != "" {
			fmt.Fprintf(w, "| %s | unavailable | | | | | | | %s |\n", t.label, mdEscape(t.unavailable))
			continue
		}
		s, ok := summarize(runs[t.name])
		if !ok {
			continue
		}
		sums[t.name] = s
		var perRound []string
		for _, r := range s.rounds {
			perRound = append(perRound, fmtRate(r))
		}
		origin := "-"
		if t.name != nameOrigin && t.name != nameBound {
			origin = fmt.Sprint(s.origin)
		}
		notes := append(append([]string(nil), t.warnings...), s.problems...)
		if s.foreign > busyShare {
			busy = true
		}
		cpu := "-"
		if s.cpu > 0 {
			cpu = fmt.Sprintf("%.0f", s.cpu)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %.0f%% | %s |\n", t.label, fmtRate(s.reqPerSec), fmtDur(s.p50), fmtDur(s.p99),
			cpu, strings.Join(perRound, " / "), origin, 100*s.foreign, mdEscape(strings.Join(notes, "; ")))
	}

	fmt.Fprintln(w, "\n\"origin requests\": requests that reached the origin during the runs (0 for pure cache hits). "+
		"\"other CPU\": the largest share of the machine's CPU that processes outside the benchmark used during a run. "+
		"\"CPU µs/req\": the CPU time (user and system, from /proc) of the target's processes during the runs, per request; "+
		"the origin's includes the harness's own. Other processes disturb it less than req/s.")
	if busy {
		fmt.Fprintf(w, "\n**Warning: other processes used more than %.0f%% of the CPU during some runs; these figures understate every target. Rerun on an idle machine.**\n", 100*busyShare)
	}
	edge, haveEdge := sums[nameEdgecache]
	nginx, haveNginx := sums[nameNginx]
	ceiling, haveCeiling := sums[nameCeiling]
	if !haveEdge {
		fmt.Fprintln(w, "\nGoals not checked: edgecache was not measured.")
		return
	}
	fmt.Fprintln(w)
	if haveNginx {
		// Issue 24's goals: memory hits 0.9× nginx's at 10 KiB and 1.3×
		// at 1 MiB, disk hits 0.9× and 1.0×; p99 at 10 KiB at most 1.5×.
		goal, diskGoal := 0.9, 0.9
		if part == "1m" {
			goal, diskGoal = 1.3, 1.0
		}
		fmt.Fprintln(w, goalLine("edgecache / nginx req/s", edge.reqPerSec/nginx.reqPerSec, goal))
		disk, haveDisk := sums[nameEdgeDisk]
		if haveDisk {
			fmt.Fprintln(w, goalLine("edgecache disk zone / nginx req/s", disk.reqPerSec/nginx.reqPerSec, diskGoal))
		}
		if part == "10k" {
			fmt.Fprintln(w, p99Line("edgecache", edge.p99, nginx.p99))
			if haveDisk {
				fmt.Fprintln(w, p99Line("edgecache disk zone", disk.p99, nginx.p99))
			}
		}
		if edge.cpu > 0 && nginx.cpu > 0 {
			line := fmt.Sprintf("- CPU per request, edgecache / nginx: %.2f×", edge.cpu/nginx.cpu)
			if haveDisk && disk.cpu > 0 {
				line += fmt.Sprintf("; disk zone / nginx: %.2f×", disk.cpu/nginx.cpu)
			}
			fmt.Fprintln(w, line)
		}
	}
	if bound, ok := sums[nameBound]; ok && bound.reqPerSec > 0 {
		fmt.Fprintln(w, boundLine(part, edge, sums[nameEdgeDisk], bound, nginx, haveNginx))
	}
	if haveCeiling {
		ratio := edge.reqPerSec / ceiling.reqPerSec
		if part == "10k" {
			fmt.Fprintln(w, goalLine("edgecache / ceiling req/s", ratio, 1.0))
		} else {
			fmt.Fprintf(w, "- edgecache / ceiling req/s: %.2f× (no goal at 1 MiB)\n", ratio)
		}
		met := "met"
		if edge.p99 > ceiling.p99 {
			met = "NOT met"
		}
		fmt.Fprintf(w, "- edgecache p99 %s vs ceiling p99 %s (goal: no worse): %s\n", fmtDur(edge.p99), fmtDur(ceiling.p99), met)
	}
}

// boundLine compares edgecache with the bound (bound.go): how much of the
// gap to nginx is net/http's, and how much is Caddy's and edgecache's.
func boundLine(part string, edge, disk, bound, nginx summary, haveNginx bool) string {
	line := fmt.Sprintf("- net/http bound: edgecache / bound req/s: %.2f×", edge.reqPerSec/bound.reqPerSec)
	if disk.reqPerSec > 0 {
		line += fmt.Sprintf(", disk zone %.2f×", disk.reqPerSec/bound.reqPerSec)
	}
	if haveNginx && nginx.reqPerSec > 0 {
		line += fmt.Sprintf("; the bound itself / nginx: %.2f× req/s", bound.reqPerSec/nginx.reqPerSec)
		if part == "10k" && nginx.p99 > 0 {
			line += fmt.Sprintf(", p99 %.2f×", float64(bound.p99)/float64(nginx.p99))
		}
		line += " (no net/http server passes it)"
	}
	return line
}

// p99Line checks a p99 against issue 24's goal: at most 1.5× nginx's.
func p99Line(what string, p99, nginx time.Duration) string {
	ratio := float64(p99) / float64(nginx)
	met := "met"
	if ratio > 1.5 {
		met = "NOT met"
	}
	return fmt.Sprintf("- %s p99 %s vs nginx p99 %s: %.2f× (goal ≤ 1.50×): %s", what, fmtDur(p99), fmtDur(nginx), ratio, met)
}

// busyShare is the share of CPU used by other processes above which a
// table is flagged as measured on a busy machine.
const busyShare = 0.05

func goalLine(what string, ratio, goal float64) string {
	met := "met"
	if ratio < goal {
		met = "NOT met"
	}
	return fmt.Sprintf("- %s: %.2f× (goal ≥ %.2f×): %s", what, ratio, goal, met)
}

// fmtRate prints a rate with a thousands separator: 38,064.
func fmtRate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// fmtDur prints a latency in ms with two decimals, or in s when long.
func fmtDur(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
