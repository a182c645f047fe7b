package production_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// TestStatusPageOfTheLayout: the production layout serves the status page
// on its private status port, with every zone of Caddyfile.example and the
// OMERO pools among the backends.
func TestStatusPageOfTheLayout(t *testing.T) {
	e := sharedEdge(t)
	page := e.get(t, e.Status, "/")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "<title>edgecache status</title>") {
		t.Fatalf("status page: %d %.200q", page.Status, page.Body)
	}
	r := e.get(t, e.Status, "/status.json")
	var st adminapi.Status
	if err := json.Unmarshal([]byte(r.Body), &st); err != nil {
		t.Fatalf("status.json: %v: %.200q", err, r.Body)
	}
	var zones []string
	for _, z := range st.Zones {
		zones = append(zones, z.Name)
	}
	want := "api default grafana images metadata static thumbnails viewers" // by name
	if strings.Join(zones, " ") != want {
		t.Errorf("zones %v, want %s", zones, want)
	}
	backends := map[string]bool{}
	for _, b := range st.Backends {
		backends[b.Address] = true
	}
	for _, addr := range append(e.Cluster.ReadOnlyAddrs(), e.Cluster.ReadWrite.Addr) {
		if !backends[addr] {
			t.Errorf("backends %+v lack %s", st.Backends, addr)
		}
	}
	if len(st.Maintenance) == 0 || st.Maintenance[0].FlagFile != e.Flag {
		t.Errorf("maintenance %+v, want the flag file %s", st.Maintenance, e.Flag)
	}
}
