package production_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// These tests run their own Caddyfile, in front of one testkit.Backend
// whose answers are numbered, to see which request a body came from.

// versioned answers "<path> v<n>" for the n-th request, with a session
// cookie.
func versioned(w http.ResponseWriter, r *http.Request, n int64) {
	w.Header().Set("Set-Cookie", fmt.Sprintf("sessionid=s%d; Path=/", n))
	fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
}

// backendCaddyfile is a public site and a cache-buster site in front of
// one backend, as in production, on the addresses of edge (the
// long-timeout port only answers 404).
const backendCaddyfile = `{
	admin {$EDGECACHE_ADMIN}
	persist_config off
	auto_https off
	grace_period 1s
	edge_cache {
		zone default 64MiB
		zone api {
			memory 32MiB
			memory_entry_max 1MiB
		}
	}
}
{$EDGECACHE_PUBLIC} {
	bind 127.0.0.1
	handle /api/* {
		edge_cache {
			zone api
			valid 200 1h
			strip_query _
			ignore_headers Set-Cookie Cache-Control Expires Vary
			private_cookies logged_in
			lock_timeout 10s
		}
		reverse_proxy {$OMERO_READONLY}
	}
	handle {
		edge_cache {
			valid 200 1h
		}
		reverse_proxy {$OMERO_READONLY}
	}
}
http://127.0.0.1:{$EDGECACHE_REFRESH_PORT} {
	bind 127.0.0.1
	handle /api/* {
		edge_cache {
			zone api
			refresh
			valid 200 1h
			strip_query _
			ignore_headers Set-Cookie Cache-Control Expires Vary
		}
		reverse_proxy {$OMERO_READONLY}
	}
}
http://127.0.0.1:{$EDGECACHE_LONG_PORT} {
	bind 127.0.0.1
	respond 404
}
`

// newBackendEdge starts an instance of backendCaddyfile in front of a new
// backend answering with handle.
func newBackendEdge(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int64)) (*edge, *testkit.Backend) {
	t.Helper()
	return newEdgeFor(t, backendCaddyfile, handle)
}

// newEdgeFor starts an instance of a Caddyfile that reads its addresses
// from the environment, as backendCaddyfile does, in front of a new
// backend answering with handle.
func newEdgeFor(t *testing.T, config string, handle func(w http.ResponseWriter, r *http.Request, n int64)) (*edge, *testkit.Backend) {
	t.Helper()
	be := testkit.NewBackend(t, handle)
	dir := t.TempDir()
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEdge(t, edgeConfig{Dir: dir, Caddyfile: caddyfile, Env: map[string]string{"OMERO_READONLY": be.Addr()}})
	return e, be
}

// expect checks a 200 with the cache status and body.
func expect(t *testing.T, what string, r response, cacheStatus, body string) {
	t.Helper()
	if r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != cacheStatus || r.Body != body {
		t.Errorf("%s: %d %q %q, want 200 %q %q", what, r.Status, r.Header.Get("X-Cache-Status"), r.Body, cacheStatus, body)
	}
}

// The cache buster never looks up: each of its requests reaches the
// backend and overwrites the entry the public site then serves, under the
// key without the jQuery parameter.
func TestRefreshSite(t *testing.T) {
	t.Parallel()
	e, _ := newBackendEdge(t, versioned)
	expect(t, "public", e.get(t, e.Public, "/api/r"), "MISS", "/api/r v1")
	expect(t, "public again", e.get(t, e.Public, "/api/r"), "HIT", "/api/r v1")
	expect(t, "refresh", e.get(t, e.Refresh, "/api/r?_=9"), "BYPASS", "/api/r v2")
	expect(t, "refresh again", e.get(t, e.Refresh, "/api/r"), "BYPASS", "/api/r v3")
	expect(t, "public after refresh", e.get(t, e.Public, "/api/r"), "HIT", "/api/r v3")
}

// Requests with an Authorization header or a private_cookies cookie pass
// through with their Set-Cookie, and store nothing; an anonymous session
// cookie does not make a request private.
func TestPrivateBypass(t *testing.T) {
	t.Parallel()
	e, _ := newBackendEdge(t, versioned)
	for _, h := range [][]string{{"Authorization", "Basic dTpw"}, {"Cookie", "sessionid=x; logged_in=1"}} {
		r := e.get(t, e.Public, "/api/p", h...)
		if r.Header.Get("X-Cache-Status") != "BYPASS" || r.Header.Get("Set-Cookie") == "" {
			t.Errorf("%s: status %q, Set-Cookie %q; want BYPASS with the cookie", h[0], r.Header.Get("X-Cache-Status"), r.Header.Get("Set-Cookie"))
		}
	}
	expect(t, "public", e.get(t, e.Public, "/api/p"), "MISS", "/api/p v3")
	expect(t, "anonymous session", e.get(t, e.Public, "/api/p", "Cookie", "sessionid=anon"), "HIT", "/api/p v3")
}
