package omerodemo

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Node is a Server listening on a port of 127.0.0.1.
type Node struct {
	*Server
	// Addr is the node's host:port.
	Addr string

	srv *http.Server
}

// Listen starts a node named name on a free port of 127.0.0.1.
func Listen(name string, opts Options) (*Node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("omerodemo: node %s: %w", name, err)
	}
	n := &Node{Server: New(name, opts), Addr: ln.Addr().String()}
	n.srv = &http.Server{Handler: n.Server, ReadHeaderTimeout: 10 * time.Second}
	go n.srv.Serve(ln)
	return n, nil
}

// Close stops the node at once, closing its connections.
func (n *Node) Close() error { return n.srv.Close() }

// Cluster is the production backend layout: a pool of read-only nodes
// (named ro-1, ro-2, ...) and one read-write node (named rw).
type Cluster struct {
	ReadOnly  []*Node
	ReadWrite *Node
}

// StartCluster starts readOnly read-only nodes and one read-write node, all
// with opts, on free ports of 127.0.0.1. Close stops them.
func StartCluster(readOnly int, opts Options) (*Cluster, error) {
	c := new(Cluster)
	for i := range readOnly {
		n, err := Listen(fmt.Sprintf("ro-%d", i+1), opts)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.ReadOnly = append(c.ReadOnly, n)
	}
	n, err := Listen("rw", opts)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.ReadWrite = n
	return c, nil
}

// ReadOnlyAddrs returns the host:port of each read-only node.
func (c *Cluster) ReadOnlyAddrs() []string {
	addrs := make([]string, len(c.ReadOnly))
	for i, n := range c.ReadOnly {
		addrs[i] = n.Addr
	}
	return addrs
}

// Nodes returns every node, read-only ones first.
func (c *Cluster) Nodes() []*Node {
	nodes := append([]*Node(nil), c.ReadOnly...)
	if c.ReadWrite != nil {
		nodes = append(nodes, c.ReadWrite)
	}
	return nodes
}

// Hits returns how many requests for path all nodes together received.
func (c *Cluster) Hits(path string) int {
	total := 0
	for _, n := range c.Nodes() {
		total += n.Hits(path)
	}
	return total
}

// SetVersion changes the version of every node.
func (c *Cluster) SetVersion(v string) {
	for _, n := range c.Nodes() {
		n.SetVersion(v)
	}
}

// Close stops every node.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes() {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}
