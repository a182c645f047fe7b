package production_test

// One test per behaviour of the production nginx proxy
// (/work/shared/reference/idr-nginx.conf.in, rendered in testdata by the
// differential test) that Caddyfile.example reproduces.

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/omerodemo"
	"github.com/edgecache/edgecache/internal/testkit"
)

// keysIn lists the keys of a zone through the admin API.
func (e *edge) keysIn(t *testing.T, zone string) map[string]bool {
	t.Helper()
	res, err := http.Get("http://" + e.Admin + "/edge_cache/keys?zone=" + url.QueryEscape(zone))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Keys []string }
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("admin keys of zone %s: %d %s", zone, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]bool)
	for _, k := range out.Keys {
		keys[k] = true
	}
	return keys
}

// Every URL class of production's cache list is stored, in the zone
// production maps it to, and its session cookie never reaches a client,
// although the stand-in sends Set-Cookie and Vary: Cookie on each (as
// OMERO.web does). URL shapes the stand-in does not serve are answered 200
// through its X-Demo-Status control.
func TestCachedURLClassesAndZones(t *testing.T) {
	e := sharedEdge(t)
	for _, c := range []struct{ uri, zone string }{
		{"/webgateway/render_thumbnail/501/", "thumbnails"},
		{"/webclient/render_thumbnail/501/", "thumbnails"},
		{"/webclient/get_thumbnail/501/", "thumbnails"},
		{"/webgateway/get_thumbnails/?id=501&id=502", "thumbnails"},
		{"/webclient/get_thumbnails/?id=501", "thumbnails"},
		{"/webgateway/render_image/501/0/0/", "images"},
		{"/webclient/render_image/501/", "images"},
		{"/webgateway/render_image_region/501/0/0/?tile=0,0,0", "images"},
		{"/webclient/metadata_details/501/", "metadata"},
		{"/webgateway/metadata_details/501/", "default"}, // not in production's zone map
		{"/api/v0/m/images/501/", "api"},
		{"/webclient/api/containers/?id=501", "api"},
		{"/gallery-api/projects/501/", "api"},
		{"/webclient/img_detail/501/", "viewers"},
		{"/iviewer/?images=501", "viewers"},
		{"/static/webgateway/css/ome-501.css", "static"},
	} {
		before := e.Cluster.Hits(strings.Split(c.uri, "?")[0])
		miss := e.get(t, e.Public, c.uri, omerodemo.HeaderStatus, "200", "Cookie", "sessionid=visitor1")
		hit := e.get(t, e.Public, c.uri, "Cookie", "sessionid=visitor2")
		if miss.Status != 200 || miss.Header.Get("X-Cache-Status") != "MISS" || hit.Header.Get("X-Cache-Status") != "HIT" || hit.Body != miss.Body {
			t.Errorf("%s: %d %s then %s (same body %v); want 200 MISS then HIT with the same body",
				c.uri, miss.Status, miss.Header.Get("X-Cache-Status"), hit.Header.Get("X-Cache-Status"), hit.Body == miss.Body)
		}
		if got := e.Cluster.Hits(strings.Split(c.uri, "?")[0]) - before; got != 1 {
			t.Errorf("%s: backends received %d requests, want 1", c.uri, got)
		}
		for _, r := range []response{miss, hit} {
			if v := r.Header.Values("Set-Cookie"); len(v) > 0 {
				t.Errorf("%s (%s): Set-Cookie %q reached the client", c.uri, r.Header.Get("X-Cache-Status"), v)
			}
		}
		if !e.keysIn(t, c.zone)[c.uri] {
			t.Errorf("%s: not a key of zone %s", c.uri, c.zone)
		}
	}
}

// The backend's Cache-Control is honoured, as production honours it: an
// answer marked private, no-cache, no-store or max-age=0 is not stored, and
// max-age sets how long one stays fresh. OMERO's login (never_cache) is
// one of them.
func TestCacheControlHonoured(t *testing.T) {
	e := sharedEdge(t)
	for i, cc := range []string{"private", "no-cache", "no-store", "max-age=0", omerodemo.NeverCache} {
		uri := fmt.Sprintf("/api/v0/m/images/%d/", 601+i)
		for n := range 2 {
			r := e.get(t, e.Public, uri, omerodemo.HeaderCacheControl, cc)
			if r.Status != 200 || r.Header.Get("X-Cache-Status") != "MISS" {
				t.Errorf("Cache-Control %q, GET %d: %d %q; want 200 MISS (not stored)", cc, n+1, r.Status, r.Header.Get("X-Cache-Status"))
			}
		}
		if e.keysIn(t, "api")[uri] {
			t.Errorf("Cache-Control %q: stored", cc)
		}
	}

	const uri = "/api/v0/m/images/610/"
	first := e.get(t, e.Public, uri, omerodemo.HeaderCacheControl, "max-age=1")
	if first.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("max-age=1: first GET %q, want MISS", first.Header.Get("X-Cache-Status"))
	}
	if r := e.get(t, e.Public, uri); r.Header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("max-age=1: second GET %q, want HIT", r.Header.Get("X-Cache-Status"))
	}
	// Past max-age the entry is stale (served once more while a
	// background request refreshes it), not fresh for valid's day.
	took := testkit.Eventually(t, 5*time.Second, func() string {
		if s := e.get(t, e.Public, uri).Header.Get("X-Cache-Status"); s == "HIT" {
			return "still a HIT"
		}
		return ""
	})
	if took < 500*time.Millisecond {
		t.Errorf("the max-age=1 entry went stale after %s", took)
	}
}

