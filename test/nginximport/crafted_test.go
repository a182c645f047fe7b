package nginximport_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/nginxcache"
	"github.com/edgecache/edgecache/internal/testkit"
)

// writeNginxFile writes a cache file as nginx lays it out (levels 1:2),
// with the raw upstream header and body given.
func writeNginxFile(t *testing.T, folder, key, rawHeader, body string) {
	t.Helper()
	now := time.Now()
	e := &nginxcache.Entry{Key: key, ValidSec: now.Add(24 * time.Hour).Unix(), Date: now.Unix(), LastModified: -1}
	b, err := nginxcache.Encode(e, []byte(rawHeader), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(folder, nginxcache.FileName(nginxcache.KeyHash(key), []int{1, 2})), string(b))
}

// TestImportCraftedFiles: files no nginx writes, as an attacker with
// access to a cache folder might craft them, are not served as stored:
// a body still chunk-framed under Transfer-Encoding: chunked and a status
// outside 100-599 are refused, each with its skip reason; a header named
// in Connection (hop-by-hop) is dropped. nginx's own form of a chunked
// response (the header kept, the body decoded, as nginx 1.22 writes it)
// is imported and served as its decoded body.
func TestImportCraftedFiles(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "nginx")
	writeNginxFile(t, folder, "/crafted/chunked",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	writeNginxFile(t, folder, "/crafted/status",
		"HTTP/1.1 999 Whatever\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n", "oops")
	writeNginxFile(t, folder, "/crafted/connection",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Secret, close\r\nX-Secret: s3cr3t\r\nKeep-Alive: timeout=5\r\nContent-Length: 6\r\n\r\n", "public")
	writeNginxFile(t, folder, "/nginx/chunked",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", "hello world")

	edgePort, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	backend := testkit.NewBackend(t, nil)
	caddyfile := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyfile, fill(edgecacheConf, "@ADMIN@", adminPort, "@DIR@", dir, "@PORT@", edgePort, "@ORIGIN@", strings.TrimPrefix(backend.Addr(), "127.0.0.1:")))
	configArgs := []string{"--config", caddyfile, "--adapter", "caddyfile"}
	out, err := runImport(t, dir, append([]string{"--from", folder, "--zone", "thumbs"}, configArgs...)...)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	t.Logf("import of the crafted files:\n%s", out)
	if !strings.Contains(out, "imported: 2 entries") {
		t.Errorf("want 2 entries imported (the Connection one and nginx's chunked one):\n%s", out)
	}
	for reason, want := range map[string]int{"body still chunk-framed": 1, "status outside 100-599": 1} {
		if got := skippedCount(out, reason); got != want {
			t.Errorf("skipped %s: %d, want %d", reason, got, want)
		}
	}

	edge := startEdgecache(t, dir, configArgs, fmt.Sprintf("127.0.0.1:%d", adminPort), fmt.Sprintf("127.0.0.1:%d", edgePort))
	defer edge.Stop(syscall.SIGTERM, 20*time.Second)
	edgeURL := fmt.Sprintf("http://127.0.0.1:%d", edgePort)
	if a := get(t, edgeURL+"/crafted/chunked"); a.cache == "HIT" || strings.Contains(string(a.body), "\r\n") {
		t.Errorf("the chunk-framed file: %d %s %q, want the origin's answer", a.status, a.cache, a.body)
	}
	if a := get(t, edgeURL+"/crafted/status"); a.cache == "HIT" || a.status == 999 {
		t.Errorf("the status 999 file: %d %s", a.status, a.cache)
	}
	a := get(t, edgeURL+"/crafted/connection")
	if a.cache != "HIT" || string(a.body) != "public" {
		t.Errorf("the Connection file: %d %s %q, want a HIT of \"public\"", a.status, a.cache, a.body)
	}
	for _, h := range []string{"X-Secret", "Keep-Alive"} {
		if v := a.header.Get(h); v != "" {
			t.Errorf("%s: %q reached the client", h, v)
		}
	}
	if a := get(t, edgeURL+"/nginx/chunked"); a.cache != "HIT" || string(a.body) != "hello world" || a.header.Get("Content-Length") != "11" {
		t.Errorf("nginx's chunked entry: %d %s %q (Content-Length %q), want a HIT of \"hello world\"", a.status, a.cache, a.body, a.header.Get("Content-Length"))
	}
}
