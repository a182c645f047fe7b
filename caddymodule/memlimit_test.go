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

func TestGCPercentFor(t *testing.T) {
	for _, tt := range []struct {
		live, limit int64
		want        int
	}{
		{10 << 20, 2 << 30, 2560},   // the benchmark: 256 MiB of room for 10 MiB live
		{10 << 20, 40 << 20, 100},   // a small limit: a quarter, as GOGC=100 gives
		{100 << 20, 400 << 20, 100}, // room enough at 100
		{1 << 30, 2 << 30, 100},     // a full tier: the limit paces it
		{0, 2 << 30, 100},
	} {
		if got := gcPercentFor(tt.live, tt.limit); got != tt.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", tt.live, tt.limit, got, tt.want)
		}
	}
}

// TestPaceCollector: under a limit of its own the process's GOGC follows
// the live heap; an operator's GOGC is left alone.
func TestPaceCollector(t *testing.T) {
	old := debug.SetGCPercent(100)
	oldLimit := ourLimit.Load()
	t.Cleanup(func() {
		debug.SetGCPercent(old)
		ourLimit.Store(oldLimit)
		gcPercent.Store(0)
	})
	gcPercentOnce.Do(func() {})
	ours := gcPercentOurs.Load()
	t.Cleanup(func() { gcPercentOurs.Store(ours) })

	gcPercentOurs.Store(true)
	ourLimit.Store(1 << 40) // room of 256 MiB: far above 100 for this test's heap
	gcPercent.Store(0)
	paceCollector()
	if got := debug.SetGCPercent(100); got <= 100 {
		t.Errorf("GOGC under a limit of ours = %d, want above 100", got)
	}

	gcPercentOurs.Store(false) // GOGC set by the operator
	gcPercent.Store(0)
	debug.SetGCPercent(100)
	paceCollector()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC with the operator's own = %d, want it left at 100", got)
	}
}
