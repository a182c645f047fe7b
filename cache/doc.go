// Package cache is edgecache's HTTP cache engine: keys, entries, the storage
// policy (which responses are stored and for how long), the memory and disk
// tiers, fills (one backend request per missed key, the
// others waiting for it) and purge. It knows nothing of Caddy; the
// caddymodule package adapts it to Caddy's handler chain.
package cache
