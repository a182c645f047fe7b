package fleet

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Position is how far a proxy has read the event log: the last event's
// ID, and how many events the stream had taken in up to it (XINFO STREAM's
// entries-added). The count tells a quiet log from one that was lost and
// began again: Redis restarted without its data, or a failover to a
// replica that had not received the last events.
type Position struct {
	ID    string `json:"id"`
	Added int64  `json:"added"`
}

// start is the position of an empty log.
var start = Position{ID: "0-0"}

// Follower reads the event log in the background and hands every other
// proxy's event to its apply function, in order, within about a second
// of its publication. When it finds that events it had not read are lost
// (the log was trimmed past its position, or Redis lost the log), it
// calls drop once with the Loss, and goes on from the log's end: the
// caller then drops the local entries it cannot prove current (Current)
// rather than serve what may have been purged.
//
// While Redis cannot be reached it retries, and when it can again it
// first reads what it missed (its position is kept in memory, and
// Position lets the caller keep it across restarts).
type Follower struct {
	f     *Fleet
	apply func(Event)
	drop  func(Loss)

	mu     sync.Mutex
	pos    Position
	known  bool // pos is set; else the reader starts from the log's end
	cutOff bool // the last call failed (logged once per change)

	cancel   context.CancelFunc
	done     chan struct{}
	caughtUp chan struct{} // closed when the reader first reaches the log's end
	settled  chan struct{} // closed at that, or at the first failure before it
}

// Follower pacing.
const (
	// followBlock is how long one XREAD waits for events. An idle reader
	// checks the log's state (Follower.check) at this pace.
	followBlock = time.Second
	// followBatch is how many events one XREAD returns at most.
	followBatch = 1000
	// followRetryMin and followRetryMax bound the wait between attempts
	// while Redis cannot be reached.
	followRetryMin = 100 * time.Millisecond
	followRetryMax = time.Second
)

// Follow starts reading the log from the position from, or from its
// current end when from is nil (a proxy whose local tiers hold nothing
// that earlier events could concern). apply is called for the events of
// other nodes; drop when events were lost. Both are called from the
// reader's goroutine, one at a time. Stop ends it.
func (f *Fleet) Follow(from *Position, apply func(Event), drop func(Loss)) *Follower {
	ctx, cancel := context.WithCancel(context.Background())
	fo := &Follower{f: f, apply: apply, drop: drop, cancel: cancel, done: make(chan struct{}), caughtUp: make(chan struct{}), settled: make(chan struct{})}
	if from != nil && from.ID != "" {
		fo.pos, fo.known = *from, true
	}
	go fo.run(ctx)
	return fo
}

// Position is the reader's position now: the last event read (its own
// events included) and the log's count at it. Before the reader first
// reached Redis it is the zero Position.
func (fo *Follower) Position() Position {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.pos
}

// CaughtUp is closed once the reader has applied every event of the log
// up to its end, the first time: a proxy that starts may wait for it
// before it serves what its disk tier kept while it was down.
func (fo *Follower) CaughtUp() <-chan struct{} { return fo.caughtUp }

// Settled is closed when CaughtUp is, or as soon as the reader fails to
// reach Redis before that: there is no point waiting for a catch-up then.
func (fo *Follower) Settled() <-chan struct{} { return fo.settled }

// Stop ends the reader and waits for it (at most one XREAD's block).
func (fo *Follower) Stop() {
	fo.cancel()
	<-fo.done
}

