package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A shared machine skews every figure. cpuSample lets a run tell how much
// of the CPU went to processes that are not part of the benchmark: the
// machine's busy time (/proc/stat) minus the time of the harness, its
// children (wrk) and the servers it started (their process groups).
type cpuSample struct {
	busy, total uint64 // whole machine, in clock ticks
	ours        uint64
}

func (b *bench) sampleCPU() (cpuSample, error) {
	var s cpuSample
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:9] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
		s.total += v
		if i != 3 && i != 4 {
			s.busy += v
		}
	}

	groups := map[int]bool{syscall.Getpgrp(): true}
	b.ps.mu.Lock()
	for _, p := range b.ps.list {
		groups[p.cmd.Process.Pid] = true
	}
	b.ps.mu.Unlock()
	self := os.Getpid()
	for _, p := range procStats() {
		if !groups[p.pgrp] {
			continue
		}
		s.ours += p.cpu
		if p.pid == self {
			// wrk has been waited for: its time is in our children's.
			s.ours += p.children
		}
	}
	return s, nil
}

// clockTicks is the unit of /proc's CPU times (USER_HZ: 100 on every
// Linux architecture Go supports).
const clockTicks = 100

// cpuTicks is the CPU time (user and system, in clock ticks) used so far by
// the target's processes: its process group (nginx's master and workers),
// or this process for the in-process origin (wrk, a child, is counted
// apart until it is waited for). Divided by the requests of a run, it is
// the CPU per request, which other processes on the machine disturb less
// than req/s.
func (t *target) cpuTicks() uint64 {
	pgrp := os.Getpid()
	if t.proc != nil {
		pgrp = t.proc.cmd.Process.Pid
	}
	var ticks uint64
	for _, p := range procStats() {
		if (t.proc != nil && p.pgrp == pgrp) || (t.proc == nil && p.pid == pgrp) {
			ticks += p.cpu
		}
	}
	return ticks
}

// procStat is what the harness reads of a process's /proc/<pid>/stat: its
// group, and its CPU time and its waited-for children's, in clock ticks.
type procStat struct {
	pid, pgrp     int
	cpu, children uint64
}

// procStats reads every process's stat.
func procStats() []procStat {
	var out []procStat
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// The command name is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 15 {
			continue
		}
		var p procStat
		p.pid, _ = strconv.Atoi(filepath.Base(filepath.Dir(path)))
		p.pgrp, _ = strconv.Atoi(f[2])
		utime, _ := strconv.ParseUint(f[11], 10, 64)
		stime, _ := strconv.ParseUint(f[12], 10, 64)
		cutime, _ := strconv.ParseUint(f[13], 10, 64)
		cstime, _ := strconv.ParseUint(f[14], 10, 64)
		p.cpu, p.children = utime+stime, cutime+cstime
		out = append(out, p)
	}
	return out
}

// foreignShare is the share of the machine's CPU (0..1) that other processes
// used between two samples.
func foreignShare(before, after cpuSample) float64 {
	total := float64(after.total - before.total)
	if total <= 0 {
		return 0
	}
	foreign := float64(after.busy-before.busy) - float64(after.ours-before.ours)
	return max(0, foreign/total)
}

// waitIdle waits, up to -wait-idle, until other processes use less than
// busyShare of the CPU over a second, so that a run starts on a quiet machine.
func (b *bench) waitIdle(ctx context.Context) error {
	if b.opt.waitIdle <= 0 {
		return nil
	}
	deadline := time.Now().Add(b.opt.waitIdle)
	for waited := false; ; waited = true {
		before, err := b.sampleCPU()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		after, err := b.sampleCPU()
		if err != nil {
			return err
		}
		share := foreignShare(before, after)
		if share <= busyShare {
			if waited {
				b.logf("machine quiet again (other processes %.0f%%)", 100*share)
			}
			return nil
		}
		if time.Now().After(deadline) {
			b.logf("warning: other processes still use %.0f%% of the CPU after waiting %s; running anyway", 100*share, b.opt.waitIdle)
			return nil
		}
		if !waited {
			b.logf("other processes use %.0f%% of the CPU; waiting up to %s for a quiet machine", 100*share, b.opt.waitIdle)
		}
	}
}

// reniceSelf gives every thread of the harness (the origin runs here) the
// priority nice; threads made later inherit it from their creators.
func reniceSelf(nice int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
			return fmt.Errorf("-nice %d: %w (lowering the nice value needs root)", nice, err)
		}
	}
	return nil
}

// reniceSession sets the Linux autogroup nice of the harness's session and
// returns a function that restores it. Where sched_autogroup is on (most
// desktop and many server kernels), each session's processes compete as
// one group, and plain nice only orders processes inside the session.
func reniceSession(nice int) (restore func(), err error) {
	const path = "/proc/self/autogroup"
	old, err := os.ReadFile(path) // "/autogroup-5 nice 0"
	if os.IsNotExist(err) {
		return func() {}, nil // no autogroup scheduling here
	}
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(string(old))
	if len(fields) != 3 || fields[1] != "nice" {
		return nil, fmt.Errorf("%s: unexpected %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(nice)), 0); err != nil {
		return nil, fmt.Errorf("-nice %d: %w", nice, err)
	}
	return func() { os.WriteFile(path, []byte(fields[2]), 0) }, nil
}
