// Package edgecache is the edgecache Caddy plugin: importing it registers
// the modules and subcommands of packages caddymodule and maintenance (as
// xcaddy's `--with github.com/edgecache/edgecache` does) and ships the files
// the demo subcommand runs: the example Caddyfile and its static pages.
package edgecache

import (
	"embed"

	"github.com/edgecache/edgecache/caddymodule"
	_ "github.com/edgecache/edgecache/maintenance"
)

//go:embed Caddyfile.example www
var files embed.FS

func init() { caddymodule.DemoFiles = files }
