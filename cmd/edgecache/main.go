// Command edgecache is Caddy with the edgecache module built in.
package main

import (
	"os"
	"runtime"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/edgecache/edgecache"
	_ "github.com/edgecache/edgecache/maintenance"
)

func main() {
	// Usage lines name the binary: `edgecache warm`, not `caddy warm`.
	caddy.CustomBinaryName = "edgecache"
	// Set only to change it: setting it stops Go following a CPU quota.
	if n, current := procs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0), runtime.NumCPU()), runtime.GOMAXPROCS(0); n != current {
		runtime.GOMAXPROCS(n)
	}
	caddycmd.Main()
}

// procs is the number of Go processors the proxy runs with: one more than
// the CPUs, unless the operator set GOMAXPROCS or a CPU quota set fewer
// (then current, Go's default, stays; Caddy's automaxprocs still applies
// a quota after this).
//
// A processor whose thread the kernel preempts keeps its runnable
// goroutines (requests whose sockets are ready) until the thread runs
// again; with one processor to spare, another thread runs them. On two
// cores shared with the load generator, 10 KiB hits' p99 fell from
// 9.5–13.7 ms to 4.9–5.5 ms, at the same req/s (four alternating runs
// each, docs/performance.md "The net/http bound"). More spare processors
// cost throughput: with twice the CPUs, 7–10% fewer req/s.
func procs(env string, current, cpus int) int {
	if env != "" || current != cpus {
		return current
	}
	return cpus + 1
}
