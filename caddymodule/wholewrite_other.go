//go:build !linux

package caddymodule

import "errors"

type wholeWriter struct{}

func (c *coalescingConn) writeWhole(held, p []byte, w wholeWrite) (int64, error) {
	return 0, errors.New("edge_cache: whole writes are not supported on this system")
}

// wholeWritesSupported: a hit's body goes out in Caddy's chunks here.
const wholeWritesSupported = false

// sendProgress: no whole writes here, so sendfile keeps Caddy's chunks.
func (c *coalescingConn) sendProgress(w wholeWrite) func(int64) error { return nil }
