package production_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// clientIPs returns n loopback addresses other than 127.0.0.1, from which a
// test can connect to look like n different clients.
func clientIPs(n int) []string {
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.%d.%d", (i+2)/250, (i+2)%250)
	}
	return ips
}

// nodesByClient sends uri once from each client address and returns the
// read-only node that answered each.
func nodesByClient(t *testing.T, e *edge, ips []string, uri string) map[string]string {
	t.Helper()
	nodes := make(map[string]string)
	for _, ip := range ips {
		r := e.getFrom(t, ip, e.Public, uri)
		node := r.Header.Get("X-Omero-Node")
		if r.Status != http.StatusOK || !strings.HasPrefix(node, "ro-") {
			t.Fatalf("GET %s from %s: status %d, node %q; want 200 from a read-only node", uri, ip, r.Status, node)
		}
		nodes[ip] = node
	}
	return nodes
}

// Uncached requests are spread over the read-only pool by client address,
// and each client sticks to its node (OMERO sessions live on one node).
func TestReadOnlyPoolByClientAddress(t *testing.T) {
	e := sharedEdge(t)
	ips := clientIPs(24)
	nodes := nodesByClient(t, e, ips, "/webclient/")

	used := make(map[string]int)
	for _, n := range nodes {
		used[n]++
	}
	if len(used) < 2 {
		t.Errorf("24 client addresses all reached %v; want the pool of %d nodes shared", used, len(e.Cluster.ReadOnly))
	}
	t.Logf("requests per node: %v", used)

	for _, ip := range ips[:4] {
		for i := range 4 {
			r := e.getFrom(t, ip, e.Public, "/webclient/")
			if got := r.Header.Get("X-Omero-Node"); got != nodes[ip] {
				t.Errorf("client %s, request %d: node %s, want %s as before", ip, i+2, got, nodes[ip])
			}
		}
	}
}

// A dead read-only node is skipped: every client's request still succeeds,
// from the other nodes.
func TestDeadReadOnlyNodeSkipped(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeConfig{ReadOnly: 3})
	ips := clientIPs(24)
	before := nodesByClient(t, e, ips, "/webclient/")

	dead := e.Cluster.ReadOnly[0]
	reached := false
	for _, ip := range ips {
		reached = reached || before[ip] == dead.Node()
	}
	if !reached {
		t.Fatalf("no client reached %s: cannot test its failure (nodes: %v)", dead.Node(), before)
	}
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	// Twice: the first round finds the node dead (and retries on another),
	// the second must not try it again.
	for round := range 2 {
		after := nodesByClient(t, e, ips, "/webclient/")
		for _, ip := range ips {
			if after[ip] == dead.Node() {
				t.Errorf("round %d: client %s answered by the closed node %s", round+1, ip, dead.Node())
			}
		}
	}
}
