package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// TestHealth follows a proxy's health as a load balancer sees it: ok, then
// draining (the admin API's drain, as edgecache drain asks it) and back, then maintenance (its flag file),
// draining winning over maintenance. The check sits on the public site
// under a top-level maintenance handler, whose page must not answer it.
func TestHealth(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) { w.Write([]byte("page")) })
	flag := filepath.Join(t.TempDir(), "maintenance.flag")
	cf := strings.Replace(globalOptions("zone default 16MiB"), "admin off", "admin 127.0.0.1:$ADMIN", 1) + `
http://127.0.0.1:$PUBLIC {
	maintenance {
		flag ` + flag + `
		serve_cached
	}
	edge_cache_health /healthz
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC", "ADMIN")
	admin := "127.0.0.1:" + strconv.Itoa(s.ports["ADMIN"])
	check := func(what string, code int, status string, maint []string) {
		t.Helper()
		r := s.get(t, s.url("PUBLIC", "/healthz"))
		var body adminapi.HealthState
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatalf("%s: %d %q: %v", what, r.Status, r.Body, err)
		}
		if r.Status != code || body.Status != status || len(body.Maintenance) != len(maint) ||
			r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %q %v, want %d %s with maintenance %v", what, r.Status, r.Body, r.Header, code, status, maint)
		}
		for i := range maint {
			if i < len(body.Maintenance) && body.Maintenance[i] != maint[i] {
				t.Errorf("%s: maintenance %v, want %v", what, body.Maintenance, maint)
			}
		}
		if head := s.do(t, http.MethodHead, s.url("PUBLIC", "/healthz")); head.Status != code || head.Body != "" {
			t.Errorf("%s: HEAD %d %q", what, head.Status, head.Body)
		}
	}
	drain := func(on bool) {
		t.Helper()
		var state adminapi.HealthState
		if err := adminCall(t, admin, http.MethodPost, adminapi.DrainPath, adminapi.DrainRequest{Draining: on}, &state); err != nil || state.Draining != on {
			t.Fatalf("drain %v: %+v %v", on, state, err)
		}
	}
	t.Cleanup(func() { draining.Store(false) })

	check("at start", 200, adminapi.HealthOK, nil)
	drain(true)
	check("draining", 503, adminapi.HealthDraining, nil)
	if r := s.get(t, s.url("PUBLIC", "/page")); r.Status != 200 || r.Body != "page" {
		t.Errorf("a draining proxy must still serve: %d %q", r.Status, r.Body)
	}
	drain(false)
	check("drain off", 200, adminapi.HealthOK, nil)

	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the health check to see maintenance", func() bool {
		return s.get(t, s.url("PUBLIC", "/healthz")).Status == 503
	}))
	check("maintenance", 503, adminapi.HealthMaintenance, []string{flag})
	drain(true)
	check("draining in maintenance", 503, adminapi.HealthDraining, []string{flag})
	drain(false)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance to end", func() bool {
		return s.get(t, s.url("PUBLIC", "/healthz")).Status == 200
	}))
	check("after maintenance", 200, adminapi.HealthOK, nil)
}

// TestDrainRefusesBadRequests: the admin endpoint says what it wants.
func TestDrainRefusesBadRequests(t *testing.T) {
	cf := strings.Replace(globalOptions("zone default 16MiB"), "admin off", "admin 127.0.0.1:$ADMIN", 1)
	s := startCaddy(t, cf, nil, "ADMIN")
	admin := "127.0.0.1:" + strconv.Itoa(s.ports["ADMIN"])
	var out adminapi.HealthState
	if err := adminCall(t, admin, http.MethodPost, adminapi.DrainPath, map[string]string{"draining": "yes"}, &out); err == nil || !strings.Contains(err.Error(), "bad drain request") {
		t.Errorf("a string for draining: %v", err)
	}
	if err := adminCall(t, admin, http.MethodDelete, adminapi.DrainPath, nil, &out); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("DELETE: %v", err)
	}
	if err := adminCall(t, admin, http.MethodGet, adminapi.DrainPath, nil, &out); err != nil || out.Status != adminapi.HealthOK {
		t.Errorf("GET: %+v %v", out, err)
	}
}

func TestHealthCaddyfile(t *testing.T) {
	cfg := string(adapt(t, globalOptions("zone default 16MiB")+`
http://127.0.0.1:8081 {
	edge_cache_health
}
`))
	if !strings.Contains(cfg, `"handler":"edge_cache_health"`) {
		t.Errorf("config %s", cfg)
	}
	h := new(Health)
	for _, bad := range []string{"edge_cache_health extra", "edge_cache_health {\n\tflag x\n}"} {
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
