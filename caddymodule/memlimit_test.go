package caddymodule

import (
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestZoneMemoryIsAllIn: a zone's memory size covers its entries and the
// collector's reserve. Filled with twice its size, the tier accounts for
// no more than the size less the reserve, and the process's soft memory
// limit is the zones' total plus Caddy's room.
func TestZoneMemoryIsAllIn(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Fatal("GOMEMLIMIT is set: the zones' memory limit is not applied")
	}
	const size = 8 << 20
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	body := make([]byte, 10<<10)
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	s := startCaddy(t, globalOptions("\t\tzone default 8MiB")+`
:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
	for i := range 2 * size / len(body) {
		s.get(t, s.url("PUBLIC", "/"+strconv.Itoa(i)))
	}
	held := activeApp(t).zones["default"].Tiers().MemoryBytes
	if budget := entryBudget(size); held > budget || held < budget*3/4 {
		t.Errorf("a full 8 MiB tier accounts for %d bytes, want at most the entry budget %d and most of it", held, budget)
	}
	if got, want := debug.SetMemoryLimit(-1), min(memoryLimitFor(size), startLimit); got != want {
		t.Errorf("memory limit %d, want %d", got, want)
	}
}
