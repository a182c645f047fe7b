// Package edgecache is the edgecache Caddy plugin: importing it registers
// the modules of packages caddymodule and maintenance and the edgecache
// subcommands of package cli (as xcaddy's
// `--with github.com/edgecache/edgecache` does), and ships the files the
// demo subcommand runs: the example Caddyfile and its static pages.
package edgecache

import (
	"embed"

	_ "github.com/edgecache/edgecache/caddymodule"
	"github.com/edgecache/edgecache/internal/cli"
	_ "github.com/edgecache/edgecache/maintenance"
)

//go:embed Caddyfile.example www
var files embed.FS

func init() { cli.DemoFiles = files }
