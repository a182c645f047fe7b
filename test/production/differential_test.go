package production_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/omerodemo"
	"github.com/edgecache/edgecache/internal/testkit"
)

// The differential test runs the production nginx configuration
// (testdata/idr-nginx.conf.in: ome/ansible-role-nginx-proxy 1.16.2 rendered
// with IDR/deployment's variables, a copy of the reference) on Debian's
// nginx-light, and Caddyfile.example through edgecache, side by side
// against the same OMERO stand-ins, sends both the same requests in the
// same order, and compares status, cache status, body and the headers a
// client acts on. Every difference must be on the list of deliberate ones
// below, and every listed difference must still occur.

// deliberate is a difference between the two proxies that is meant.
type deliberate struct {
	cases string // regexp on the case name
	field string // "status", "cache", "body" or "header <Name>"
	// when, if set, narrows the entry to answers it accepts.
	when func(nginx, edge answer) bool
	// mayAgree marks a difference that depends on timing: not reported
	// when the answers happen to agree.
	mayAgree bool
	why      string
}

// nginxStockPage reports an answer nginx wrote itself (its built-in page),
// where Caddy's redir, respond and errors write no body.
func nginxStockPage(ng, ec answer) bool {
	return strings.Contains(ng["body"], "<hr><center>nginx/") && ec["body"] == ""
}

// corsOnError reports Caddy's Access-Control-Allow-Origin on an error
// answer, where nginx's add_header (without always) adds none.
func corsOnError(ng, ec answer) bool {
	return ng["status"] >= "400" && ng["header Access-Control-Allow-Origin"] == "" && ec["header Access-Control-Allow-Origin"] == "*"
}

// localFile names the answers both proxies serve from the www folder.
const localFile = `^public GET /about/$|down\)|\(maintenance\)`

// deliberateDifferences is the written list (docs/migrating-from-nginx.md,
// "Deliberate differences", gives the reasons at more length).
var deliberateDifferences = []deliberate{
	{cases: `_=\d`, field: "cache",
		why: "jQuery's _ parameter: edgecache drops it and its separator from the key (/x?_=1 and /x are one entry); production's map keeps the separator (/x?), another entry"},
	{cases: `\(Authorization\)`, field: "cache",
		why: "a request with Authorization is someone's: edgecache passes it through (BYPASS); nginx stores it"},
	{cases: `\(after Authorization\)`, field: "cache",
		why: "(consequence) nothing was stored for the Authorization request, so the next one misses where nginx serves that answer to everyone"},
	{cases: `\(range, (first|second)\)`, field: "status",
		why: "ranges are served from the cache, and on a miss while the whole object is stored; nginx answers ranges only when the backend sends Accept-Ranges (OMERO does not), so always the whole 200"},
	{cases: `\(range, (first|second)\)`, field: "body", why: "(the range)"},
	{cases: `\(range, (first|second)\)`, field: "header Content-Range", why: "(the range)"},
	{cases: `^long GET /webclient/metadata_details/21/ \(session\)$`, field: "cache",
		why: "private_cookies sessionid on the private ports: a session's page passes through (BYPASS), stored nowhere; nginx stores it in the shared zones"},
	{cases: `^public GET /webclient/metadata_details/21/ \(after the session\)$`, field: "cache",
		why: "(consequence) that session's page was not stored, so the public port misses where nginx serves it to everyone"},
	{cases: `^public GET /webclient/metadata_details/21/ \(after the session\)$`, field: "body", why: "(the same)"},
	{cases: `^public GET /webclient/metadata_details/21/ \(after the session\)$`, field: "header X-Omero-Node", why: "(the same)"},
	{cases: `^public GET /(webclient/search/|figure/|prometheus/federate)`, field: "cache",
		why: "URLs production routes through its cache locations but never stores (cache bypass and no_cache both on): edgecache passes them through without a cache status, nginx says BYPASS"},
	{cases: `.`, field: "body", when: nginxStockPage,
		why: "answers the proxy makes itself (redirects, 404, 400): nginx writes its built-in page, Caddy an empty body"},
	{cases: `.`, field: "header Content-Type", when: nginxStockPage, why: "(the built-in page's type)"},
	{cases: `^public GET .* \(all down\)$`, field: "body",
		when: func(ng, ec answer) bool { return strings.Contains(ec["body"], "An error occurred.") },
		why:  "the 50x page on every location: production's cached locations on the public port set their own error_page (the maintenance page), which replaces the server's 50x one, so nginx shows its built-in 502 page for every OMERO page"},
	{cases: `.`, field: "header Access-Control-Allow-Origin", when: corsOnError,
		why: "CORS on error answers: Caddy's header sets it on every answer, so a browser script can read an error; nginx's add_header (without always) adds it to 2xx and 3xx only"},
	{cases: `\(maintenance\)`, field: "header Retry-After",
		why: "the maintenance page says when to retry (Retry-After: 300); nginx's says nothing"},
	{cases: `\(maintenance\)`, field: "header Cache-Control",
		why: "the maintenance page is marked no-store, so no browser or downstream cache keeps it past the maintenance"},
	{cases: localFile, field: "header Content-Type",
		why: "local pages: Caddy's file server names the charset (text/html; charset=utf-8), nginx's types say text/html"},
	{cases: localFile, field: "header Vary",
		why: "local pages: Caddy's file server says Vary: Accept-Encoding (it can serve precompressed files)"},
	{cases: localFile, field: "header Last-Modified",
		why: "the 50x page: Caddy's file server dates it; nginx's error_page does not"},
	{cases: `^public GET /study/idr0083/figure/4i$`, field: "header Location",
		why: "production's redirect map reads $8 of the target 9927$808080 (a channel colour) as an empty regex capture and sends 992708080; edgecache sends the target as written"},
	{cases: `^public GET /webgateway/render_image/51/0/0/ \(all down\)$`, field: "status", mayAgree: true,
		why: "with every read-only node already known down, Caddy answers 503 (no upstream) after lb_try_duration, waiting for a restarting node; nginx tries them again and answers 502"},
}

