//go:build !unix

package caddymodule

// maxOpenFiles is unknown here.
func maxOpenFiles() int64 { return -1 }
