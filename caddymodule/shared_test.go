package caddymodule

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/fleet"
	"github.com/edgecache/edgecache/internal/testkit"
)

// The fleet step against another proxy (a fleet client of the test's
// own): a miss whose key another proxy fills waits for its store and
// serves it, with no backend request; so does an expired entry being
// updated elsewhere; and a hit sets the tier placeholder.
func TestFleetStepWaitsForAnotherProxy(t *testing.T) {
	r := testkit.StartRedis(t)
	be := testkit.NewBackend(t, nil)
	s := startCaddy(t, globalOptions(`		shared {
			redis `+r.Addr+`
			node proxy-a
			timeout 1s
		}
		zone default 16MiB`)+`
http://127.0.0.1:$PUBLIC {
	header {
		defer
		X-Tier {http.edge_cache.tier}
	}
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, be, "PUBLIC")
	other, err := fleet.Open(fleet.Config{Addrs: []string{r.Addr}, Node: "other", Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	app := activeApp(t)
	clock := app.Zone("default").Clock()
	ctx := context.Background()

	// other's fill of key, stored with its claim once the proxy waits.
	fillElsewhere := func(key, body string) response {
		t.Helper()
		claim, res := other.Claim(ctx, "default", key, 10*time.Second)
		if res != cache.ClaimTaken {
			t.Fatalf("claim: %v", res)
		}
		waits := app.Fleet().Stats.LockWaits.Load()
		answer := make(chan response, 1)
		go func() { answer <- s.get(t, s.url("PUBLIC", key)) }()
		testkit.Eventually(t, 5*time.Second, testkit.Holds("the proxy to wait for the other's fill", func() bool {
			return app.Fleet().Stats.LockWaits.Load() > waits
		}))
		now := clock.Now()
		e := &cache.Entry{Meta: cache.Meta{Key: key, Status: 200, StoredAt: now, ValidUntil: now.Add(time.Hour),
			Date: now.UTC().Format(http.TimeFormat), Header: http.Header{"Content-Type": {"text/plain"}}}, Body: []byte(body)}
		other.Store(cache.SharedStore{Zone: "default", Key: key, Entry: e, TTL: time.Hour, Claim: claim})
		return <-answer
	}

	res := fillElsewhere("/x", "filled by other")
	expect(t, "a miss filled by another proxy", res, 200, "HIT", "filled by other")
	if tier := res.Header.Get("X-Tier"); tier != "shared" {
		t.Errorf("tier %q, want shared", tier)
	}
	res = s.get(t, s.url("PUBLIC", "/x"))
	expect(t, "then", res, 200, "HIT", "filled by other")
	if tier := res.Header.Get("X-Tier"); tier != "memory" {
		t.Errorf("tier %q, want memory", tier)
	}

	// Expired here; another proxy is updating it.
	clock.Advance(2 * time.Hour)
	res = fillElsewhere("/x", "updated by other")
	expect(t, "an expired entry updated by another proxy", res, 200, "HIT", "updated by other")
	if n := be.Requests(); n != 0 {
		t.Errorf("%d backend requests, want 0: the other proxy fetched", n)
	}

	// Nobody fills it: this proxy takes the lock, fetches and stores.
	expect(t, "a cold miss", s.get(t, s.url("PUBLIC", "/y")), 200, "MISS", "body of /y")
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the fill to reach Redis", func() bool {
		_, ok := other.Get(ctx, "default", "/y", nil)
		return ok
	}))
	if out, _ := r.CLI("EXISTS", "edgecache:lock:{default:/y}"); out != "0" {
		t.Error("the fill lock is still held after the store")
	}
}
