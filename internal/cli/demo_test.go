package cli

import (
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestDemo runs the demo, that is Caddyfile.example against the OMERO
// stand-ins, and checks the production behaviours that do not depend on
// the cache, and that a repeated request does not reach a backend.
func TestDemo(t *testing.T) {
	for _, name := range []string{envPublic, envPublicBind, envPrivateBind, envRefreshPort, envLongPort, envStatusPort,
		envReadOnly, envReadWrite, envWWW, envFlag, envCacheDir} {
		t.Setenv(name, os.Getenv(name)) // restored after the test
		os.Unsetenv(name)
	}
	t.Setenv("EDGECACHE_ADMIN", "off")
	t.Setenv(envPrivateBind, "127.0.0.1")
	t.Setenv(envRefreshPort, strconv.Itoa(testkit.FreePort(t)))
	t.Setenv(envLongPort, strconv.Itoa(testkit.FreePort(t)))
	t.Setenv(envStatusPort, strconv.Itoa(testkit.FreePort(t)))
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())

	DemoFiles = os.DirFS("../..") // the root package embeds the same files
	text, err := fs.ReadFile(DemoFiles, "Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envCacheDir, t.TempDir())

	d, err := startDemo(demoConfig{Listen: "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), ReadOnly: 2, Caddyfile: text})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			d.stop()
		}
	})

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(addr, path string, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	t.Run("cached URL", func(t *testing.T) {
		const path = "/webgateway/render_thumbnail/1/"
		resp, _ := get(d.public, path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if node := resp.Header.Get("X-Omero-Node"); !strings.HasPrefix(node, "ro-") {
			t.Errorf("answered by %q, want a read-only node", node)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Error("a cached URL's response carries Set-Cookie")
		}
		resp, _ = get(d.public, path)
		if n := d.cluster.Hits(path); n != 1 {
			t.Errorf("backend requests after two fetches: %d, want 1", n)
		}
		if resp.Header.Get("X-Cache-Status") != "HIT" {
			t.Errorf("second fetch X-Cache-Status %q", resp.Header.Get("X-Cache-Status"))
		}
	})
	t.Run("hints", func(t *testing.T) {
		var help strings.Builder
		d.printHelp(&help)
		text := help.String()
		if !strings.Contains(text, "touch "+d.flagFile+"\n  sleep 1\n  curl") {
			t.Errorf("the maintenance hint does not wait out the one-second check:\n%s", text)
		}
		// Every URL of the hints, in order: the long-timeout port's one
		// must be a MISS answered by the read-write node after the others.
		urls := regexp.MustCompile(`http://[^\s'/]+[^\s']*`).FindAllString(text, -1)
		var longURL string
		for _, u := range urls {
			addr, path, _ := strings.Cut(strings.TrimPrefix(u, "http://"), "/")
			if addr == d.long {
				longURL = "/" + path
				continue
			}
			if strings.Contains(u, "/about/") || path == "" {
				continue
			}
			get(addr, "/"+path)
		}
		if longURL == "" {
			t.Fatalf("no hint for the long-timeout port:\n%s", text)
		}
		resp, _ := get(d.long, longURL)
		if node, status := resp.Header.Get("X-Omero-Node"), resp.Header.Get("X-Cache-Status"); node != "rw" || status != "MISS" {
			t.Errorf("the long-timeout hint %s: node %q, %s; want the read-write node and a MISS", longURL, node, status)
		}
	})
	t.Run("CORS", func(t *testing.T) {
		for _, origin := range []string{"", "https://example.org"} {
			resp, _ := get(d.public, "/api/v0/", "Origin", origin)
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("Origin %q: Access-Control-Allow-Origin %q", origin, resp.Header.Get("Access-Control-Allow-Origin"))
			}
		}
	})
	t.Run("uncached URL keeps its session cookie", func(t *testing.T) {
		resp, _ := get(d.public, "/webclient/")
		if resp.StatusCode != 200 || len(resp.Cookies()) == 0 {
			t.Errorf("status %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
	})
	t.Run("redirects", func(t *testing.T) {
		for path, want := range map[string]struct {
			status   int
			location string
		}{
			"/webclient/login/": {302, "/webclient/?experimenter=-1"},
			"/about":            {301, "/about/"},
		} {
			resp, _ := get(d.public, path)
			if resp.StatusCode != want.status || resp.Header.Get("Location") != want.location {
				t.Errorf("%s: %d %q, want %d %q", path, resp.StatusCode, resp.Header.Get("Location"), want.status, want.location)
			}
		}
	})
	t.Run("about pages are local", func(t *testing.T) {
		resp, body := get(d.public, "/about/")
		if resp.StatusCode != 200 || title(body) != "About" || resp.Header.Get("X-Omero-Node") != "" {
			t.Errorf("status %d, title %q, node %q", resp.StatusCode, title(body), resp.Header.Get("X-Omero-Node"))
		}
	})
	t.Run("private ports use the read-write node", func(t *testing.T) {
		for _, addr := range []string{d.refresh, d.long} {
			resp, _ := get(addr, "/api/v0/")
			if resp.Header.Get("X-Omero-Node") != "rw" {
				t.Errorf("%s answered by %q", addr, resp.Header.Get("X-Omero-Node"))
			}
		}
	})
	t.Run("maintenance", func(t *testing.T) {
		if err := os.WriteFile(d.flagFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance starts", func() bool {
			resp, _ := get(d.public, "/webclient/")
			return resp.StatusCode == 503
		}))
		resp, body := get(d.public, "/webclient/")
		if title(body) != "OMERO maintenance" || resp.Header.Get("Retry-After") != "300" {
			t.Errorf("title %q, Retry-After %q", title(body), resp.Header.Get("Retry-After"))
		}
		for _, p := range []string{"/static/webgateway/css/ome.body.css", "/about/"} {
			if resp, _ := get(d.public, p); resp.StatusCode != 200 {
				t.Errorf("%s during maintenance: status %d", p, resp.StatusCode)
			}
		}
		if resp, _ := get(d.refresh, "/webclient/"); resp.StatusCode != 200 {
			t.Errorf("cache buster during maintenance: status %d", resp.StatusCode)
		}
		if err := os.Remove(d.flagFile); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance ends", func() bool {
			resp, _ := get(d.public, "/webclient/")
			return resp.StatusCode == 200
		}))
	})

	stopped = true
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{d.public, d.refresh, d.cluster.ReadWrite.Addr} {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			t.Errorf("%s still listening after stop", addr)
		}
	}
	if _, err := os.Stat(d.dir); err == nil {
		t.Errorf("temporary folder %s left behind", d.dir)
	}
}

func TestSplitListen(t *testing.T) {
	for in, want := range map[string][2]string{
		"8080":           {"", "8080"},
		":8080":          {"", "8080"},
		"127.0.0.1:9999": {"127.0.0.1", "9999"},
	} {
		host, port, err := splitListen(in)
		if err != nil || host != want[0] || port != want[1] {
			t.Errorf("%q: %q %q %v", in, host, port, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:", "a:b:c"} {
		if _, _, err := splitListen(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

var titleRE = regexp.MustCompile(`<title>([^<]*)</title>`)

// title returns an HTML page's title.
func title(body string) string {
	if m := titleRE.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}
