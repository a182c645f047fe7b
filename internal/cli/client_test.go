package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/internal/adminapi"
)

func TestAdminClientErrors(t *testing.T) {
	// nothing listening there
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out bytes.Buffer
	_, err = runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", addr), &out)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the admin API at "+addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: error %v", err)
	}

	// a server without the edge_cache API, and one answering garbage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case adminapi.KeysPath:
			w.Write([]byte("<html>not json</html>"))
		case adminapi.PurgePath:
			http.Error(w, "kaput", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := newAdminClient(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, uri, want string }{
		{http.MethodGet, "/elsewhere?x=1", "has no /elsewhere endpoint (HTTP 404)"},
		{http.MethodGet, adminapi.KeysPath + "?zone=z", "unexpected answer from GET /edge_cache/keys (HTTP 200)"},
		{http.MethodPost, adminapi.PurgePath, "HTTP 500 Internal Server Error: kaput"},
	} {
		var v adminapi.KeysResponse
		if err := c.do(context.Background(), tc.method, tc.uri, nil, &v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: error %v, want %q", tc.method, tc.uri, err, tc.want)
		}
	}

	for _, bad := range []string{"localhost:2019-2020", "fd/3", "udp/localhost:2019", "unix/"} {
		if _, err := newAdminClient(bad); err == nil {
			t.Errorf("address %q: no error", bad)
		}
	}
}

// TestAdminClientWithCaddy checks the client against Caddy's own admin
// endpoint, which enforces the Host and Origin of requests.
func TestAdminClientWithCaddy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`{"admin":{"listen":%q,"enforce_origin":true,"config":{"persist":false}},"apps":{}}`, addr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })

	c, err := newAdminClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]any
	if err := c.do(context.Background(), http.MethodGet, "/config/", nil, &config); err != nil {
		t.Fatalf("GET /config/: %v", err)
	}
	if admin, _ := config["admin"].(map[string]any); admin["listen"] != addr {
		t.Errorf("config %v", config)
	}
	// a Caddy without the edge_cache app: the API says so
	var out bytes.Buffer
	_, err = runPurge(context.Background(), parseFlags(t, purgeCommand, "--all", "--address", addr), &out)
	if err == nil || !strings.Contains(err.Error(), "no edge_cache app in the running config") {
		t.Errorf("error %v", err)
	}
}
