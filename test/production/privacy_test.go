package production_test

import (
	"net/http"
	"strings"
	"testing"
)

// OMERO.web sets a session cookie on every page. On the cached URL classes
// it never reaches a client, whether the answer comes from the backend
// (MISS, or a status that is not stored) or from the cache (HIT), on every
// port; uncached pages keep it, or the web client's sessions would break.
func TestNoSetCookieOnCachedURLs(t *testing.T) {
	e := sharedEdge(t)
	cached := []string{
		"/webgateway/render_thumbnail/401/",
		"/webclient/get_thumbnail/401/",
		"/webgateway/render_image/401/0/0/",
		"/webclient/render_image/401/",
		"/webclient/metadata_details/401/",
		"/api/v0/m/images/401/",
		"/webclient/api/containers/",
		"/gallery-api/projects/",
		"/webclient/img_detail/401/",
		"/iviewer/",
		"/static/webgateway/js/ome.viewport-401.js",
	}
	check := func(port, uri string, r response, want string) {
		t.Helper()
		if got := r.Header.Get("X-Cache-Status"); got != want {
			t.Errorf("%s GET %s: X-Cache-Status %q, want %s", port, uri, got, want)
		}
		if c := r.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("%s GET %s (%s, status %d): Set-Cookie %q reached the client", port, uri, want, r.Status, c)
		}
	}
	for _, uri := range cached {
		// Sent straight to a node, the page does carry the cookie (unless
		// it is a static file), so its absence below is the proxy's doing.
		direct, err := e.do("", e.Cluster.ReadOnly[0].Addr, uri)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(uri, "/static/") && direct.Header.Get("Set-Cookie") == "" {
			t.Fatalf("GET %s from a node directly: no Set-Cookie; the test shows nothing", uri)
		}

		miss := e.get(t, e.Public, uri)
		if miss.Status == http.StatusOK {
			check("public", uri, miss, "MISS")
			check("public", uri, e.get(t, e.Public, uri), "HIT")
		} else {
			// Not stored (valid 200 only): every GET goes to a backend.
			check("public", uri, miss, "MISS")
			check("public", uri, e.get(t, e.Public, uri), "MISS")
		}
		check("long-timeout", uri+"?long", e.get(t, e.Long, uri+"?long"), "MISS")
		check("cache-buster", uri, e.get(t, e.Refresh, uri), "BYPASS")
	}

	// With a cookie of its own, as a browser sends it.
	r := e.get(t, e.Public, "/webclient/metadata_details/402/", "Cookie", "sessionid=abc")
	check("public", "/webclient/metadata_details/402/ with a session cookie", r, "MISS")

	for _, uri := range []string{"/webclient/", "/"} {
		r := e.get(t, e.Public, uri)
		if !strings.HasPrefix(r.Header.Get("Set-Cookie"), "sessionid=") {
			t.Errorf("uncached GET %s: Set-Cookie %q, want the backend's sessionid", uri, r.Header.Values("Set-Cookie"))
		}
	}
}
