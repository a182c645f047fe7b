package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// The bound is what net/http itself reaches: a plain Go net/http server,
// in a process of its own, that answers /10k and /1m with the bytes from
// memory, the headers of an edgecache hit, and each response in one
// writev (the trick of edgecache's listener wrapper), and its collector
// paced as edgecache's. No Caddy, no cache,
// no lookup. Every Caddy handler is served by net/http, so this server's
// ratio to nginx is the most a Caddy module's hits can reach, and
// edgecache's ratio to it is the share of the gap that is edgecache's and
// Caddy's.

const nameBound = "bound"

// boundEnv makes the harness's executable serve the bound instead (the
// harness starts itself again, so that the bound's CPU is its own).
const boundEnv = "EDGECACHE_BENCH_BOUND"

// serveBoundIfAsked serves the bound on the address in boundEnv, and
// never returns, when the variable is set.
func serveBoundIfAsked() {
	addr := os.Getenv(boundEnv)
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bound:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/10k", boundHandler(bodyOf(size10k)))
	mux.HandleFunc("/1m", boundHandler(bodyOf(size1m)))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(holdingListener{ln})
	fmt.Fprintln(os.Stderr, "bound:", err)
	os.Exit(1)
}

// boundHandler answers with body and the headers an edgecache hit sends.
func boundHandler(body []byte) http.HandlerFunc {
	length := []string{strconv.Itoa(len(body))}
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = length
		h["Age"] = []string{"1"}
		h["X-Cache-Status"] = []string{"HIT"}
		if c, ok := r.Context().Value(holdingConnKey{}).(*holdingConn); ok && len(body) > 2<<10 {
			c.hold()
		}
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	}
}

// holdingListener's connections hold net/http's full 4 KiB buffer (the
// headers and the start of the body) when asked, and send it with the
// next write in one writev, as caddymodule's listener wrapper does.
type holdingListener struct{ net.Listener }

type holdingConnKey struct{}

func (l holdingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &holdingConn{Conn: c}, nil
}

type holdingConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	held    []byte
}

func (c *holdingConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

func (c *holdingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.held != nil {
		held := c.held
		c.held = nil
		c.mu.Unlock()
		buffers := net.Buffers{held, p}
		n, err := buffers.WriteTo(c.Conn)
		return int(max(n-int64(len(held)), 0)), err
	}
	if c.holding && len(p) == 4<<10 {
		c.holding = false
		c.held = append(make([]byte, 0, len(p)), p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.holding = false
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// startBound starts the bound as a process of its own.
func (b *bench) startBound(ctx context.Context) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, nameBound)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Its collector is paced as edgecache's is (caddymodule/memlimit.go):
	// a collection per few hundred MiB allocated, not one each time a
	// heap of a few MiB doubles.
	// And it has a processor to spare, as edgecache's binary gives itself
	// (cmd/edgecache/main.go).
	env := []string{boundEnv + "=" + addr, "GOGC=off", "GOMEMLIMIT=256MiB", fmt.Sprintf("GOMAXPROCS=%d", runtime.NumCPU()+1)}
	p, err := b.ps.start(nameBound, dir, filepath.Join(dir, "bound.log"), env, self)
	if err != nil {
		return nil, err
	}
	t := &target{name: nameBound, label: "Go net/http, one writev per response (the net/http bound)", base: "http://" + addr, proc: p}
	if err := p.waitHTTP(ctx, t.base+"/10k", 30*time.Second); err != nil {
		return nil, err
	}
	return t, nil
}
