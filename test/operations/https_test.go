package operations_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestHTTPSHitOverHTTP2 serves a site over HTTPS with Caddy's internal
// issuer and the edge_cache listener wrapper, as production does: a miss
// then a hit over HTTP/2, from memory and from disk, and over HTTP/1.1
// with TLS, each with the whole body and one backend request per object.
func TestHTTPSHitOverHTTP2(t *testing.T) {
	b := newBackend(t, objects)
	dir := t.TempDir()
	admin, port := testkit.FreePort(t), testkit.FreePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	skip_install_trust
	auto_https disable_redirects
	servers {
		listener_wrappers {
			edge_cache
		}
	}
	edge_cache {
		zone disk {
			memory 8MiB
			path %s
		}
	}
}
https://127.0.0.1:%d {
	bind 127.0.0.1
	tls internal
	edge_cache {
		zone disk
		valid 200 1h
		ignore_headers Cache-Control
	}
	reverse_proxy %s
}
`, admin, filepath.Join(dir, "zone"), port, b.Addr())
	newProxy(t, dir, cfg, admin, port)

	// Caddy's local CA, made at start, signs the site's certificate.
	roots := x509.NewCertPool()
	rootFile := filepath.Join(dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	h2 := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, DisableCompression: true,
		TLSClientConfig: &tls.Config{RootCAs: roots}}}
	h1 := &http.Client{Transport: &http.Transport{DisableCompression: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)
	site := fmt.Sprintf("https://127.0.0.1:%d", port)

	// The certificate is issued in the background after start: wait for
	// a handshake that verifies.
	testkit.Eventually(t, 30*time.Second, func() string {
		pem, err := os.ReadFile(rootFile)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			return fmt.Sprintf("no local CA root at %s (%v)", rootFile, err)
		}
		res, err := h2.Head(site + "/")
		if err != nil {
			return fmt.Sprintf("no verified TLS handshake: %v", err)
		}
		res.Body.Close()
		return ""
	})

	check := func(client *http.Client, path, proto, cache string, size int) {
		t.Helper()
		res, err := client.Get(site + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s over %s: body cut after %d bytes: %v", path, res.Proto, len(body), err)
		}
		if res.StatusCode != http.StatusOK || res.Proto != proto || res.Header.Get("X-Cache-Status") != cache {
			t.Errorf("GET %s: %s %s %s, want 200 %s %s", path, res.Proto, res.Status, res.Header.Get("X-Cache-Status"), proto, cache)
		}
		if !bytes.Equal(body, content(path, 0, size)) {
			t.Errorf("GET %s over %s: %d bytes, not the object's %d", path, res.Proto, len(body), size)
		}
	}
	small := objectPath("small", 20<<10) // over net/http's 4 KiB buffer: what the wrapper coalesces on plain HTTP
	large := objectPath("large", 2<<20)  // over the memory tier's 512 KiB entry limit: streamed from disk
	for _, path := range []string{small, large} {
		size := 20 << 10
		if path == large {
			size = 2 << 20
		}
		check(h2, path, "HTTP/2.0", "MISS", size)
		check(h2, path, "HTTP/2.0", "HIT", size)
		check(h1, path, "HTTP/1.1", "HIT", size)
		if n := b.RequestsFor(path); n != 1 {
			t.Errorf("%s: %d backend requests, want 1", path, n)
		}
	}
}