// Within the cached URL classes the session cookie is hidden whatever the
// method: the JSON API's login on the public port hands out no session,
// although the backend does start one.
func TestSetCookieHiddenEveryMethod(t *testing.T) {
	e := sharedEdge(t)
	const login = "/api/v0/login/"
	form := "username=ann&password=secret"
	direct := e.request(t, http.MethodPost, e.Cluster.ReadOnly[0].Addr, login, form)
	if direct.Status != http.StatusOK || direct.Header.Get("Set-Cookie") == "" {
		t.Fatalf("POST %s to a node: %d, Set-Cookie %q; want 200 with a session", login, direct.Status, direct.Header.Get("Set-Cookie"))
	}
	for _, port := range []string{e.Public, e.Long, e.Refresh} {
		r := e.request(t, http.MethodPost, port, login, form)
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `"success":true`) {
			t.Errorf("POST %s via %s: %d %q, want the backend's 200", login, port, r.Status, r.Body)
		}
		if v := r.Header.Values("Set-Cookie"); len(v) > 0 {
			t.Errorf("POST %s via %s: Set-Cookie %q reached the client", login, port, v)
		}
	}
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		r := e.request(t, method, e.Public, "/api/v0/m/images/1/", "", omerodemo.HeaderStatus, "200")
		if v := r.Header.Values("Set-Cookie"); len(v) > 0 {
			t.Errorf("%s /api/v0/m/images/1/: Set-Cookie %q reached the client", method, v)
		}
		if r.Status != http.StatusOK || r.Header.Get("X-Omero-Node") == "" {
			t.Errorf("%s /api/v0/m/images/1/: status %d, node %q; want the backend's 200 (which sets a cookie)", method, r.Status, r.Header.Get("X-Omero-Node"))
		}
	}
}

// OMERO.web's login, and /webclient itself, redirect to the public web
// client on all three ports, as production's; no login reaches a backend.
func TestLoginRedirectAllPorts(t *testing.T) {
	e := sharedEdge(t)
	before := e.Cluster.Hits("/webclient/login/") + e.Cluster.Hits("/webclient/login")
	for name, port := range map[string]string{"public": e.Public, "cache buster": e.Refresh, "long timeout": e.Long} {
		for _, uri := range []string{"/webclient/login/", "/webclient/login", "/webclient/login/?url=/webclient/", "/webclient"} {
			r := e.get(t, port, uri)
			if r.Status != http.StatusFound || r.Header.Get("Location") != "/webclient/?experimenter=-1" {
				t.Errorf("%s GET %s: %d Location %q; want 302 /webclient/?experimenter=-1", name, uri, r.Status, r.Header.Get("Location"))
			}
		}
		r := e.request(t, http.MethodPost, port, "/webclient/login/", "username=ann&password=secret")
		if r.Status != http.StatusFound || r.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s POST /webclient/login/: %d, Set-Cookie %q; want the redirect and no session", name, r.Status, r.Header.Get("Set-Cookie"))
		}
	}
	if n := e.Cluster.Hits("/webclient/login/") + e.Cluster.Hits("/webclient/login") - before; n != 0 {
		t.Errorf("login requests reached a backend %d times", n)
	}
}

