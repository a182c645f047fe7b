// Command bench measures edgecache against the nginx proxy_cache it replaces,
// on this machine, under the same load, side by side.
//
// Run it from the repository root with one command:
//
//	go run ./test/bench > bench.md
//
// It needs nginx and wrk (Debian: apt-get install -y nginx-light wrk) and
// installs nothing. It builds ./cmd/edgecache, starts an origin that answers
// like OMERO.web (cache-hostile headers), nginx with a proxy_cache disk zone,
// Caddy's respond (the ceiling for any Caddy handler) and edgecache, all on
// free ports of 127.0.0.1, then runs:
//
//	10k       wrk on 10 KiB cache hits, each target in turn, -rounds times
//	1m        the same with 1 MiB bodies
//	stampede  -stampede-clients cold requests at once for one new URL whose
//	          origin answer takes -stampede-delay: backend requests, latencies
//	memory    an edgecache memory zone of -memory-zone filled with twice its
//	          size in distinct keys; the process RSS against the zone size
//	fleet     three edgecache proxies sharing one redis-server against three
//	          independent ones: origin requests, hit ratio, a spread
//	          stampede, the latency of hits from Redis, local hit req/s with
//	          and without a shared block (needs redis-server; see fleet.go)
//	tags      a soft purge by tag of 1,000 hot keys under wrk load: the
//	          MISSes it causes (goal 0) and the origin requests (goal 1,000)
//
// and prints markdown tables with the goals on standard output (progress goes
// to standard error). A full run takes about four minutes on a quiet machine,
// plus the first build of edgecache. Useful flags:
//
//	-only 10k,stampede   run some parts only
//	-duration 5s -rounds 1 -connections 50 -threads 2
//	-log                 access logs with the cache status on nginx and edgecache
//	-pprof cpu.out       CPU profile of edgecache during its first 10 KiB run
//	                     (and cpu-disk.out, of the disk zone's)
//	-keep                keep the temporary folder (configs, logs, nginx cache)
//	-bin path            use this edgecache binary instead of building one
//	-env GOGC=50         extra environment for edgecache (GC tuning)
//	-wait-idle 10m       on a shared machine, wait for quiet before each run
//	                     and repeat runs that others disturbed (up to 4 tries)
//	-nice -20            (root) run everything under test ahead of other
//	                     processes: nice, and the session's Linux autogroup nice
//
// Every process it starts is stopped when it ends, also on Ctrl-C or panic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

// options are the command-line flags.
type options struct {
	duration        time.Duration
	connections     int
	threads         int
	rounds          int
	parts           map[string]bool
	keep            bool
	accessLog       bool
	pprofPath       string
	bin             string
	loadZone        string
	memoryZone      string
	stampedeClients int
	stampedeDelay   time.Duration
	edgeEnv         []string // extra environment for edgecache, e.g. GOGC=50
	waitIdle        time.Duration
	nice            int
}

var allParts = []string{"10k", "1m", "stampede", "memory", "fleet", "tags"}

func parseFlags() (options, error) {
	var o options
	var only, edgeEnv string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run")
	flag.IntVar(&o.connections, "connections", 50, "wrk connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.rounds, "rounds", 2, "times each target is measured, in alternation")
	flag.StringVar(&only, "only", strings.Join(allParts, ","), "parts to run, comma-separated: "+strings.Join(allParts, ", "))
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder")
	flag.BoolVar(&o.accessLog, "log", false, "access logs with the cache status on nginx and edgecache")
	flag.StringVar(&o.pprofPath, "pprof", "", "write a CPU profile of edgecache during its first 10 KiB run to this file, and of the disk zone's beside it (name-disk.ext)")
	flag.StringVar(&o.bin, "bin", "", "edgecache binary to use (default: go build ./cmd/edgecache)")
	flag.StringVar(&o.loadZone, "load-zone", "2GiB", "edgecache memory zone size for the 10k, 1m and stampede parts")
	flag.StringVar(&o.memoryZone, "memory-zone", "256MiB", "edgecache memory zone size for the memory part")
	flag.IntVar(&o.stampedeClients, "stampede-clients", 100, "concurrent cold requests in the stampede part")
	flag.DurationVar(&o.stampedeDelay, "stampede-delay", 500*time.Millisecond, "origin answer time in the stampede part")
	flag.StringVar(&edgeEnv, "env", "", "extra environment for the edgecache processes, comma-separated, e.g. GOGC=50,GOMEMLIMIT=300MiB")
	flag.DurationVar(&o.waitIdle, "wait-idle", 0, "before each wrk run, wait up to this long for other processes to leave the CPU idle, and repeat disturbed runs (for shared machines)")
	flag.IntVar(&o.nice, "nice", 0, "run the servers, wrk and the origin at this nice value, e.g. -20 (root), and give the session's autogroup the same, to keep other processes on a shared machine from skewing the figures")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	for _, kv := range strings.Split(edgeEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return o, fmt.Errorf("-env: %q is not NAME=value", kv)
		}
		o.edgeEnv = append(o.edgeEnv, kv)
	}

	o.parts = map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		known := false
		for _, a := range allParts {
			known = known || p == a
		}
		if !known {
			return o, fmt.Errorf("-only: unknown part %q (want some of %s)", p, strings.Join(allParts, ","))
		}
		o.parts[p] = true
	}
	switch {
	case len(o.parts) == 0:
		return o, errors.New("-only: no part given")
	case o.duration < time.Second:
		return o, errors.New("-duration: at least 1s (wrk counts whole seconds)")
	case o.connections < 1 || o.threads < 1 || o.threads > o.connections:
		return o, errors.New("-connections and -threads: at least 1 thread, and no more threads than connections")
	case o.rounds < 1:
		return o, errors.New("-rounds: at least 1")
	case o.nice < -20 || o.nice > 19:
		return o, errors.New("-nice: between -20 and 19")
	case o.stampedeClients < 1:
		return o, errors.New("-stampede-clients: at least 1")
	case o.stampedeDelay <= 0:
		return o, errors.New("-stampede-delay: must be positive")
	}
	for flagName, size := range map[string]string{"-load-zone": o.loadZone, "-memory-zone": o.memoryZone} {
		if _, err := humanize.ParseBytes(size); err != nil {
			return o, fmt.Errorf("%s: %v", flagName, err)
		}
	}
	return o, nil
}