// renderNginx fills the placeholders of the production config: ports,
// folders and the user. Every caching and proxy directive stays as
// production has it.
func renderNginx(t *testing.T, vars map[string]string) string {
	t.Helper()
	in, err := os.ReadFile(filepath.Join("testdata", "idr-nginx.conf.in"))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, "@"+k+"@", v)
	}
	out := strings.NewReplacer(pairs...).Replace(string(in))
	if left := regexp.MustCompile(`@[A-Z_0-9]+@`).FindString(out); left != "" {
		t.Fatalf("the nginx config still has the placeholder %s", left)
	}
	return out
}

// startNginx renders and runs the production config under dir, and stops
// it when the test ends.
func startNginx(t *testing.T, dir string, vars map[string]string) {
	t.Helper()
	bin := testkit.RequireTool(t, "nginx", "nginx-light")
	vars["PREFIX"] = dir
	vars["USER"] = ""
	if os.Geteuid() == 0 {
		vars["USER"] = "user root;" // the workers write the cache under dir
	}
	// nginx makes a cache path's last folder, not its parents.
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(renderNginx(t, vars)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	log, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	errorLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(b)
	}
	var listen []string
	for _, p := range []string{vars["PUBLIC_PORT"], vars["REFRESH_PORT"], vars["LONG_PORT"]} {
		listen = append(listen, "127.0.0.1:"+p)
	}
	nginx, err := testkit.Start(testkit.Command{
		Program: bin,
		Args:    []string{"-p", dir, "-c", conf, "-g", "daemon off;"},
		Output:  log,
		Listen:  listen,
		Within:  10 * time.Second,
	})
	if err != nil {
		log.Close()
		t.Fatalf("nginx: %v\n%s", err, errorLog())
	}
	t.Cleanup(func() {
		nginx.Stop(os.Interrupt, 10*time.Second) // SIGINT: fast shutdown
		log.Close()
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", errorLog())
		}
	})
}

// diffCase is one request sent to both proxies.
type diffCase struct {
	port, method, uri, note string
	header                  []string // name, value pairs
	form                    string
	before                  func(t *testing.T) // runs before the request, once for both
}

func (c diffCase) name() string {
	n := c.port + " " + c.method + " " + c.uri
	if c.note != "" {
		n += " (" + c.note + ")"
	}
	return n
}

// answer is the part of a response the proxies are compared on.
type answer map[string]string

