package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestActivityHistory(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	start := time.Unix(1_700_000_000, 0)
	if _, ok := z.Activity().Since(start); ok {
		t.Fatal("a history before the first sample")
	}
	// 2 requests a second for 10 minutes, sampled each second.
	for s := range 600 {
		z.CountRequest(StatusHit, "/k")
		z.CountRequest(StatusMiss, "/k")
		z.Sample(start.Add(time.Duration(s+1) * time.Second))
	}
	now := start.Add(600 * time.Second)
	cur := z.Current(now)
	if cur.Count(StatusHit) != 600 || cur.Count(StatusMiss) != 600 {
		t.Fatalf("current: %d hits, %d misses", cur.Count(StatusHit), cur.Count(StatusMiss))
	}
	ago, _ := z.Activity().Since(now.Add(-time.Minute))
	if got := cur.Count(StatusHit) - ago.Count(StatusHit); got != 60 {
		t.Errorf("hits in the last minute: %d, want 60", got)
	}
	// The history keeps five minutes: further back is its oldest sample.
	old, _ := z.Activity().Since(now.Add(-time.Hour))
	if got := now.Sub(old.At); got != historySeconds*time.Second {
		t.Errorf("oldest sample %v old, want %v", got, historySeconds*time.Second)
	}
	rates := z.Activity().Rates(cur, 5*time.Minute, 5*time.Second)
	if len(rates) != 60 {
		t.Fatalf("%d rates, want 60", len(rates))
	}
	for i, r := range rates {
		if r != 2 {
			t.Fatalf("rate %d: %v, want 2", i, r)
		}
	}
	// A second sample in the same second replaces the first.
	z.CountRequest(StatusHit, "/k")
	z.Sample(now.Add(100 * time.Millisecond))
	if s, _ := z.Activity().Since(now.Add(time.Second)); s.Count(StatusHit) != 601 {
		t.Errorf("resampled second: %d hits, want 601", s.Count(StatusHit))
	}
	if s, _ := z.Activity().Since(now.Add(-time.Second)); s.Count(StatusHit) != 599 {
		t.Errorf("second before: %d hits, want 599", s.Count(StatusHit))
	}
}

func TestActivityRatesShortHistory(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	start := time.Unix(1_700_000_000, 0)
	z.Sample(start)
	for range 30 {
		z.CountRequest(StatusBypass, "/b")
	}
	cur := z.Current(start.Add(10 * time.Second))
	rates := z.Activity().Rates(cur, 5*time.Minute, 5*time.Second)
	if len(rates) != 2 || rates[0]+rates[1] == 0 {
		t.Fatalf("rates over a 10 s history: %v, want 2 steps, not all 0", rates)
	}
	// Within the first step, a rate over the history there is.
	cur = z.Current(start.Add(2 * time.Second))
	if rates := z.Activity().Rates(cur, 5*time.Minute, 5*time.Second); len(rates) != 1 || rates[0] != 15 {
		t.Errorf("rates over a 2 s history: %v, want [15]", rates)
	}
}

func TestTopMissesBounded(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	now := time.Unix(1_700_000_000, 0)
	a := z.Activity()
	// Three hot keys among 10,000 keys that miss once each: each misses
	// more than 1/missCapacity of the minute's misses.
	for i := range 10_000 {
		a.misses.add(fmt.Sprintf("/cold/%d", i), now)
		if i%100 == 0 {
			for range 4 {
				a.misses.add("/hot/a", now)
			}
			for range 3 {
				a.misses.add("/hot/b", now)
			}
			for range 2 {
				a.misses.add("/hot/c", now)
			}
		}
	}
	for _, s := range a.misses.minutes {
		if len(s.items) > missCapacity || len(s.index) > missCapacity {
			t.Fatalf("a summary holds %d keys, over %d", len(s.items), missCapacity)
		}
	}
	top := a.TopMisses(now, 3)
	want := []string{"/hot/a", "/hot/b", "/hot/c"}
	for i, w := range want {
		if i >= len(top) || top[i].Key != w {
			t.Fatalf("top: %+v, want %v first", top, want)
		}
	}
	if top[0].Count-top[0].Over > 400 || top[0].Count < 400 {
		t.Errorf("/hot/a counted %d (over by at most %d), missed 400 times", top[0].Count, top[0].Over)
	}
	// Five minutes on, the minute is forgotten.
	if top := a.TopMisses(now.Add(5*time.Minute), 3); len(top) != 0 {
		t.Errorf("top five minutes later: %+v", top)
	}
	// Misses of several minutes add up.
	b := &newTestZone(t, 1<<20, 0).activity
	for m := range 7 {
		b.misses.add("/k", now.Add(time.Duration(m)*time.Minute))
	}
	if top := b.TopMisses(now.Add(6*time.Minute), 20); len(top) != 1 || top[0].Count != 5 {
		t.Errorf("misses over 7 minutes, top of the last 5: %+v, want /k 5", top)
	}
}