// On the private ports a request with an OMERO session passes through and
// is stored nowhere: the next anonymous request on the public port is a
// MISS, not that session's page. Without a session they share the zones.
func TestPrivatePortsSessions(t *testing.T) {
	e := sharedEdge(t)
	for i, port := range []struct{ name, addr string }{{"long timeout", e.Long}, {"cache buster", e.Refresh}} {
		uri := fmt.Sprintf("/webclient/metadata_details/%d/", 701+i)
		r := e.get(t, port.addr, uri, "Cookie", "sessionid=operator")
		if r.Status != http.StatusOK || r.Header.Get("X-Cache-Status") != "BYPASS" {
			t.Errorf("%s with a session: %d %q, want 200 BYPASS", port.name, r.Status, r.Header.Get("X-Cache-Status"))
		}
		if pub := e.get(t, e.Public, uri); pub.Header.Get("X-Cache-Status") != "MISS" {
			t.Errorf("public after a %s session: %q, want MISS (the session's page was stored)", port.name, pub.Header.Get("X-Cache-Status"))
		}

		// Without a cookie the private port stores for everyone.
		uri = fmt.Sprintf("/webclient/metadata_details/%d/", 711+i)
		if r := e.get(t, port.addr, uri); r.Status != http.StatusOK {
			t.Fatalf("%s without a session: %d", port.name, r.Status)
		}
		if pub := e.get(t, e.Public, uri); pub.Header.Get("X-Cache-Status") != "HIT" {
			t.Errorf("public after an anonymous %s request: %q, want HIT", port.name, pub.Header.Get("X-Cache-Status"))
		}
	}
}

// A client's port in Host never reaches OMERO, which builds the absolute
// URLs of /api/ answers from it: a poisoning attempt stores the host name
// alone, and the next visitor does not get the attacker's port. (The test
// site's address is 127.0.0.1, so the attacker keeps that host name.)
func TestHostPoisoning(t *testing.T) {
	e := sharedEdge(t)
	const uri = "/api/v0/?poison"
	attack := e.get(t, e.Public, uri, "Host", "127.0.0.1:6666")
	if attack.Header.Get("X-Cache-Status") != "MISS" || strings.Contains(attack.Body, "6666") ||
		!strings.Contains(attack.Body, "http://127.0.0.1/api/v0/") {
		t.Fatalf("GET with Host 127.0.0.1:6666: %s, body %s; want a MISS naming http://127.0.0.1/api/v0/", attack.Header.Get("X-Cache-Status"), attack.Body)
	}
	next := e.get(t, e.Public, uri)
	if next.Header.Get("X-Cache-Status") != "HIT" || strings.Contains(next.Body, "6666") {
		t.Errorf("the next visitor: %s, body %s; want a HIT without the attacker's port", next.Header.Get("X-Cache-Status"), next.Body)
	}
}

// Django's metrics page answers 404 and never reaches a backend.
func TestDjangoPrometheusHidden(t *testing.T) {
	e := sharedEdge(t)
	for _, port := range []string{e.Public, e.Long, e.Refresh} {
		for _, uri := range []string{"/django_prometheus/metrics", "/django_prometheus"} {
			if r := e.get(t, port, uri); r.Status != http.StatusNotFound {
				t.Errorf("GET %s via %s: %d, want 404", uri, port, r.Status)
			}
		}
	}
	if n := e.Cluster.Hits("/django_prometheus/metrics") + e.Cluster.Hits("/django_prometheus"); n != 0 {
		t.Errorf("the metrics page reached a backend %d times", n)
	}
}

// Production's redirects: moved studies and pages, the old mapr API.
func TestProductionRedirects(t *testing.T) {
	e := sharedEdge(t)
	for _, c := range []struct {
		uri      string
		status   int
		location string
	}{
		{"/mito/webclient/?show=screen-701", 302, "/webclient/?show=screen-1302"},
		{"/tara/webclient/?show=plate-362", 302, "/webclient/?show=plate-4751"},
		{"/pgpc/webclient/?show=run-2", 302, "/webclient/?show=plate-4101"},
		{"/mito", 302, "/webclient/?show=screen-1101"},
		{"/tara/anything", 302, "/webclient/?show=screen-1201"},
		{"/pgpc/", 302, "/webclient/?show=screen-1151"},
		{"/study/idr0083/figure/4i", 301, "/webclient/img_detail/9822151/?dataset=10201&x=34105&y=84808&zm=25&c=1|318:9927$808080&m=g"},
		{"/study/idr0083/figure/4r", 301, "/webclient/img_detail/9822152/?dataset=10201&x=80560&y=77440&zm=66&c=1|495:9204$808080&m=g"},
		{"/mineotaur/x", 302, "/about/mineotaur.html"},
		{"/jupyter", 302, "/about/analysis-environments.html"},
		{"/curation-workflow", 302, "/about/curation-workflow.html"},
		{"/submitter-survey", 302, "https://forms.gle/beR4vqLrgLgRzgSX9"},
		{"/mapr/api/gene/", 302, "/searchengine/apidocs/"},
		{"/about", 301, "/about/"},
	} {
		r := e.get(t, e.Public, c.uri)
		if r.Status != c.status || r.Header.Get("Location") != c.location {
			t.Errorf("GET %s: %d Location %q; want %d %q", c.uri, r.Status, r.Header.Get("Location"), c.status, c.location)
		}
	}
	// The mapr API's config stays with OMERO.web.
	if r := e.get(t, e.Public, "/mapr/api/config/"); r.Header.Get("X-Omero-Node") == "" {
		t.Errorf("GET /mapr/api/config/: %d %q, want it from OMERO.web", r.Status, r.Header.Get("Location"))
	}
}

