package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/fleet"
	"github.com/edgecache/edgecache/internal/adminapi"
)

// TestFleetCommand prints the admin API's fleet view as a table, and as it
// is with --json.
func TestFleetCommand(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	view := adminapi.FleetResponse{Members: []fleet.Member{
		{Node: "proxy-a", Version: "v1.2.0", Zones: []string{"images", "thumbs"}, LastEvent: "1700-0", Behind: 0, Seen: now.Add(-1234 * time.Millisecond)},
		{Node: "proxy-b", Version: "v1.2.0", LastEvent: "1600-3", Behind: -1, Seen: now.Add(-9 * time.Second)},
		{Node: "proxy-c", Version: "v1.1.0", Zones: []string{"thumbs"}, LastEvent: "1500-0", Behind: fleet.MaxBehind, Seen: now.Add(time.Second)},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != adminapi.FleetPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(view)
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	var out bytes.Buffer
	if status, err := runFleet(context.Background(), parseFlags(t, fleetCommand, "--address", addr), &out, now); err != nil || status != 0 {
		t.Fatalf("status %d, error %v", status, err)
	}
	want := `NODE     VERSION  ZONES          LAST EVENT  BEHIND  SEEN
proxy-a  v1.2.0   images,thumbs  1700-0      0       1.2s ago
proxy-b  v1.2.0   -              1600-3      ?       9s ago
proxy-c  v1.1.0   thumbs         1500-0      >=1000  0s ago
`
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if _, err := runFleet(context.Background(), parseFlags(t, fleetCommand, "--json", "--address", addr), &out, now); err != nil {
		t.Fatal(err)
	}
	var got adminapi.FleetResponse
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got.Members) != 3 || got.Members[2].Behind != fleet.MaxBehind {
		t.Errorf("--json printed %s (%v)", out.String(), err)
	}
}

// TestFleetViewWithoutFleet: a proxy without a shared block says it is in
// no fleet, and the command fails.
func TestFleetViewWithoutFleet(t *testing.T) {
	admin, _ := startProxy(t, "zone default 16MiB", "")
	var out bytes.Buffer
	status, err := runFleet(context.Background(), parseFlags(t, fleetCommand, "--address", admin), &out, time.Now())
	if status != 1 || err == nil || !strings.Contains(err.Error(), "no shared block") {
		t.Errorf("status %d, error %v", status, err)
	}
}
