package cache

import (
	"slices"
	"sync"
	"time"
)

// Activity is what a zone did lately, for the status page: a second by
// second history of its counters over the last five minutes, the keys
// that missed most, and its last purges and refreshes. The history is
// sampled from the zone's own Stats by whoever calls Sample once a second
// (the app), so the hit path pays nothing for it and its numbers are the
// metrics' numbers. Only a MISS, which goes to the backend anyway, touches
// the miss counter (Zone.CountRequest).
type Activity struct {
	mu      sync.Mutex
	samples [historySeconds + 1]Sample // ring, one per second
	head    int                        // index of the newest sample
	n       int                        // samples held

	misses missTop

	eventsMu sync.Mutex
	events   [MaxEvents]Event // ring
	nEvents  int
}

// historySeconds is how far back the history goes: the sparkline's span.
const historySeconds = 300

// Sample is a zone's counters at one second.
type Sample struct {
	At            time.Time
	Requests      [numStatuses]int64
	BytesServed   int64
	BackendErrors int64
}

// total is the count of every status but StatusNone.
func (s Sample) total() int64 {
	var n int64
	for _, c := range s.Requests[1:] {
		n += c
	}
	return n
}

// Count is the count of status s.
func (s Sample) Count(st Status) int64 { return s.Requests[st] }

// Current reads the zone's counters now.
func (z *Zone) Current(now time.Time) Sample {
	s := Sample{At: now, BytesServed: z.Stats.BytesServed.Load()}
	for i := range s.Requests {
		s.Requests[i] = z.Stats.Requests[i].Load()
	}
	for i := range z.Stats.BackendErrors {
		s.BackendErrors += z.Stats.BackendErrors[i].Load()
	}
	return s
}

// Activity returns the zone's recent activity.
func (z *Zone) Activity() *Activity { return &z.activity }

// Sample records the zone's counters at now. Called about once a second;
// a second call within the same second replaces the first, so that two
// configs sampling the same zone during a reload do no harm.
func (z *Zone) Sample(now time.Time) {
	s := z.Current(now)
	a := &z.activity
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n > 0 && a.samples[a.head].At.Unix() == now.Unix() {
		a.samples[a.head] = s
		return
	}
	a.head = (a.head + 1) % len(a.samples)
	a.samples[a.head] = s
	if a.n < len(a.samples) {
		a.n++
	}
}

// Since returns the sample that is the newest at or before t, or the
// oldest held when the history does not reach back that far; ok is false
// with no history at all.
func (a *Activity) Since(t time.Time) (s Sample, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 {
		return Sample{}, false
	}
	for i := 0; i < a.n; i++ {
		s = a.samples[(a.head-i+len(a.samples))%len(a.samples)]
		if !s.At.After(t) {
			return s, true
		}
	}
	return s, true
}

// Rates returns the requests per second over the last span (at most five
// minutes), in steps of step, oldest first, ending at now with the
// counters of cur: as far back as the history goes.
func (a *Activity) Rates(cur Sample, span, step time.Duration) []float64 {
	a.mu.Lock()
	history := make([]Sample, 0, a.n+1)
	for i := a.n - 1; i >= 0; i-- {
		history = append(history, a.samples[(a.head-i+len(a.samples))%len(a.samples)])
	}
	a.mu.Unlock()
	history = append(history, cur)
	// at returns the newest sample at or before t, or false before the
	// history begins.
	at := func(t time.Time) (Sample, bool) {
		var found Sample
		ok := false
		for _, s := range history {
			if s.At.After(t) {
				break
			}
			found, ok = s, true
		}
		return found, ok
	}
	var rates []float64
	for end := cur.At.Add(-span + step); !end.After(cur.At); end = end.Add(step) {
		from, ok := at(end.Add(-step))
		if !ok {
			// The step the history begins in counts from its start.
			if !history[0].At.Before(end) {
				continue
			}
			from = history[0]
		}
		to, _ := at(end)
		if !end.Before(cur.At) {
			to = cur
		}
		secs := to.At.Sub(from.At).Seconds()
		if secs <= 0 {
			rates = append(rates, 0)
			continue
		}
		rates = append(rates, float64(to.total()-from.total())/secs)
	}
	return rates
}

