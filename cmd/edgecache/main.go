package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/edgecache/edgecache/caddymodule"
)

func main() { caddycmd.Main() }