var (
	sessionUUID = regexp.MustCompile(`"sessionUuid":"[^"]*"`)
	absolute    = regexp.MustCompile(`^https?://[^/]+`)
)

// comparedHeaders are those a client acts on; Date, Server, Via,
// Connection, ETag (file servers spell it differently) and Content-Length
// (the body is compared) are not.
var comparedHeaders = []string{"Location", "Content-Type", "Cache-Control", "Vary", "Expires",
	"Set-Cookie", "Access-Control-Allow-Origin", "Content-Range", "Last-Modified", "Retry-After", "Allow", "X-Omero-Node"}

func answerOf(r response) answer {
	a := answer{
		"status": fmt.Sprint(r.Status),
		"cache":  r.Header.Get("X-Cache-Status"),
		"body":   sessionUUID.ReplaceAllString(r.Body, `"sessionUuid":"…"`),
	}
	for _, name := range comparedHeaders {
		v := r.Header.Values(name)
		switch name {
		case "Location":
			for i := range v {
				v[i] = absolute.ReplaceAllString(v[i], "") // nginx makes its own redirects absolute
			}
		case "Expires":
			if len(v) > 0 {
				v = []string{"present"}
			}
		case "Set-Cookie":
			for i := range v {
				v[i], _, _ = strings.Cut(v[i], "=") // session ids differ
			}
		}
		a["header "+name] = strings.Join(v, ", ")
	}
	return a
}