func (fo *Follower) run(ctx context.Context) {
	defer close(fo.done)
	log := fo.f.eventLog()
	retry := followRetryMin
	// The log is checked before the first read and after every failure,
	// before reading on: the events it returns would otherwise move the
	// position past a gap before the check could see it.
	needCheck, caughtUp := true, false
	settle := sync.OnceFunc(func() { close(fo.settled) })
	for ctx.Err() == nil {
		var err error
		if needCheck {
			err = fo.check(ctx)
		}
		if err == nil {
			needCheck = false
			var n int
			// Until it first reaches the end, it reads without waiting,
			// so that the end is known as soon as it is reached.
			block := followBlock
			if !caughtUp {
				block = -1
			}
			n, err = fo.read(ctx, block)
			if err == nil && n == 0 {
				// Idle, at the end of the log: the moment to see that it
				// is not the log it was (a Redis restarted between two
				// reads on a new connection reports no error).
				if err = fo.check(ctx); err == nil && !caughtUp {
					caughtUp = true
					close(fo.caughtUp)
					settle()
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			needCheck = true
			settle()
			fo.setCutOff(log, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, followRetryMax)
			continue
		}
		retry = followRetryMin
		fo.setCutOff(log, nil)
	}
}

// setCutOff logs the changes between reaching Redis and not.
func (fo *Follower) setCutOff(log *zap.Logger, err error) {
	fo.mu.Lock()
	was := fo.cutOff
	fo.cutOff = err != nil
	pos := fo.pos.ID
	fo.mu.Unlock()
	switch {
	case err != nil && !was:
		log.Warn("cannot read the fleet's event log; purges and refreshes of other proxies wait until Redis answers again", zap.String("position", pos), zap.Error(err))
	case err == nil && was:
		log.Info("reading the fleet's event log again; the events missed meanwhile are applied", zap.String("position", pos))
	}
}

// read applies the events after the position, waiting up to block for
// some (not at all if block is negative); it returns how many it read.
func (fo *Follower) read(ctx context.Context, block time.Duration) (int, error) {
	fo.mu.Lock()
	from := fo.pos.ID
	fo.mu.Unlock()
	res, err := fo.f.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{fo.f.keys.events(), from},
		Count:   followBatch,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range res {
		for _, m := range s.Messages {
			n++
			ev, ok := eventFrom(m)
			if ok && ev.Node != fo.f.cfg.Node {
				fo.apply(ev)
				fo.f.events.applied.Add(1)
				if at, ok := eventTime(ev.ID); ok {
					fo.f.events.lagMillis.Store(max(time.Since(at).Milliseconds(), 0))
				}
			} else if !ok {
				fo.f.eventLog().Warn("skipped an entry of the event log that is not an event", zap.String("id", m.ID))
			}
			fo.mu.Lock()
			fo.pos = Position{ID: m.ID, Added: fo.pos.Added + 1}
			fo.mu.Unlock()
		}
	}
	return n, nil
}

// check compares the position with the log's state (XINFO STREAM) and
// calls drop when events after the position are lost (logState.lostAfter):
//   - the log was trimmed past it: the proxy was cut off, or stopped, for
//     longer than the log keeps;
//   - the log is gone, or began again (Redis restarted without its data,
//     a failover lost writes).
//
// A reader with no position starts at the log's end.
func (fo *Follower) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, fo.f.cfg.Timeout)
	info, err := fo.f.rdb.XInfoStream(cctx, fo.f.keys.events()).Result()
	cancel()
	var state logState // an absent log: empty, nothing ever added
	switch {
	case err != nil && isNoSuchKey(err):
	case err != nil:
		return err
	default:
		state = logState{length: info.Length, first: info.FirstEntry.ID, last: info.LastGeneratedID,
			added: info.EntriesAdded, maxDeleted: info.MaxDeletedEntryID}
	}
	end := Position{ID: state.last, Added: state.added}
	if end.ID == "" {
		end = start
	}
	fo.mu.Lock()
	if !fo.known {
		fo.pos, fo.known = end, true
		fo.mu.Unlock()
		return nil
	}
	was := fo.pos
	loss := state.lostAfter(was)
	if loss.Reason != "" {
		fo.pos = end
	}
	fo.mu.Unlock()
	if loss.Reason != "" {
		fo.f.eventLog().Warn("events this proxy had not applied are lost: dropping the local entries it cannot prove current rather than serve purged ones",
			zap.String("reason", loss.Reason), zap.Bool("redis_values_kept", loss.ValuesKept),
			zap.String("position", was.ID), zap.String("log_end", end.ID))
		fo.f.events.drops.Add(1)
		fo.drop(loss)
	}
	return nil
}

// Loss is why events a proxy had not applied are lost.
type Loss struct {
	Reason string
	// ValuesKept says that Redis kept its values meanwhile (the log was
	// trimmed, or events deleted from it): every purge, invalidation and
	// refresh removes or replaces the value in Redis before it is
	// published, so a local entry of which Redis holds the same version is
	// current (Current). False when Redis began again, or went back in
	// time (restarted without its data, a failover lost writes): then no
	// local entry can be proven current.
	ValuesKept bool
}

// logState is what XINFO STREAM says of the log.
type logState struct {
	length      int64
	first, last string // IDs of the first entry held and of the last added
	added       int64  // entries ever added
	maxDeleted  string // the last entry deleted by XDEL (not by trimming)
}

// Why events are lost.
const (
	lostTrimmed = "the event log was trimmed past this proxy's position: it was cut off for longer than the log keeps events"
	lostReset   = "the event log began again (Redis restarted without its data, or a failover lost events)"
)

// lostAfter says why events after pos are lost (a zero Loss when none
// is).
// Trimming removes the oldest entries: when the log holds nothing at or
// before pos, it must hold every event added after it, added - pos.Added
// of them; fewer means some were trimmed, more that the log is not the
// one pos was in. When it still holds pos, nothing after it was trimmed,
// and at its end it must have added as many as pos counts.
func (s logState) lostAfter(pos Position) Loss {
	p, err := parseStreamID(pos.ID)
	if err != nil {
		return Loss{Reason: "the saved position is not a stream ID"}
	}
	last, _ := parseStreamID(cmp.Or(s.last, "0-0"))
	deleted, _ := parseStreamID(cmp.Or(s.maxDeleted, "0-0"))
	first, _ := parseStreamID(cmp.Or(s.first, "0-0"))
	reset := Loss{Reason: lostReset}
	switch after := s.added - pos.Added; {
	case p.less(deleted):
		return Loss{Reason: "events after this proxy's position were deleted from the event log (XDEL)", ValuesKept: true}
	case last.less(p):
		return reset
	case s.length == 0 || p.less(first):
		if after > s.length {
			return Loss{Reason: lostTrimmed, ValuesKept: true}
		}
		if after < s.length {
			return reset
		}
	case last == p && s.added != pos.Added:
		return reset
	}
	return Loss{}
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}
