package nginximport_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// nginxConf is production's cache setup (idr-nginx.conf.in) cut to what the
// import reads: the _= map, the key, levels 1:2, proxy_cache_valid with a
// 404 validity, the ignored and hidden headers; plus a zone that honours
// Vary (production's ignores it) for the variant.
const nginxConf = `
@USER@
worker_processes 1;
error_log @PREFIX@/error.log warn;
pid @PREFIX@/nginx.pid;
events { worker_connections 64; }
http {
    log_format combined_cache '$remote_addr - $remote_user [$time_local] "$request" '
                              '$status $body_bytes_sent "$http_referer" "$http_user_agent" $upstream_cache_status';
    access_log @PREFIX@/access.log combined_cache;
    client_body_temp_path @PREFIX@/client_body;
    proxy_temp_path       @PREFIX@/proxy_temp;
    fastcgi_temp_path     @PREFIX@/fastcgi_temp;
    uwsgi_temp_path       @PREFIX@/uwsgi_temp;
    scgi_temp_path        @PREFIX@/scgi_temp;

    proxy_cache_path @PREFIX@/cache/thumbs levels=1:2 keys_zone=omerothumbnail:1m max_size=1g inactive=180d use_temp_path=off;
    proxy_cache_path @PREFIX@/cache/vary levels=1:2 keys_zone=vary:1m max_size=1g inactive=180d use_temp_path=off;

    map $request_uri $cache_key {
        default $request_uri;
        ~^(.+[\?\&])_=\d+(.*)$ $1$2;
    }

    server {
        listen 127.0.0.1:@PORT@;
        add_header X-Cache-Status $upstream_cache_status always;

        location / {
            proxy_pass http://127.0.0.1:@ORIGIN@;
            proxy_cache            omerothumbnail;
            proxy_cache_key        $cache_key;
            proxy_cache_valid      200 1d;
            proxy_cache_valid      404 10m;
            proxy_cache_methods    GET HEAD;
            proxy_cache_use_stale  error timeout invalid_header updating http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            proxy_cache_lock          on;
            proxy_cache_lock_age      1m;
            proxy_cache_lock_timeout  1m;
            proxy_ignore_headers   "Set-Cookie" "Vary" "Expires";
            proxy_hide_header Set-Cookie;
            proxy_read_timeout 900;
        }
        location /vary/ {
            proxy_pass http://127.0.0.1:@ORIGIN@;
            proxy_cache            vary;
            proxy_cache_key        $cache_key;
            proxy_cache_valid      200 1d;
            proxy_ignore_headers   "Set-Cookie" "Expires";
            proxy_hide_header Set-Cookie;
        }
    }
}
`

// edgecacheConf is the same caching in edgecache: the thumbs zone as
// production (Vary ignored), the vary zone honouring Vary.
const edgecacheConf = `{
	admin 127.0.0.1:@ADMIN@
	edge_cache {
		zone thumbs {
			memory 64MiB
			path @DIR@/edgecache/thumbs
			max_size 1GiB
			inactive 180d
		}
		zone vary {
			memory 16MiB
			path @DIR@/edgecache/vary
		}
	}
}
http://127.0.0.1:@PORT@ {
	bind 127.0.0.1
	log {
		output file @DIR@/edgecache-access.log
		format nginx "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $upstream_cache_status"
	}
	log_append cache_status {http.edge_cache.status}
	@vary path /vary/*
	edge_cache @vary {
		zone vary
		strip_query _
		valid 200 1d
		ignore_headers Set-Cookie Expires
	}
	@other not path /vary/*
	edge_cache @other {
		zone thumbs
		key {http.request.uri}
		strip_query _
		valid 200 1d
		valid 404 10m
		ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires
		use_stale error timeout invalid_header updating http_500 http_502 http_503 http_504
		background_update on
	}
	reverse_proxy 127.0.0.1:@ORIGIN@
}
`

// origin answers as the test backend (testkit.Backend counts requests).
type origin struct {
	slowIn  chan struct{} // closed when the slow response has started
	slowOne sync.Once
	release chan struct{} // closed to let it finish
}

var thumbSizes = []int{10, 5000, 100_000, 1<<20 + 3}

