// Package edgecache holds the files shipped inside the edgecache binary:
// the example Caddyfile and the static pages it serves, which the demo
// subcommand runs.
package edgecache

import "embed"

// Files holds Caddyfile.example and the www folder.
//
//go:embed Caddyfile.example www
var Files embed.FS