func TestDifferentialAgainstNginx(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The two read-only nodes share one name, so that bodies do not depend
	// on which node a proxy's client hash picks (nginx hashes a client's
	// /24, Caddy its whole address).
	cluster := new(omerodemo.Cluster)
	t.Cleanup(func() { cluster.Close() })
	for _, name := range []string{"ro", "ro", "rw"} {
		n, err := omerodemo.Listen(name, omerodemo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "rw" {
			cluster.ReadWrite = n
		} else {
			cluster.ReadOnly = append(cluster.ReadOnly, n)
		}
	}
	ports := make([]string, 3)
	for i := range ports {
		addr, err := testkit.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = addr
	}
	// The websocket pool, monitoring and search engine: a port that
	// accepts and closes at once (a merely free port may be taken by
	// another test meanwhile).
	unused := closingListener(t)
	nginxDir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(nginxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	startNginx(t, nginxDir, map[string]string{
		"PUBLIC_PORT":  port(ports[0]),
		"REFRESH_PORT": port(ports[1]),
		"LONG_PORT":    port(ports[2]),
		"RO1_PORT":     port(cluster.ReadOnly[0].Addr),
		"RO2_PORT":     port(cluster.ReadOnly[1].Addr),
		"RW_PORT":      port(cluster.ReadWrite.Addr),
		"UNUSED_PORT":  port(unused),
		"WWW":          filepath.Join(repoRoot, "www"),
	})
	flag := filepath.Join(nginxDir, "omero-maintenance.flag") // one flag for both
	e := newEdge(t, edgeConfig{Dir: filepath.Join(dir, "edge"), Cluster: cluster, Env: map[string]string{
		"OMERO_WEBSOCKETS":           unused,
		"GRAFANA":                    unused,
		"PROMETHEUS":                 unused,
		"SEARCHENGINE":               unused,
		"EDGECACHE_MAINTENANCE_FLAG": flag,
	}})
	nginxPorts := map[string]string{"public": ports[0], "refresh": ports[1], "long": ports[2]}
	edgePorts := map[string]string{"public": e.Public, "refresh": e.Refresh, "long": e.Long}

	get := func(port, uri, note string, header ...string) diffCase {
		return diffCase{port: port, method: http.MethodGet, uri: uri, note: note, header: header}
	}
	maintenanceOn := func(t *testing.T) {
		touch(t, flag)
		testkit.Eventually(t, 3*time.Second, func() string { return isMaintenance(e.get(t, e.Public, "/webclient/?probe")) })
	}
	maintenanceOff := func(t *testing.T) {
		remove(t, flag)
		testkit.Eventually(t, 3*time.Second, func() string {
			if r := e.get(t, e.Public, "/webclient/?probe"); r.Status != http.StatusOK {
				return fmt.Sprintf("status %d", r.Status)
			}
			return ""
		})
	}
	cases := []diffCase{
		// Every cached URL class: a miss, then a hit.
		get("public", "/webgateway/render_image/11/0/0/", "first"),
		get("public", "/webgateway/render_image/11/0/0/", "second"),
		{port: "public", method: http.MethodHead, uri: "/webgateway/render_image/11/0/0/", note: "HEAD hit"},
		{port: "public", method: http.MethodHead, uri: "/webgateway/render_image/12/0/0/", note: "HEAD miss"},
		get("public", "/webgateway/render_image/12/0/0/", "GET after HEAD"),
		get("public", "/webclient/render_image/11/", "first"),
		get("public", "/webclient/render_image/11/", "second"),
		get("public", "/webgateway/render_thumbnail/11/", "first"),
		get("public", "/webgateway/render_thumbnail/11/", "second"),
		get("public", "/webclient/get_thumbnail/11/", "first"),
		get("public", "/webclient/get_thumbnail/11/", "second"),
		get("public", "/webgateway/get_thumbnails/?id=11&id=12", "first"),
		get("public", "/webgateway/get_thumbnails/?id=11&id=12", "second"),
		get("public", "/webgateway/get_thumbnails/?id=11&id=12&_=123", ""),
		get("public", "/webclient/get_thumbnails/?id=13", "first"),
		get("public", "/webclient/get_thumbnails/?id=13", "second"),
		get("public", "/webclient/metadata_details/11/", "first"),
		get("public", "/webclient/metadata_details/11/", "second"),
		get("public", "/webgateway/metadata_details/11/", "first", omerodemo.HeaderStatus, "200"),
		get("public", "/webgateway/metadata_details/11/", "second"),
		get("public", "/api/v0/m/images/11/", "first"),
		get("public", "/api/v0/m/images/11/", "second", "Cookie", "sessionid=another"),
		get("public", "/api/v0/m/images/11/?_=42", "jQuery"),
		get("public", "/api/v0/", "first"),
		get("public", "/api/v0/", "second"),
		get("public", "/gallery-api/projects/", "first", omerodemo.HeaderStatus, "200"),
		get("public", "/gallery-api/projects/", "second"),
		get("public", "/webclient/img_detail/11/", "first"),
		get("public", "/webclient/img_detail/11/", "second"),
		get("public", "/iviewer/?images=11", "first", omerodemo.HeaderStatus, "200"),
		get("public", "/iviewer/?images=11", "second"),
		get("public", "/static/webgateway/css/ome.body.css", "first"),
		get("public", "/static/webgateway/css/ome.body.css", "second"),
		get("public", "/static/webgateway/css/ome.body.css", "conditional", "If-Modified-Since", "Mon, 02 Jun 2025 10:00:00 GMT"),
		get("public", "/webgateway/render_image/41/0/0/", "range, first", "Range", "bytes=0-9"),
		get("public", "/webgateway/render_image/41/0/0/", "range, second", "Range", "bytes=0-9"),
		get("public", "/webgateway/render_image/404/x/", "not found", ""),
		get("public", "/webgateway/render_image/404/x/", "not found again", ""),
		// Cache-Control is honoured; Set-Cookie, Vary and Expires are not.
		get("public", "/api/v0/m/images/12/", "private", omerodemo.HeaderCacheControl, "private"),
		get("public", "/api/v0/m/images/12/", "after private"),
		get("public", "/api/v0/m/images/13/", "max-age", omerodemo.HeaderCacheControl, "max-age=3600"),
		get("public", "/api/v0/m/images/13/", "after max-age"),
		get("public", "/api/v0/m/images/14/", "Authorization", "Authorization", "Basic dTpw"),
		get("public", "/api/v0/m/images/14/", "after Authorization"),
		// Other methods pass; the session cookie is hidden.
		{port: "public", method: http.MethodPost, uri: "/api/v0/login/", form: "username=ann&password=secret"},
		{port: "public", method: http.MethodPut, uri: "/api/v0/m/images/11/", header: []string{omerodemo.HeaderStatus, "200"}},
		// Uncached pages keep their cookie.
		get("public", "/webclient/", ""),
		get("public", "/", ""),
		get("public", "/webclient/search/?query=x", ""),
		get("public", "/figure/", ""),
		// The site's own rules.
		get("public", "/webclient/login/", ""),
		get("public", "/webclient/login", ""),
		get("public", "/webclient", ""),
		get("public", "/django_prometheus/metrics", ""),
		get("public", "/mito/webclient/?show=screen-701", ""),
		get("public", "/mito/", ""),
		get("public", "/study/idr0083/figure/4i", ""),
		get("public", "/mapr/api/gene/", ""),
		get("public", "/mapr/api/config/", ""),
		get("public", "/about", ""),
		get("public", "/about/", ""),
		get("public", "/omero-ws", "no upgrade"),
		get("public", "/grafana/x", "down"),
		get("public", "/prometheus/federate", "down"),
		get("public", "/searchengine/", "down"),
		// Private ports.
		get("long", "/webclient/login/", ""),
		get("long", "/webclient/metadata_details/21/", "session", "Cookie", "sessionid=operator"),
		get("public", "/webclient/metadata_details/21/", "after the session"),
		get("long", "/webclient/metadata_details/22/", ""),
		get("public", "/webclient/metadata_details/22/", "after long"),
		get("refresh", "/webclient/metadata_details/11/", ""),
		get("public", "/webclient/metadata_details/11/", "after refresh"),
		get("refresh", "/webclient/metadata_details/23/", "new"),
		get("public", "/webclient/metadata_details/23/", "after refresh"),
		// Maintenance: OMERO's pages and even hits get the page; static
		// files stay.
		{port: "public", method: http.MethodGet, uri: "/webclient/", note: "maintenance", before: maintenanceOn},
		get("public", "/api/v0/m/images/11/", "maintenance"),
		get("public", "/static/webgateway/css/ome.body.css", "in maintenance"),
		{port: "public", method: http.MethodGet, uri: "/webclient/", note: "after maintenance", before: maintenanceOff},
		// Backends down: the 50x page, with the cache status.
		{port: "long", method: http.MethodGet, uri: "/webgateway/render_image/31/0/0/", note: "read-write down",
			before: func(t *testing.T) { cluster.ReadWrite.Close() }},
		get("refresh", "/webgateway/render_image/31/0/0/", "read-write down"),
		{port: "public", method: http.MethodGet, uri: "/webclient/", note: "all down",
			before: func(t *testing.T) {
				for _, n := range cluster.ReadOnly {
					n.Close()
				}
			}},
		get("public", "/webgateway/render_image/51/0/0/", "all down"),
		get("public", "/webgateway/render_image/11/0/0/", "all down, cached"),
	}

	used := make([]bool, len(deliberateDifferences))
	for _, c := range cases {
		if c.before != nil {
			c.before(t)
		}
		var answers [2]answer
		for i, addr := range []string{nginxPorts[c.port], edgePorts[c.port]} {
			r, err := e.send("", c.method, addr, c.uri, c.form, c.header...)
			if err != nil {
				t.Fatalf("%s via %s: %v", c.name(), []string{"nginx", "edgecache"}[i], err)
			}
			answers[i] = answerOf(r)
		}
		t.Logf("%-70s nginx %s %-6s edgecache %s %s", c.name(), answers[0]["status"], answers[0]["cache"], answers[1]["status"], answers[1]["cache"])
		for _, field := range fieldsOf(answers[0]) {
			ng, ec := answers[0][field], answers[1][field]
			if ng == ec {
				continue
			}
			listed := false
			for i, d := range deliberateDifferences {
				if d.field == field && regexp.MustCompile(d.cases).MatchString(c.name()) && (d.when == nil || d.when(answers[0], answers[1])) {
					listed, used[i] = true, true
				}
			}
			if !listed {
				t.Errorf("%s: %s differs:\n\tnginx:     %.300q\n\tedgecache: %.300q", c.name(), field, ng, ec)
			}
		}
	}
	for i, d := range deliberateDifferences {
		if !used[i] && !d.mayAgree {
			t.Errorf("listed as deliberate, but the answers agree: %s %s (%s)", d.cases, d.field, d.why)
		}
	}
}

// closingListener returns the address of a listener that closes every
// connection at once, as a backend that is down but whose port is held.
func closingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func fieldsOf(a answer) []string {
	fields := []string{"status", "cache", "body"}
	for _, name := range comparedHeaders {
		fields = append(fields, "header "+name)
	}
	return fields
}
