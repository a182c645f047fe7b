package production_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A cacheable URL fetched twice from the public port: a MISS from a
// read-only node, then a HIT that reaches no backend, both in the status
// header and in the access log (with the backend's address on the MISS).
func TestSecondGetIsHit(t *testing.T) {
	e := sharedEdge(t)
	for _, uri := range []string{
		"/webgateway/render_thumbnail/101/",
		"/webclient/metadata_details/101/",
		"/api/v0/m/images/101/",
		"/static/webgateway/img/icon-101.png",
	} {
		t.Run(uri, func(t *testing.T) {
			before := e.Cluster.Hits(uri)
			miss := e.get(t, e.Public, uri)
			if miss.Status != http.StatusOK || miss.Header.Get("X-Cache-Status") != "MISS" {
				t.Fatalf("first GET: status %d, X-Cache-Status %q; want 200 MISS", miss.Status, miss.Header.Get("X-Cache-Status"))
			}
			node := miss.Header.Get("X-Omero-Node")
			if !strings.HasPrefix(node, "ro-") {
				t.Errorf("first GET answered by node %q, want a read-only node", node)
			}
			hit := e.get(t, e.Public, uri)
			if hit.Status != http.StatusOK || hit.Header.Get("X-Cache-Status") != "HIT" {
				t.Fatalf("second GET: status %d, X-Cache-Status %q; want 200 HIT", hit.Status, hit.Header.Get("X-Cache-Status"))
			}
			if hit.Body != miss.Body {
				t.Errorf("HIT body differs from the MISS body")
			}
			if got := e.Cluster.Hits(uri) - before; got != 1 {
				t.Errorf("backends received %d requests for %s, want 1", got, uri)
			}

			missLog := e.accessLog(t, miss)
			if deref(missLog.CacheStatus) != "MISS" || deref(missLog.Upstream) != e.nodeAddr(node) {
				t.Errorf("MISS log line: cache_status %s, upstream %s; want MISS, %s (node %s)",
					deref(missLog.CacheStatus), deref(missLog.Upstream), e.nodeAddr(node), node)
			}
			hitLog := e.accessLog(t, hit)
			if deref(hitLog.CacheStatus) != "HIT" || hitLog.Status != http.StatusOK || hitLog.Request.URI != uri {
				t.Errorf("HIT log line: cache_status %s, status %d, uri %s; want HIT, 200, %s",
					deref(hitLog.CacheStatus), hitLog.Status, hitLog.Request.URI, uri)
			}
			if hitLog.Upstream != nil && *hitLog.Upstream != "" {
				t.Errorf("HIT log line names upstream %s, but no backend was asked", *hitLog.Upstream)
			}
		})
	}
}

// jQuery's _=<digits> parameter is not part of the key: both are one entry.
func TestJQueryParameterSharesEntry(t *testing.T) {
	e := sharedEdge(t)
	if r := e.get(t, e.Public, "/api/v0/m/images/102/?_=1234"); r.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("first GET: X-Cache-Status %q, want MISS", r.Header.Get("X-Cache-Status"))
	}
	if r := e.get(t, e.Public, "/api/v0/m/images/102/?_=5678"); r.Header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("GET with another _=: X-Cache-Status %q, want HIT", r.Header.Get("X-Cache-Status"))
	}
	if got := e.Cluster.Hits("/api/v0/m/images/102/"); got != 1 {
		t.Errorf("backends received %d requests, want 1", got)
	}
}

// The OMERO pages outside the cacheable URL classes are never stored:
// every GET reaches a backend.
func TestUncachedPagesReachBackend(t *testing.T) {
	e := sharedEdge(t)
	for _, uri := range []string{"/", "/webclient/", "/webclient/nothing-here/"} {
		before := e.Cluster.Hits(uri)
		for i := range 3 {
			r := e.get(t, e.Public, uri)
			if r.Status >= 500 {
				t.Fatalf("GET %s: status %d", uri, r.Status)
			}
			if s := r.Header.Get("X-Cache-Status"); s != "" {
				t.Errorf("GET %s #%d: X-Cache-Status %q, want none (not a cached URL)", uri, i+1, s)
			}
			if l := e.accessLog(t, r); l.Upstream == nil || *l.Upstream == "" {
				t.Errorf("GET %s #%d: access log names no upstream", uri, i+1)
			}
		}
		if got := e.Cluster.Hits(uri) - before; got != 3 {
			t.Errorf("%s: backends received %d of 3 requests", uri, got)
		}
	}
}

