package testkit

import (
	"strings"
	"testing"
)

func TestRedis(t *testing.T) {
	r := StartRedis(t, RedisArgs("--requirepass", "secret"))
	if out, err := r.CLI("--no-auth-warning", "-a", "secret", "ping"); err != nil || out != "PONG" {
		t.Fatalf("ping: %q %v", out, err)
	}
	if out, _ := r.CLI("ping"); !strings.Contains(out, "NOAUTH") {
		t.Fatalf("ping without the password: %q, want NOAUTH", out)
	}
	r.Kill()
	r.Restart()
	if out, err := r.CLI("--no-auth-warning", "-a", "secret", "ping"); err != nil || out != "PONG" {
		t.Fatalf("ping after restart: %q %v", out, err)
	}
}

func TestRedisCluster(t *testing.T) {
	c := StartRedisCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("addrs %v", c.Addrs())
	}
	out, err := c.Nodes[0].CLI("cluster", "info")
	if err != nil || !strings.Contains(out, "cluster_known_nodes:3") || !strings.Contains(out, "cluster_slots_assigned:16384") {
		t.Fatalf("cluster info: %v\n%s", err, out)
	}
}