func thumbBody(n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	return b
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request, _ int64) {
	h := w.Header()
	h.Set("Set-Cookie", "sessionid=someones; Path=/")
	h.Set("Vary", "Cookie")
	switch {
	case strings.HasPrefix(r.URL.Path, "/webclient/render_thumbnail/slow/"):
		h.Set("Content-Length", "200000")
		w.WriteHeader(200)
		w.Write(make([]byte, 100000))
		w.(http.Flusher).Flush()
		o.slowOne.Do(func() { close(o.slowIn) })
		<-o.release
		w.Write(make([]byte, 100000))
	case strings.HasPrefix(r.URL.Path, "/webclient/render_thumbnail/"):
		var n int
		fmt.Sscanf(r.URL.Path, "/webclient/render_thumbnail/%d/", &n)
		h.Set("Content-Type", "image/jpeg")
		h.Set("ETag", fmt.Sprintf(`"thumb-%d"`, n))
		h.Set("Last-Modified", "Mon, 01 Jan 2024 10:00:00 GMT")
		h.Set("Content-Length", fmt.Sprint(thumbSizes[n]))
		w.Write(thumbBody(n, thumbSizes[n]))
	case r.URL.Path == "/static/truncated.js":
		h.Set("Content-Type", "text/javascript")
		h.Set("Content-Length", "30000")
		w.Write(bytes.Repeat([]byte("/* truncated */"), 2000))
	case r.URL.Path == "/api/v0/missing/":
		h.Set("Content-Type", "application/json")
		w.WriteHeader(404)
		w.Write([]byte(`{"message": "not found"}`))
	case r.URL.Path == "/api/v0/expiring/":
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "max-age=1")
		w.Write([]byte(`{"fresh": false}`))
	case r.URL.Path == "/vary/lang":
		h.Set("Content-Type", "text/plain")
		h.Set("Vary", "Accept-Language")
		if r.Header.Get("Accept-Language") == "fr" {
			w.Write([]byte("bonjour"))
		} else {
			w.Write([]byte("hello"))
		}
	default:
		http.NotFound(w, r)
	}
}

func thumbURI(n int, buster int64) string {
	return fmt.Sprintf("/webclient/render_thumbnail/%d/?_=%d", n, buster)
}

// nginxPath is where nginx stores the entry of an nginx key (levels 1:2).
func nginxPath(folder, key string) string {
	sum := md5.Sum([]byte(key))
	name := hex.EncodeToString(sum[:])
	return filepath.Join(folder, name[31:], name[29:31], name)
}

