// Package caddymodule adapts the cache engine to Caddy: the edge_cache app
// (zones), the edge_cache and maintenance HTTP handlers, their Caddyfile
// syntax, the admin API, metrics and the edgecache subcommands.
package caddymodule
