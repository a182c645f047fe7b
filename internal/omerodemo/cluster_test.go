package omerodemo

import (
	"net/http"
	"strings"
	"testing"
)

func TestCluster(t *testing.T) {
	c, err := StartCluster(2, Options{Version: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	addrs := c.ReadOnlyAddrs()
	if len(addrs) != 2 || c.ReadWrite == nil {
		t.Fatalf("read-only %v, read-write %v", addrs, c.ReadWrite)
	}
	want := map[string]string{addrs[0]: "ro-1", addrs[1]: "ro-2", c.ReadWrite.Addr: "rw"}
	for addr, node := range want {
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("node %s listens on %s", node, addr)
		}
		resp, err := http.Get("http://" + addr + "/api/v0/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(HeaderNode); got != node {
			t.Errorf("%s answered as %q, want %q", addr, got, node)
		}
	}
	if n := c.Hits("/api/v0/"); n != 3 {
		t.Errorf("cluster Hits = %d, want 3", n)
	}

	c.SetVersion("b")
	for _, n := range c.Nodes() {
		if n.Version() != "b" {
			t.Errorf("node %s version %q", n.Node(), n.Version())
		}
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addrs[0] + "/api/v0/"); err == nil {
		t.Error("node still answers after Close")
	}
}
