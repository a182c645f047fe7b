package fleet_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/adminapi"
	"github.com/edgecache/edgecache/internal/testkit"
)

// status reads p's status.json.
func (p *proxy) status(t *testing.T) adminapi.Status {
	t.Helper()
	r, err := p.fetch("http://127.0.0.1:" + strconv.Itoa(p.Admin) + adminapi.StatusJSONPath)
	if err != nil || r.status != 200 {
		t.Fatalf("%s status.json: %v %d %s", p.Name, err, r.status, r.body)
	}
	var st adminapi.Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// eventsOf lists events as "kind target count by", newest first.
func eventsOf(st adminapi.Status) []string {
	var out []string
	for _, e := range st.Events {
		out = append(out, fmt.Sprintf("%s %s %d %s", e.Kind, e.Target, e.Count, e.By))
	}
	return out
}

// TestStatusShowsFleet: each proxy's status lists the fleet (Redis up, both
// members, recently seen) and the purges and refreshes it made and those
// it applied from the other, saying who made them.
func TestStatusShowsFleet(t *testing.T) {
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{testkit.StartRedis(t).Addr}, fleetOptions{Origin: o.Addr(), Zones: diskZone})
	for _, path := range []string{"/p/1", "/p/2", "/r/1"} {
		for _, p := range ps {
			p.mustGet(t, path)
		}
	}
	if _, err := ps[0].refresh("/r/1"); err != nil {
		t.Fatal(err)
	}
	ps[1].edgecache(t, "purge", "--prefix", "/p/")

	want := [][]string{
		{"purge prefix /p/ 2 fleet p2", "refresh /r/1 1 refresh listener"},
		{"purge prefix /p/ 2 cli", "refresh /r/1 1 fleet p1"},
	}
	for i, p := range ps {
		testkit.Eventually(t, 5*time.Second, func() string {
			st := p.status(t)
			if got := eventsOf(st); fmt.Sprint(got) != fmt.Sprint(want[i]) {
				return fmt.Sprintf("%s events %q, want %q", p.Name, got, want[i])
			}
			f := st.Fleet
			if f == nil || !f.RedisUp || len(f.Members) != 2 {
				return fmt.Sprintf("%s fleet %+v, want Redis up and 2 members", p.Name, f)
			}
			for _, m := range f.Members {
				if m.AgeSeconds > 10 || m.Behind != 0 {
					return fmt.Sprintf("%s member %+v, want seen lately and caught up", p.Name, m)
				}
			}
			return ""
		})
	}
}