// MaxEvents is how many purges and refreshes a zone remembers.
const MaxEvents = 20

// Event is a purge or a refresh of a zone, for the status page.
type Event struct {
	At time.Time
	// Kind is "purge key", "purge prefix", "purge all" or "refresh".
	Kind string
	// Target is the key, prefix or tags; empty for a purge of the whole zone.
	Target string
	// Count is how many entries it removed or replaced.
	Count int
	// By says who made it: "cli", "admin api", "purge endpoint",
	// "refresh listener", "fleet <node>".
	By string
}

// Kinds of Event.
const (
	EventPurgeKey    = "purge key"
	EventPurgePrefix = "purge prefix"
	EventPurgeTag    = "purge tag"
	EventPurgeAll    = "purge all"
	EventRefresh     = "refresh"
)

// refreshRun is how close refreshes by the same requester must follow
// each other to count as one event.
const refreshRun = 10 * time.Second

// Record remembers a purge or refresh, forgetting the oldest past
// MaxEvents. A refresh that follows another by the same requester within
// refreshRun adds to its count (Target is then the last key), so that a
// warm run of thousands of URLs does not push the purges out.
func (a *Activity) Record(ev Event) {
	a.eventsMu.Lock()
	defer a.eventsMu.Unlock()
	if a.nEvents > 0 && ev.Kind == EventRefresh {
		last := &a.events[(a.nEvents-1)%MaxEvents]
		if last.Kind == EventRefresh && last.By == ev.By && ev.At.Sub(last.At) < refreshRun {
			last.At, last.Target, last.Count = ev.At, ev.Target, last.Count+ev.Count
			return
		}
	}
	a.events[a.nEvents%MaxEvents] = ev
	a.nEvents++
}

// Events returns the purges and refreshes remembered, newest first.
func (a *Activity) Events() []Event {
	a.eventsMu.Lock()
	defer a.eventsMu.Unlock()
	n := min(a.nEvents, MaxEvents)
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, a.events[(a.nEvents-i)%MaxEvents])
	}
	return out
}

// CountRequest counts a request answered with status (the requests
// metric) and, for a MISS, its key among the top misses.
func (z *Zone) CountRequest(status Status, key string) {
	z.Stats.Requests[status].Add(1)
	if status == StatusMiss {
		z.activity.misses.add(key, z.clock.Now())
	}
}

// TopMisses returns up to n keys that missed most over the last five
// minutes as of now, most first.
func (a *Activity) TopMisses(now time.Time, n int) []KeyCount { return a.misses.top(now, n) }

// FillState is a fill under way, for the status page.
type FillState struct {
	Key     string
	Started time.Time
	// Bytes is how much of the body the fill has stored so far; -1 when
	// it is not storing one (yet, or at all: an uncacheable answer is
	// relayed, not stored).
	Bytes int64
	// Waiters are the requests waiting for it to end or to start storing;
	// Readers those reading its body as it is written (its own client's
	// included).
	Waiters, Readers int
}

// Fills lists the zone's fills under way, oldest first.
func (z *Zone) Fills() []FillState {
	g := &z.fills
	g.mu.Lock()
	fills := make([]*Fill, 0, len(g.byKey))
	for _, f := range g.byKey {
		fills = append(fills, f)
	}
	g.mu.Unlock()
	out := make([]FillState, 0, len(fills))
	for _, f := range fills {
		st := FillState{Key: f.key, Started: f.started, Bytes: -1, Waiters: int(f.waiters.Load())}
		select {
		case <-f.streaming:
			s := f.stream
			s.mu.Lock()
			st.Bytes, st.Readers = s.n, max(0, s.refs-1) // less the writer
			s.mu.Unlock()
		default:
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b FillState) int { return a.Started.Compare(b.Started) })
	return out
}
