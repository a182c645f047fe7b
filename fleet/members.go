package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The fleet view: each proxy writes its own key ({prefix}{members}:node)
// every HeartbeatEvery, expiring after HeartbeatTTL, so the list is
// the keys that exist: a proxy that stops or is cut off leaves it
// within HeartbeatTTL. The keys share one Cluster hash slot ({members}),
// so one master holds them all and one MGET reads them.

// Heartbeat timing.
const (
	HeartbeatEvery = 2 * time.Second
	HeartbeatTTL   = 10 * time.Second
)

// Member is one proxy of the fleet, as it announces itself.
type Member struct {
	Node    string   `json:"node"`
	Version string   `json:"version"`
	Zones   []string `json:"zones"`
	// LastEvent is the ID of the last event of the log the proxy read.
	LastEvent string `json:"last_event"`
	// Behind is how many events of the log come after LastEvent, counted
	// when the list is read (up to MaxBehind; -1 when it cannot be told).
	Behind int64 `json:"behind"`
	// Seen is when the proxy last announced itself (its own clock).
	Seen time.Time `json:"seen"`
}

// MaxBehind bounds the count of events a member is behind: the list reads
// at most this many events per member to count them.
const MaxBehind = 1000

// Announce writes this proxy's entry in the fleet list, expiring after
// HeartbeatTTL.
func (f *Fleet) Announce(ctx context.Context, m Member) error {
	m.Node, m.Behind = f.cfg.Node, 0
	if m.Seen.IsZero() {
		m.Seen = time.Now()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	return f.rdb.Set(ctx, f.keys.member(f.cfg.Node), b, HeartbeatTTL).Err()
}

// Members lists the proxies that announced themselves within HeartbeatTTL,
// by name, with how many events each is behind the log's end.
func (f *Fleet) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*f.cfg.Timeout)
	defer cancel()
	var (
		mu    sync.Mutex
		names []string
	)
	// SCAN on every master: on a Cluster only the one holding {members}
	// finds any.
	err := f.forEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, f.keys.members(), scanBatch).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			names = append(names, keys...)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: listing members: %w", err)
	}
	if len(names) == 0 {
		return []Member{}, nil
	}
	slices.Sort(names)
	names = slices.Compact(names)
	vals, err := f.rdb.MGet(ctx, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("fleet: reading members: %w", err)
	}
	members := make([]Member, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between SCAN and MGET
		}
		var m Member
		if json.Unmarshal([]byte(s), &m) != nil || m.Node == "" {
			continue
		}
		if m.Zones == nil {
			m.Zones = []string{}
		}
		m.Behind = f.behind(ctx, m.LastEvent)
		members = append(members, m)
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	return members, nil
}

// behind counts the events after id, up to MaxBehind; -1 when it cannot
// tell (no position yet, or Redis failed).
func (f *Fleet) behind(ctx context.Context, id string) int64 {
	if id == "" {
		return -1
	}
	msgs, err := f.rdb.XRangeN(ctx, f.keys.events(), "("+id, "+", MaxBehind).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return -1
	}
	return int64(len(msgs))
}

// Heartbeat announces this proxy every HeartbeatEvery, with what member
// returns, until stop is called. A failed announcement is retried at the
// next beat: the member list is a view, not a source of truth.
func (f *Fleet) Heartbeat(member func() Member) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(HeartbeatEvery)
		defer t.Stop()
		for {
			_ = f.Announce(ctx, member())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// The key is left to expire: on a config reload the new config
	// announces the proxy before the old one stops.
	return func() {
		cancel()
		<-done
	}
}