func TestCountRequestMissesOnly(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	for _, s := range Statuses() {
		z.CountRequest(s, "/"+s.String())
	}
	top := z.Activity().TopMisses(z.Clock().Now(), 20)
	if len(top) != 1 || top[0].Key != "/MISS" {
		t.Errorf("top misses: %+v, want /MISS alone", top)
	}
	if z.Stats.Requests[StatusHit].Load() != 1 {
		t.Error("a HIT not counted in the requests metric")
	}
}

func TestActivityEvents(t *testing.T) {
	a := &newTestZone(t, 1<<20, 0).activity
	if len(a.Events()) != 0 {
		t.Fatal("events before any")
	}
	for i := range 25 {
		a.Record(Event{Kind: EventPurgeKey, Target: fmt.Sprint(i), Count: 1, By: "cli"})
	}
	ev := a.Events()
	if len(ev) != MaxEvents || ev[0].Target != "24" || ev[MaxEvents-1].Target != "5" {
		t.Fatalf("events: %d, newest %q, oldest %q; want %d, 24, 5", len(ev), ev[0].Target, ev[len(ev)-1].Target, MaxEvents)
	}
}

func TestFillsListing(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	fill, _ := z.JoinFill("/slow", time.Minute)
	z.Clock().Advance(time.Second)
	other, _ := z.JoinFill("/other", time.Minute)
	waiter, _ := z.JoinFill("/slow", time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		waiter.WaitEnd(ctx, z.Clock().Now().Add(time.Minute))
	}()
	testkit.Eventually(t, 5*time.Second, func() string {
		fs := z.Fills()
		if len(fs) != 2 || fs[0].Key != "/slow" || fs[0].Waiters != 1 || fs[1].Waiters != 0 {
			return fmt.Sprintf("fills %+v, want /slow with 1 waiter then /other", fs)
		}
		return ""
	})
	if fs := z.Fills(); fs[0].Bytes != -1 {
		t.Errorf("bytes of a fill storing nothing yet: %d, want -1", fs[0].Bytes)
	}
	ew := z.NewEntryWriter(testMeta("/slow", 10), z.Mark())
	fill.Publish(ew.Stream())
	ew.Write([]byte("12345"))
	r, _ := ew.Stream().Open(ctx, 0)
	if fs := z.Fills(); fs[0].Bytes != 5 || fs[0].Readers != 1 {
		t.Errorf("bytes so far: %d, readers %d; want 5, 1", fs[0].Bytes, fs[0].Readers)
	}
	r.Close()
	ew.Write([]byte("67890"))
	ew.Commit()
	fill.Finish(Awaited{Result: AwaitStored})
	<-done
	other.Finish(Awaited{Result: AwaitAbandoned})
	if fs := z.Fills(); len(fs) != 0 {
		t.Errorf("fills after they ended: %+v", fs)
	}
}

func TestActivityRefreshesRun(t *testing.T) {
	a := &newTestZone(t, 1<<20, 0).activity
	at := time.Unix(1_700_000_000, 0)
	a.Record(Event{At: at, Kind: EventPurgeAll, Count: 3, By: "cli"})
	for i := range 1000 {
		a.Record(Event{At: at.Add(time.Duration(i) * time.Millisecond), Kind: EventRefresh, Target: fmt.Sprint("/", i), Count: 1, By: "refresh listener"})
	}
	a.Record(Event{At: at.Add(time.Second), Kind: EventRefresh, Target: "/fleet", Count: 1, By: "fleet b"})
	a.Record(Event{At: at.Add(time.Minute), Kind: EventRefresh, Target: "/later", Count: 1, By: "fleet b"})
	ev := a.Events()
	if len(ev) != 4 {
		t.Fatalf("events: %+v, want 4", ev)
	}
	if ev[2].Count != 1000 || ev[2].Target != "/999" || ev[3].Kind != EventPurgeAll {
		t.Errorf("a run of 1000 refreshes: %+v; before it %+v", ev[2], ev[3])
	}
	if ev[0].Target != "/later" || ev[1].Target != "/fleet" {
		t.Errorf("refreshes by another, and a minute later: %+v, %+v", ev[1], ev[0])
	}
}