// A GET on the cache-buster port fetches the URL from the read-write node
// and overwrites the shared entry: the public port then serves the new body
// without asking a read-only node.
func TestRefreshPortOverwritesEntry(t *testing.T) {
	e := sharedEdge(t)
	const uri = "/webclient/metadata_details/103/"
	old := e.Cluster.ReadWrite.Version()
	defer e.Cluster.SetVersion(old)

	first := e.get(t, e.Public, uri)
	if first.Header.Get("X-Cache-Status") != "MISS" || !strings.Contains(first.Body, "version "+old) {
		t.Fatalf("first public GET: X-Cache-Status %q, body %q", first.Header.Get("X-Cache-Status"), first.Body)
	}
	next := fmt.Sprintf("refreshed-%d", time.Now().UnixNano())
	e.Cluster.SetVersion(next)
	if r := e.get(t, e.Public, uri); r.Header.Get("X-Cache-Status") != "HIT" || r.Body != first.Body {
		t.Fatalf("public GET after the new version: X-Cache-Status %q, want HIT with the old body", r.Header.Get("X-Cache-Status"))
	}

	rwBefore := e.Cluster.ReadWrite.Hits(uri)
	refreshed := e.get(t, e.Refresh, uri)
	if refreshed.Status != http.StatusOK {
		t.Fatalf("refresh GET: status %d", refreshed.Status)
	}
	if node := refreshed.Header.Get("X-Omero-Node"); node != "rw" || !strings.Contains(refreshed.Body, "node rw, version "+next) {
		t.Fatalf("refresh GET answered by node %q with body %q; want the read-write node, version %s", node, refreshed.Body, next)
	}
	if got := e.Cluster.ReadWrite.Hits(uri) - rwBefore; got != 1 {
		t.Errorf("the read-write node received %d requests, want 1", got)
	}
	if l := e.accessLog(t, refreshed); deref(l.Upstream) != e.Cluster.ReadWrite.Addr {
		t.Errorf("refresh log line: upstream %s, want %s", deref(l.Upstream), e.Cluster.ReadWrite.Addr)
	}

	total := e.Cluster.Hits(uri)
	after := e.get(t, e.Public, uri)
	if after.Header.Get("X-Cache-Status") != "HIT" || after.Body != refreshed.Body {
		t.Fatalf("public GET after the refresh: X-Cache-Status %q, body %q; want HIT with the refreshed body %q",
			after.Header.Get("X-Cache-Status"), after.Body, refreshed.Body)
	}
	if e.Cluster.Hits(uri) != total {
		t.Errorf("the public GET after the refresh reached a backend")
	}
}

// A request slower than the read-only pool's timeout fails on the public
// port; on the long-timeout port it reaches the read-write node, which may
// take longer, and is stored for the public port.
func TestLongTimeoutPort(t *testing.T) {
	t.Parallel()
	// The production timeout is 60 s; one second shows the same.
	e := newEdge(t, edgeConfig{ReadOnly: 2, Env: map[string]string{"OMERO_READONLY_TIMEOUT": "1s"}})
	const uri = "/webclient/metadata_details/104/"
	const slow = "1500ms"

	pub := e.get(t, e.Public, uri, "X-Demo-Delay", slow)
	if pub.Status < 500 {
		t.Fatalf("public GET slower than the timeout: status %d (node %q), want a 5xx", pub.Status, pub.Header.Get("X-Omero-Node"))
	}
	if ro := e.Cluster.Hits(uri) - e.Cluster.ReadWrite.Hits(uri); ro == 0 {
		t.Fatalf("the public GET reached no read-only node")
	}

	start := time.Now()
	long := e.get(t, e.Long, uri, "X-Demo-Delay", slow)
	if long.Status != http.StatusOK || long.Header.Get("X-Omero-Node") != "rw" || long.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("long-timeout GET: status %d, node %q, X-Cache-Status %q; want 200 from rw, MISS",
			long.Status, long.Header.Get("X-Omero-Node"), long.Header.Get("X-Cache-Status"))
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("long-timeout GET took %s, less than the delay: the delay header did not reach the backend", d)
	}

	total := e.Cluster.Hits(uri)
	hit := e.get(t, e.Public, uri)
	if hit.Status != http.StatusOK || hit.Header.Get("X-Cache-Status") != "HIT" || hit.Body != long.Body {
		t.Fatalf("public GET after the long-timeout port: status %d, X-Cache-Status %q; want 200 HIT with its body",
			hit.Status, hit.Header.Get("X-Cache-Status"))
	}
	if e.Cluster.Hits(uri) != total {
		t.Errorf("the public HIT reached a backend")
	}
}