// checkTools makes sure the external programs the chosen parts need are
// installed, and says how to install them if not.
func checkTools(o options) error {
	var missing []string
	needNginx := o.parts["10k"] || o.parts["1m"] || o.parts["stampede"]
	if needNginx {
		if _, err := nginxPath(); err != nil {
			missing = append(missing, "nginx (Debian/Ubuntu: apt-get install -y nginx-light, or nginx)")
		}
	}
	if o.parts["fleet"] {
		for _, p := range []string{"redis-server", "redis-cli"} {
			if _, err := exec.LookPath(p); err != nil {
				missing = append(missing, p+" (Debian/Ubuntu: apt-get install -y redis-server)")
			}
		}
	}
	if o.parts["10k"] || o.parts["1m"] || o.parts["fleet"] || o.parts["tags"] {
		if _, err := exec.LookPath("wrk"); err != nil {
			missing = append(missing, "wrk (Debian/Ubuntu: apt-get install -y wrk)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing programs; this harness installs nothing itself:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

// nginxPath finds nginx, which Debian puts in /usr/sbin (not on every PATH).
func nginxPath() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("nginx not found")
}

func main() {
	serveBoundIfAsked()
	opt, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := checkTools(opt); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first Ctrl-C the harness cleans up; a second one kills it.
		<-ctx.Done()
		stopSignals()
	}()

	restoreSession := func() {}
	if opt.nice != 0 {
		err := reniceSelf(opt.nice)
		if err == nil {
			restoreSession, err = reniceSession(opt.nice)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
	}
	b := &bench{opt: opt, ps: &procs{nice: opt.nice}, out: os.Stdout}
	err = b.run(ctx)
	restoreSession()
	if ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run does the chosen parts. Its deferred cleanup runs on every way out,
// including a panic, which it passes on after stopping the servers.
func (b *bench) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "edgecache-bench-")
	if err != nil {
		return err
	}
	// nginx's workers run as an unprivileged user when the harness is root:
	// let them reach their folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b.dir = dir
	defer func() {
		b.ps.stopAll()
		if b.origin != nil {
			b.origin.close()
		}
		if b.opt.keep {
			b.logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	b.logf("working in %s, %d CPUs", dir, runtime.NumCPU())
	if err := b.buildEdgecache(ctx); err != nil {
		return err
	}
	if b.origin, err = startOrigin(b.opt.stampedeDelay); err != nil {
		return err
	}
	b.logf("origin listening on %s", b.origin.addr)

	fmt.Fprintf(b.out, "# edgecache benchmark\n\n%s\n", b.machineLine())
	if b.opt.parts["10k"] || b.opt.parts["1m"] {
		if err := b.loadParts(ctx); err != nil {
			return err
		}
	}
	if b.opt.parts["stampede"] {
		if err := b.stampedePart(ctx); err != nil {
			return err
		}
	}
	if b.opt.parts["memory"] {
		if err := b.memoryPart(ctx); err != nil {
			return err
		}
	}
	if b.opt.parts["fleet"] {
		if err := b.fleetPart(ctx); err != nil {
			return err
		}
	}
	if b.opt.parts["tags"] {
		if err := b.tagsPart(ctx); err != nil {
			return err
		}
	}
	return nil
}

// buildEdgecache builds ./cmd/edgecache from the module root, unless -bin.
func (b *bench) buildEdgecache(ctx context.Context) error {
	if b.opt.bin != "" {
		abs, err := filepath.Abs(b.opt.bin)
		if err != nil {
			return err
		}
		b.bin = abs
		return nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return errors.New("run from inside the edgecache module (go env GOMOD is empty)")
	}
	b.bin = filepath.Join(b.dir, "bin", "edgecache")
	b.logf("building %s from %s", b.bin, root)
	start := time.Now()
	if err := runQuiet(ctx, root, "go", "build", "-o", b.bin, "./cmd/edgecache"); err != nil {
		return err
	}
	b.logf("built in %s", time.Since(start).Round(time.Second))
	return nil
}

func (b *bench) machineLine() string {
	nginxVersion := "nginx: not used"
	if p, err := nginxPath(); err == nil {
		if out, err := exec.Command(p, "-v").CombinedOutput(); err == nil {
			nginxVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s/%s, %s, %s; every server on 127.0.0.1.\n",
		time.Now().Format("2006-01-02 15:04"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), nginxVersion)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
