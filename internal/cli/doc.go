// Package cli holds the edgecache subcommands: demo, drain, fleet,
// import-nginx, purge, cache-keys and warm. Each registers itself with
// Caddy's command line in an init of its own file; the root package
// (edgecache, what xcaddy's --with and cmd/edgecache import) imports this
// one. The commands that talk to a running proxy go through its admin API
// (client.go), whose contract is package adminapi's.
//
// The Caddy modules stay in package caddymodule, which knows nothing of
// this one: import-nginx on a stopped proxy reads the config's zones and
// handlers (caddymodule.ZoneConfig, Handler.CacheKey) and opens the zone
// itself.
package cli