// Concurrent misses of one URL make one backend request; the others wait
// for it (lock on) and are served the same body, as HITs.
func TestConcurrentMissesOneBackendRequest(t *testing.T) {
	e := sharedEdge(t)
	const uri = "/webgateway/render_image/105/0/0/"
	const clients = 50
	type result struct {
		r   response
		err error
	}
	results := make(chan result, clients)
	for i := range clients {
		// Different client addresses: coalescing is the cache's doing, not
		// one node's connection reuse.
		ip := clientIPs(clients)[i]
		go func() {
			r, err := e.do(ip, e.Public, uri, "X-Demo-Delay", "300ms")
			results <- result{r, err}
		}()
	}
	var body string
	statuses := make(map[string]int)
	for range clients {
		res := <-results
		statuses[res.r.Header.Get("X-Cache-Status")]++
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.r.Status != http.StatusOK {
			t.Fatalf("status %d", res.r.Status)
		}
		if body == "" {
			body = res.r.Body
		} else if res.r.Body != body {
			t.Errorf("concurrent clients got different bodies")
		}
	}
	if n := e.Cluster.Hits(uri); n != 1 {
		t.Errorf("%d concurrent misses made %d backend requests, want 1", clients, n)
	}
	if statuses["MISS"] != 1 || statuses["HIT"] != clients-1 {
		t.Errorf("statuses %v, want 1 MISS and %d HIT", statuses, clients-1)
	}
}

// HEAD shares the GET entry: a HEAD after a GET is a HIT, and a HEAD first
// fills the entry for a later GET.
func TestHeadSharesGetEntry(t *testing.T) {
	e := sharedEdge(t)
	head := func(uri string) *http.Response {
		t.Helper()
		res, err := e.client("").Head("http://" + e.Public + uri)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	e.get(t, e.Public, "/api/v0/m/images/106/")
	if res := head("/api/v0/m/images/106/"); res.StatusCode != http.StatusOK || res.Header.Get("X-Cache-Status") != "HIT" {
		t.Errorf("HEAD after GET: status %d, X-Cache-Status %q; want 200 HIT", res.StatusCode, res.Header.Get("X-Cache-Status"))
	}
	if res := head("/api/v0/m/images/107/"); res.StatusCode != http.StatusOK || res.Header.Get("X-Cache-Status") != "MISS" {
		t.Errorf("first HEAD: status %d, X-Cache-Status %q; want 200 MISS", res.StatusCode, res.Header.Get("X-Cache-Status"))
	}
	if r := e.get(t, e.Public, "/api/v0/m/images/107/"); r.Header.Get("X-Cache-Status") != "HIT" || !strings.Contains(r.Body, `"@id":107`) {
		t.Errorf("GET after HEAD: X-Cache-Status %q, body %q; want a HIT with the whole body", r.Header.Get("X-Cache-Status"), r.Body)
	}
	if n := e.Cluster.Hits("/api/v0/m/images/107/"); n != 1 {
		t.Errorf("HEAD then GET made %d backend requests, want 1", n)
	}
}

// The zones' disk tier outlives the process: a new process on the same
// cache folder, against other backends, serves what the first stored.
func TestCacheSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	uris := []string{"/webgateway/render_thumbnail/108/", "/webclient/metadata_details/108/", "/static/webgateway/css/app-108.css"}

	first := newEdge(t, edgeConfig{Dir: dir})
	bodies := make(map[string]string)
	for _, uri := range uris {
		r := first.get(t, first.Public, uri)
		if r.Header.Get("X-Cache-Status") != "MISS" {
			t.Fatalf("GET %s: X-Cache-Status %q, want MISS", uri, r.Header.Get("X-Cache-Status"))
		}
		bodies[uri] = r.Body
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	second := newEdge(t, edgeConfig{Dir: dir})
	for _, uri := range uris {
		r := second.get(t, second.Public, uri)
		if r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != "HIT" || r.Body != bodies[uri] {
			t.Errorf("GET %s after a restart: status %d, X-Cache-Status %q; want 200 HIT with the stored body",
				uri, r.Status, r.Header.Get("X-Cache-Status"))
		}
		if n := second.Cluster.Hits(uri); n != 0 {
			t.Errorf("GET %s after a restart reached a backend", uri)
		}
	}
}

// A refresh that the backend answers with an error stores nothing: the
// public port keeps serving the good entry.
func TestFailedRefreshKeepsEntry(t *testing.T) {
	e := sharedEdge(t)
	const uri = "/webclient/metadata_details/109/"
	good := e.get(t, e.Public, uri)
	if good.Status != http.StatusOK || good.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("first GET: status %d, X-Cache-Status %q", good.Status, good.Header.Get("X-Cache-Status"))
	}
	if r := e.get(t, e.Refresh, uri, "X-Demo-Status", "500"); r.Status != http.StatusInternalServerError {
		t.Fatalf("refresh GET with a failing backend: status %d, want the backend's 500", r.Status)
	}
	if r := e.get(t, e.Public, uri); r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != "HIT" || r.Body != good.Body {
		t.Errorf("public GET after a failed refresh: status %d, X-Cache-Status %q; want 200 HIT with the good body",
			r.Status, r.Header.Get("X-Cache-Status"))
	}
}
