// Package caddymodule adapts the cache engine to Caddy: the edge_cache app
// (zones), the edge_cache HTTP handler and listener wrapper, their
// Caddyfile syntax, the admin API, metrics and the edgecache subcommands.
// During maintenance it answers through the gate of package maintenance.
package caddymodule
