package caddymodule

import (
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
)

// TestCountsHitRatio: answers from the cache (HIT, STALE, UPDATING,
// REVALIDATED) over every request but BYPASS, between two samples, as the
// Grafana dashboard computes it.
func TestCountsHitRatio(t *testing.T) {
	z, err := cache.NewZone(cache.ZoneConfig{Name: "z", MemorySize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	from := z.Current(time.Now())
	for status, n := range map[cache.Status]int{cache.StatusHit: 5, cache.StatusStale: 1, cache.StatusUpdating: 1,
		cache.StatusRevalidated: 1, cache.StatusMiss: 1, cache.StatusExpired: 1, cache.StatusBypass: 40} {
		for range n {
			z.CountRequest(status, "/k")
		}
	}
	c := counts(z.Current(time.Now()), from)
	if c.HitRatio == nil || *c.HitRatio != 0.8 {
		t.Errorf("hit ratio %v, want 0.8 (8 of 10, the 40 BYPASS left out)", c.HitRatio)
	}
	if c.Requests["BYPASS"] != 40 || c.Requests["HIT"] != 5 || len(c.Requests) != 7 {
		t.Errorf("requests %v", c.Requests)
	}
	if c := counts(from, from); c.HitRatio != nil {
		t.Errorf("no request: hit ratio %v, want none", *c.HitRatio)
	}
}
