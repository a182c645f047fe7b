// Package warm fills an edgecache cache ahead of traffic: it requests every
// URL of a list through one of the proxy's listeners (typically the refresh
// listener, which always fetches from the backend and overwrites the stored
// entry), with bounded concurrency, retries, a progress display, and a state
// file so that an interrupted run resumes where it stopped. It knows nothing
// of Caddy; caddymodule wires it to the `edgecache warm` command.
package warm
