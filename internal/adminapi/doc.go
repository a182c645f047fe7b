// Package adminapi is the contract of edgecache's routes on Caddy's admin
// endpoint: their paths, request and response bodies, and the text form
// of cache keys. The server (package caddymodule) and the client (the
// edgecache subcommands, package cli) both speak it through this package.
//
// The admin endpoint listens on localhost (or a socket) only: nothing of
// it is reachable from the public listener.
//
//	POST /edge_cache/purge  {"zone": "<name or empty for every zone>", "key": "..." | "prefix": "..." | "all": true}
//	                        -> {"purged": <n>, "shared": <values removed from Redis, in a fleet>}
//	GET  /edge_cache/keys?zone=<name>&prefix=<p>&after=<key>&limit=<n>
//	                        -> {"keys": [...], "next": "<key to pass as after, empty at the end>"}
//	POST /edge_cache/drain  {"draining": true|false} -> the health state
//	GET  /edge_cache/drain  -> the health state: {"status": "ok" | "draining" | "maintenance", "node", "draining",
//	                           "maintenance": [flag files], "shared": "up" | "down" (in a fleet)}
//	GET  /edge_cache/fleet  -> {"members": [{"node", "version", "zones", "last_event", "behind", "seen"}...]}
//	GET  /edge_cache/status -> the status page (HTML); the edge_cache_status handler serves it to browsers
//	GET  /edge_cache/status.json
//	                        -> Status (status.go): zones, backends, maintenance, fleet, purges and refreshes, process
//	GET  /edge_cache/import?zone=<name>
//	                        -> {"disk": bool, "disk_bytes": n, "max_size": n, "loading": bool}
//	POST /edge_cache/import?zone=<name>
//	                        body: one line of JSON (ImportMeta), then exactly body_size bytes
//	                        -> {"stored": true} or {"stored": false, "reason": "newer"}
//
// An error is Caddy's admin error body, {"error": "..."}, with a 4xx or
// 5xx status. Keys, prefixes and cursors are in their text form
// (keytext.go): as they are, or Go-quoted when they are not printable
// UTF-8 text.
package adminapi
