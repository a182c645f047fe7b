package caddymodule

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestMaintenanceNeverWaitsOnBackends: during maintenance with serve_cached,
// requests that would reach a backend get the page at once, and the backend
// (which hangs) sees none of them: misses of a cached path, and paths the
// cache does not handle, which reverse_proxy would otherwise retry for
// lb_try_duration and then wait on for the read timeout.
func TestMaintenanceNeverWaitsOnBackends(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
		switch r.URL.Path {
		case "/cached/hit":
			w.Write([]byte("stored before maintenance"))
			return
		case "/up":
			return
		}
		<-r.Context().Done() // hangs
	})
	flag := filepath.Join(t.TempDir(), "maintenance.flag")
	cf := globalOptions("zone default 16MiB") + `
http://127.0.0.1:$PUBLIC {
	maintenance {
		flag ` + flag + `
		serve_cached
	}
	@cached path /cached/*
	edge_cache @cached {
		valid 200 1h
		status_header X-Cache-Status
	}
	reverse_proxy $BACKEND {
		lb_try_duration 5s
		transport http {
			read_timeout 60s
		}
	}
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	expect(t, "before maintenance", s.get(t, s.url("PUBLIC", "/cached/hit")), 200, "MISS", "stored before maintenance")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, testkit.Holds("maintenance to start", func() bool {
		return s.get(t, s.url("PUBLIC", "/up")).Status == http.StatusServiceUnavailable
	}))
	before := be.Requests()
	expect(t, "a hit", s.get(t, s.url("PUBLIC", "/cached/hit")), 200, "HIT", "stored before maintenance")
	for _, path := range []string{"/cached/miss", "/webclient/", "/webclient/", "/cached/other"} {
		start := time.Now()
		r := s.get(t, s.url("PUBLIC", path))
		if took := time.Since(start); took > time.Second {
			t.Errorf("GET %s during maintenance took %s", path, took)
		}
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "aintenance") || r.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s during maintenance: %d %q, want the maintenance page", path, r.Status, abbreviate(r.Body))
		}
	}
	if n := be.Requests() - before; n != 0 {
		t.Errorf("during maintenance the backend was sent %d requests, want 0", n)
	}
}
