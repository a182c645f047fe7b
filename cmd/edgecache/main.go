// Command edgecache is Caddy with the edgecache module built in.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/edgecache/edgecache"
	_ "github.com/edgecache/edgecache/maintenance"
)

func main() { caddycmd.Main() }