func TestImportFromRealNginx(t *testing.T) {
	nginx := testkit.RequireTool(t, "nginx", "nginx-light")
	dir := t.TempDir()

	o := &origin{slowIn: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(o.release)
		}
	}()
	backend := testkit.NewBackend(t, o.serve)
	originPort := backend.Listener.Addr().(*net.TCPAddr).Port

	// nginx fills its cache.
	prefix := filepath.Join(dir, "nginx")
	nginxPort := testkit.FreePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers write into the test's folder
	}
	if err := os.MkdirAll(filepath.Join(prefix, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(prefix, "nginx.conf"), fill(nginxConf, "@USER@", user, "@PREFIX@", prefix, "@PORT@", nginxPort, "@ORIGIN@", originPort))
	ngx := startNginx(t, nginx, prefix, nginxPort)
	nginxURL := fmt.Sprintf("http://127.0.0.1:%d", nginxPort)

	nginxAnswers := map[string]answer{}
	for n := range thumbSizes {
		uri := thumbURI(n, 1700000000000+int64(n))
		if a := get(t, nginxURL+uri); a.status != 200 || a.cache != "MISS" {
			t.Fatalf("nginx %s: %d %s", uri, a.status, a.cache)
		}
		a := get(t, nginxURL+thumbURI(n, 1700000000999), "User-Agent", `log "analysis"/1.0`, "Referer", "http://example.org/") // another _=: the same entry
		if a.cache != "HIT" || !bytes.Equal(a.body, thumbBody(n, thumbSizes[n])) {
			t.Fatalf("nginx does not cache %s as production: %s", uri, a.cache)
		}
		nginxAnswers[uri] = a
	}
	if a := get(t, nginxURL+"/api/v0/missing/"); a.status != 404 {
		t.Fatalf("nginx 404: %d", a.status)
	}
	if a := get(t, nginxURL+"/api/v0/missing/"); a.status != 404 || a.cache != "HIT" {
		t.Fatalf("nginx does not cache the 404: %d %s", a.status, a.cache)
	}
	get(t, nginxURL+"/static/truncated.js")
	expiringStored := time.Now()
	get(t, nginxURL+"/api/v0/expiring/")
	if a := get(t, nginxURL+"/vary/lang", "Accept-Language", "fr"); string(a.body) != "bonjour" {
		t.Fatalf("nginx vary: %q", a.body)
	}
	// One response is still being written when nginx stops.
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		if resp, err := client.Get(nginxURL + "/webclient/render_thumbnail/slow/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-o.slowIn
	ngx.stop(syscall.SIGTERM)
	close(o.release)
	released = true
	<-slowDone
	// The entry nginx had as valid for one second expires.
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the expiring entry has expired", func() bool {
		return time.Since(expiringStored) > 2*time.Second
	}))

	// Damaged files beside nginx's, as a crash or a bad copy leaves them.
	thumbs := filepath.Join(prefix, "cache", "thumbs")
	real, err := os.ReadFile(nginxPath(thumbs, "/webclient/render_thumbnail/2/?"))
	if err != nil {
		t.Fatalf("nginx's file for the 100 kB thumbnail: %v", err)
	}
	truncated := nginxPath(thumbs, "/static/truncated.js")
	if err := os.Truncate(truncated, 20000); err != nil {
		t.Fatalf("nginx's file for the file to truncate: %v", err)
	}
	writeFile(t, nginxPath(thumbs, "/bad/misplaced"), string(real))
	version := bytes.Clone(real)
	version[0] = 4
	writeFile(t, nginxPath(thumbs, "/bad/version"), string(version))
	badKey := bytes.Clone(real)
	copy(badKey[336:], "\nKEY: /webclient/render_thumbnail/9")
	writeFile(t, nginxPath(thumbs, "/bad/header"), string(badKey))
	writeFile(t, filepath.Join(thumbs, "0", "00", "0000000042"), "a temporary file of nginx")

	edgePort, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	caddyfile := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyfile, fill(edgecacheConf, "@ADMIN@", adminPort, "@DIR@", dir, "@PORT@", edgePort, "@ORIGIN@", originPort))
	configArgs := []string{"--config", caddyfile, "--adapter", "caddyfile"}

	// A variant into a zone that ignores Vary: skipped and counted (dry run).
	out, err := runImport(t, dir, append([]string{"--from", filepath.Join(prefix, "cache", "vary"), "--zone", "thumbs", "--dry-run"}, configArgs...)...)
	if err != nil || skippedCount(out, "Vary variant (the zone ignores Vary)") != 1 || !strings.Contains(out, "would import (dry run, nothing written): 0 entries") {
		t.Fatalf("dry run of the variant into thumbs: %v\n%s", err, out)
	}

	// The proxy is stopped: the command writes into the zone's folder.
	out, err = runImport(t, dir, append([]string{"--from", thumbs, "--zone", "thumbs"}, configArgs...)...)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	t.Logf("import into the stopped proxy's folder:\n%s", out)
	if !strings.Contains(out, "writing into the zone's folder") || !strings.Contains(out, "imported: 6 entries") {
		t.Errorf("want 4 thumbnails, the 404 and the expired entry imported:\n%s", out)
	}
	for reason, want := range map[string]int{"truncated": 1, "unknown version": 1, "bad header": 1, "misplaced": 1} {
		if got := skippedCount(out, reason); got != want {
			t.Errorf("skipped %s: %d, want %d", reason, got, want)
		}
	}
	if skippedCount(out, "temporary or foreign file") < 1 {
		t.Errorf("the temporary file is not counted as skipped:\n%s", out)
	}

	edge := startEdgecache(t, dir, configArgs, fmt.Sprintf("127.0.0.1:%d", adminPort), fmt.Sprintf("127.0.0.1:%d", edgePort))
	edgeURL := fmt.Sprintf("http://127.0.0.1:%d", edgePort)
	before := map[string]int{}
	for n := range thumbSizes {
		p := fmt.Sprintf("/webclient/render_thumbnail/%d/", n)
		before[p] = backend.RequestsFor(p)
	}
	for n := range thumbSizes {
		uri := thumbURI(n, 1700000000000+int64(n))
		ngxAnswer := nginxAnswers[uri]
		// Another _= value: edgecache's key drops it, as nginx's map did.
		a := get(t, edgeURL+thumbURI(n, 1700000000999), "User-Agent", `log "analysis"/1.0`, "Referer", "http://example.org/")
		if a.status != 200 || a.cache != "HIT" {
			t.Errorf("%s: %d %s, want 200 HIT", uri, a.status, a.cache)
		}
		if !bytes.Equal(a.body, ngxAnswer.body) {
			t.Errorf("%s: body of %d bytes differs from nginx's %d", uri, len(a.body), len(ngxAnswer.body))
		}
		for _, h := range []string{"Content-Type", "Etag", "Last-Modified"} {
			if a.header.Get(h) != ngxAnswer.header.Get(h) || a.header.Get(h) == "" {
				t.Errorf("%s: %s %q, nginx's %q", uri, h, a.header.Get(h), ngxAnswer.header.Get(h))
			}
		}
		if c := a.header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("%s: Set-Cookie %q reached the client", uri, c)
		}
	}
	if a := get(t, edgeURL+"/api/v0/missing/"); a.status != 404 || a.cache != "HIT" || string(a.body) != `{"message": "not found"}` {
		t.Errorf("the 404: %d %s %q, want 404 HIT", a.status, a.cache, a.body)
	}
	for p, n := range before {
		if got := backend.RequestsFor(p); got != n {
			t.Errorf("%s reached the origin %d times after the import", p, got-n)
		}
	}
	if got := backend.RequestsFor("/api/v0/missing/"); got != 1 {
		t.Errorf("the 404 reached the origin %d times, only nginx's fill should have", got)
	}
	if a := get(t, edgeURL+"/api/v0/expiring/"); a.cache != "EXPIRED" && a.cache != "STALE" {
		t.Errorf("the entry nginx had as expired is %s, want EXPIRED or STALE", a.cache)
	}
	if a := get(t, edgeURL+"/static/truncated.js"); a.cache != "MISS" || len(a.body) != 30000 {
		t.Errorf("the truncated file: %s, %d bytes, want a MISS of 30000", a.cache, len(a.body))
	}
	if a := get(t, edgeURL+"/webclient/render_thumbnail/slow/"); a.cache == "HIT" {
		t.Errorf("the response in flight when nginx stopped was imported")
	}

	// The proxy is running: it stores the entries itself, and they are
	// HITs at once.
	if a := get(t, edgeURL+"/vary/other"); a.status != 404 {
		t.Fatalf("the vary zone: %d", a.status)
	}
	varyBefore := backend.RequestsFor("/vary/lang")
	out, err = runImport(t, dir, append([]string{"--from", filepath.Join(prefix, "cache", "vary"), "--zone", "vary", "--vary-value", "Accept-Language: fr"}, configArgs...)...)
	if err != nil || !strings.Contains(out, "the proxy is running") || !strings.Contains(out, "imported: 1 entries") {
		t.Fatalf("import into the running proxy: %v\n%s", err, out)
	}
	if a := get(t, edgeURL+"/vary/lang", "Accept-Language", "fr"); a.cache != "HIT" || string(a.body) != "bonjour" {
		t.Errorf("the imported variant: %s %q, want HIT bonjour", a.cache, a.body)
	}
	if a := get(t, edgeURL+"/vary/lang", "Accept-Language", "de"); a.cache == "HIT" || string(a.body) != "hello" {
		t.Errorf("another language got the French variant: %s %q", a.cache, a.body)
	}
	if got := backend.RequestsFor("/vary/lang") - varyBefore; got != 1 {
		t.Errorf("the origin saw %d requests for /vary/lang, want 1 (the German one)", got)
	}

	// Running it again (an interrupted import resumed): nothing twice.
	out, err = runImport(t, dir, append([]string{"--from", thumbs, "--zone", "thumbs"}, configArgs...)...)
	if err != nil || !strings.Contains(out, "imported: 0 entries") || skippedCount(out, "already imported") != 6 {
		t.Errorf("second import: %v\n%s", err, out)
	}
	if err := edge.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// The access log lines are nginx's, but for the time.
	nginxLog, _ := os.ReadFile(filepath.Join(prefix, "access.log"))
	edgeLog, _ := os.ReadFile(filepath.Join(dir, "edgecache-access.log"))
	timeField := regexp.MustCompile(`\[[^]]+\]`)
	for n := range thumbSizes {
		want := linesWith(string(nginxLog), thumbURI(n, 1700000000999)+" ", "HIT")
		got := linesWith(string(edgeLog), thumbURI(n, 1700000000999)+" ", "HIT")
		if len(want) != 1 || len(got) != 1 {
			t.Fatalf("log lines of %s: nginx %q, edgecache %q", thumbURI(n, 1700000000999), want, got)
		}
		if !timeField.MatchString(got[0]) || timeField.ReplaceAllString(got[0], "[]") != timeField.ReplaceAllString(want[0], "[]") {
			t.Errorf("access log line\n  edgecache: %s\n  nginx:     %s", got[0], want[0])
		}
	}
}

func linesWith(log string, subs ...string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