// /omero-ws goes to the websocket pool: 400 without an Upgrade header,
// and an upgraded connection to OMERO_WEBSOCKETS otherwise.
func TestWebsocketPool(t *testing.T) {
	t.Parallel()
	ws, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	go serveEchoWebsocket(ws)
	e := newEdge(t, edgeConfig{Env: map[string]string{"OMERO_WEBSOCKETS": ws.Addr().String()}})

	if r := e.get(t, e.Public, "/omero-ws"); r.Status != http.StatusBadRequest {
		t.Errorf("GET /omero-ws without Upgrade: %d, want 400", r.Status)
	}
	conn, err := net.DialTimeout("tcp", e.Public, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /omero-ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", e.Public)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %d, Sec-WebSocket-Accept %q; want 101 from the websocket pool", res.StatusCode, res.Header.Get("Sec-Websocket-Accept"))
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Errorf("through the upgraded connection: %q, %v; want the pool's echo", line, err)
	}
}

// serveEchoWebsocket accepts websocket handshakes and then echoes lines
// (a stand-in for OMERO's websocket port; no frames needed to show the
// routing).
func serveEchoWebsocket(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			h := sha1.Sum([]byte(req.Header.Get("Sec-Websocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				base64.StdEncoding.EncodeToString(h[:]))
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprint(c, "echo "+line)
			}
		}()
	}
}

// Passive health counts connection failures and timeouts, as nginx's, and
// not an application's 5xx: after every read-only node has answered 503
// for one URL (twice), another URL is still answered at once by the pool.
func TestApplicationErrorsKeepNodesUp(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeConfig{ReadOnly: 2})
	ips := clientIPs(16)
	failed := make(map[string]int) // 503s per node
	for _, ip := range ips {
		for range 2 {
			r := e.getFrom(t, ip, e.Public, "/webclient/img_detail/801/", omerodemo.HeaderStatus, "503")
			if r.Status != http.StatusServiceUnavailable {
				t.Fatalf("GET with %s 503 from %s: %d", omerodemo.HeaderStatus, ip, r.Status)
			}
			failed[r.Header.Get("X-Omero-Node")]++
		}
	}
	if len(failed) != len(e.Cluster.ReadOnly) {
		t.Fatalf("503s came from %v; want every read-only node", failed)
	}
	for _, ip := range ips {
		start := time.Now()
		r := e.getFrom(t, ip, e.Public, "/webclient/")
		took := time.Since(start)
		if r.Status != http.StatusOK || took > 3*time.Second { // a node out would cost lb_try_duration, 5 s
			t.Errorf("GET /webclient/ from %s after the 503s: %d in %s; want 200 at once", ip, r.Status, took)
		}
	}
}

// When no backend answers, every request the cache handler saw carries a
// cache status, in the header and the access log (MISS, BYPASS on the cache
// buster), and every port shows the archive's 50x page with the 502.
func TestFailedFetchStatusAndErrorPage(t *testing.T) {
	t.Parallel()
	addr := closingListener(t) // connections fail there
	e := newEdge(t, edgeConfig{ReadOnly: 1, Env: map[string]string{"OMERO_READONLY": addr, "OMERO_READWRITE": addr}})

	for _, c := range []struct{ name, port, uri, status string }{
		{"public", e.Public, "/webgateway/render_image/901/", "MISS"},
		{"long timeout", e.Long, "/webgateway/render_image/902/", "MISS"},
		{"cache buster", e.Refresh, "/webgateway/render_image/903/", "BYPASS"},
		{"public, uncached", e.Public, "/webclient/", ""},
	} {
		r := e.get(t, c.port, c.uri)
		if r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "An error occurred.") {
			t.Errorf("%s GET %s: %d, body %.60q; want 502 with the 50x page", c.name, c.uri, r.Status, r.Body)
		}
		if got := r.Header.Get("X-Cache-Status"); got != c.status {
			t.Errorf("%s GET %s: X-Cache-Status %q, want %q", c.name, c.uri, got, c.status)
		}
		if c.status == "" {
			continue
		}
		if l := e.accessLog(t, r); deref(l.CacheStatus) != c.status || l.Status != http.StatusBadGateway {
			t.Errorf("%s GET %s: access log cache_status %s, status %d; want %s, 502", c.name, c.uri, deref(l.CacheStatus), l.Status, c.status)
		}
	}
}
