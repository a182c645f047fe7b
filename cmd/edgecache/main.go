// Command edgecache is Caddy with the edgecache module built in.
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/edgecache/edgecache"
	_ "github.com/edgecache/edgecache/maintenance"
)

func main() {
	// Usage lines name the binary: `edgecache warm`, not `caddy warm`.
	caddy.CustomBinaryName = "edgecache"
	caddycmd.Main()
}
