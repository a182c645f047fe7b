// Package caddymodule adapts the cache engine to Caddy: the edge_cache app
// (zones, the fleet's event log), the edge_cache HTTP handler and listener
// wrapper, the edge_cache_health and edge_cache_status handlers, their
// Caddyfile syntax, the admin API's handlers (whose contract is package
// adminapi's), the status page and the metrics. During maintenance it answers through the gate of package
// maintenance. The edgecache subcommands are package cli's.
package caddymodule
