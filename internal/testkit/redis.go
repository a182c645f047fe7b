package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server of a test's own: a free port on 127.0.0.1, a
// temporary folder, no persistence unless asked. It is stopped when the
// test ends.
type Redis struct {
	tb   testing.TB
	Addr string // 127.0.0.1:port
	Dir  string
	args []string
	proc *Process
	out  *bytes.Buffer
}

// RedisOption adds redis-server arguments, e.g. RedisArgs("--requirepass", "x").
type RedisOption func(*[]string)

// RedisArgs passes args to redis-server as they are.
func RedisArgs(args ...string) RedisOption {
	return func(a *[]string) { *a = append(*a, args...) }
}

// StartRedis starts a redis-server (Debian package redis-server: missing,
// it skips the test, or fails it under CI=true).
func StartRedis(tb testing.TB, opts ...RedisOption) *Redis {
	tb.Helper()
	program := RequireTool(tb, "redis-server", "redis-server")
	r := &Redis{tb: tb, Addr: "127.0.0.1:" + strconv.Itoa(FreePort(tb)), Dir: tb.TempDir()}
	_, port, _ := net.SplitHostPort(r.Addr)
	r.args = []string{"--bind", "127.0.0.1", "--port", port, "--dir", r.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""}
	for _, o := range opts {
		o(&r.args)
	}
	r.start(program)
	tb.Cleanup(r.Stop)
	return r
}

func (r *Redis) start(program string) {
	r.tb.Helper()
	r.out = new(bytes.Buffer)
	p, err := Start(Command{Program: program, Args: r.args, Dir: r.Dir, Output: r.out, Listen: []string{r.Addr}, Within: 10 * time.Second})
	if err != nil {
		r.tb.Fatalf("redis-server on %s: %v\n%s", r.Addr, err, r.out)
	}
	r.proc = p
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s). Stopping a
// stopped server does nothing.
func (r *Redis) Stop() {
	if r.proc == nil {
		return
	}
	r.Resume()
	_ = r.proc.Stop(syscall.SIGTERM, 5*time.Second)
	r.proc = nil
}

// Kill ends the server at once, as a crash does.
func (r *Redis) Kill() {
	if r.proc == nil {
		return
	}
	r.proc.Kill()
	r.proc = nil
}

// Pause freezes the server (SIGSTOP): it keeps its port, and the kernel
// accepts connections for it, but nothing answers, as a hung Redis or a
// network black hole. Resume undoes it.
func (r *Redis) Pause() {
	if r.proc != nil {
		_ = r.proc.Cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Resume lets a paused server run again (SIGCONT).
func (r *Redis) Resume() {
	if r.proc != nil {
		_ = r.proc.Cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Restart starts the server again on the same address and folder.
func (r *Redis) Restart() {
	r.tb.Helper()
	r.Stop()
	r.start(RequireTool(r.tb, "redis-server", "redis-server"))
}

// Output is what the server printed so far.
func (r *Redis) Output() string { return r.out.String() }

// CLI runs redis-cli against the server with args and returns its output.
func (r *Redis) CLI(args ...string) (string, error) {
	return redisCLI(r.tb, r.Addr, args...)
}

func redisCLI(tb testing.TB, addr string, args ...string) (string, error) {
	tb.Helper()
	cli := RequireTool(tb, "redis-cli", "redis-server")
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// RedisCluster is a Redis Cluster of masters without replicas, each a
// Redis of the test's own, with the 16384 slots spread over them.
type RedisCluster struct {
	Nodes []*Redis
}

// Addrs are the masters' addresses, the seeds a cluster client needs.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// StartRedisCluster starts masters redis-servers with cluster mode on and
// joins them with redis-cli --cluster create, waiting until the cluster
// reports cluster_state:ok on every node.
func StartRedisCluster(tb testing.TB, masters int, opts ...RedisOption) *RedisCluster {
	tb.Helper()
	c := &RedisCluster{}
	for range masters {
		dir := tb.TempDir()
		o := append([]RedisOption{RedisArgs("--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")}, opts...)
		c.Nodes = append(c.Nodes, StartRedis(tb, o...))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if auth := authArgs(opts); len(auth) > 0 {
		args = append(auth, args...)
	}
	if out, err := redisCLI(tb, c.Nodes[0].Addr, args...); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	Eventually(tb, 20*time.Second, func() string {
		for _, n := range c.Nodes {
			out, err := redisCLI(tb, n.Addr, append(authArgs(opts), "cluster", "info")...)
			if err != nil || !strings.Contains(out, "cluster_state:ok") {
				return fmt.Sprintf("%s: cluster not ready: %v %.80s", n.Addr, err, out)
			}
		}
		return ""
	})
	return c
}

// authArgs turns --requirepass among opts into redis-cli's -a, so the
// cluster can be created and checked with a password set.
func authArgs(opts []RedisOption) []string {
	var args []string
	for _, o := range opts {
		o(&args)
	}
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			return []string{"--no-auth-warning", "-a", args[i+1]}
		}
	}
	return nil
}
