package cache

import (
	"context"
	"net/http"
	"time"
)

// Shared is a cache tier shared by several proxies, behind each one's
// memory and disk tiers (package fleet implements it on Redis). The engine
// never calls it on a local hit: the flow asks it only on a local miss,
// and hands it what a fill stored. Every method is bounded by the tier's
// own timeout, and answers at once while the tier is unavailable.
type Shared interface {
	// Get returns the zone's entry for key that matches a request with
	// header req (through the key's variants, as Lookup), its body in
	// memory. false: no entry, or the tier failed or is unavailable.
	Get(ctx context.Context, zone, key string, req http.Header) (*Entry, bool)
	// Claim tries to take the fleet-wide fill lock of the zone's key for
	// age. ClaimTaken: the caller fetches and hands the result to Store
	// with the returned claim. ClaimHeld: another proxy fills the key;
	// the caller may Await it. ClaimUnavailable: the tier cannot say; the
	// caller fetches on its own.
	Claim(ctx context.Context, zone, key string, age time.Duration) (SharedClaim, ClaimResult)
	// Await waits for another proxy's fill of the zone's key, as
	// Fill.Wait does for a local one: until its value lands in the tier
	// (AwaitStored, with its entry for req), it ends without storing
	// (AwaitUnstored, or AwaitAlone: stored in its proxy only), it is
	// abandoned (AwaitAbandoned: its lock expired, its owner stopped
	// renewing it, or the tier stopped answering: the caller may Claim
	// again), or deadline passes (AwaitTimeout). A value found in the
	// tier as the wait begins counts only if usable says so (a fill may
	// have landed just before; an old stale value may be there too); nil:
	// any. No wait outlasts the fill it waits for by more than the tier's
	// timeout, whatever becomes of the fill's proxy.
	Await(ctx context.Context, zone, key string, req http.Header, deadline time.Time, usable func(*Entry) bool) Awaited
	// Store writes a committed entry to the tier in the background, so
	// the client never waits on it, and then releases the job's claim
	// (waking the proxies that wait for it). A job without an entry only
	// releases its claim: the fill stored nothing (job.Unstored).
	Store(job SharedStore)
}

// SharedClaim is a fill lock held in the shared tier; nil when none is.
type SharedClaim interface {
	// Release gives the lock up and tells the waiters how the fill
	// ended, as a local fill's waiters hear it: AwaitStored (the value
	// is in the tier), AwaitAlone (stored in its proxy only), or
	// AwaitUnstored with how long the key passes requests straight
	// through and the answer they may share. Store calls it; a caller
	// that never stores calls it.
	Release(end Awaited)
}

// ClaimResult is what a Claim found.
type ClaimResult uint8

const (
	ClaimUnavailable ClaimResult = iota // the tier failed, is down, or the key is too large for it
	ClaimTaken                          // the caller holds the lock
	ClaimHeld                           // another proxy holds it
)

// SharedStore is one entry going to the shared tier.
type SharedStore struct {
	Zone string
	// Key is the key the flow looks up (the primary key of a variant).
	Key string
	// Entry is what the zone committed (nil: nothing was stored). A disk
	// entry's body is read from its file.
	Entry *Entry
	// TTL is how long the tier keeps it (see the caller's rule).
	TTL time.Duration
	// Current reports, before and after the write, and once more after
	// the event log has brought the other proxies' purges, whether the
	// entry still stands here (Zone.Kept): a purge or an invalidation of
	// the key since the request began voids it in the shared tier too.
	// nil: always.
	Current func() bool
	// Claim, when set, is released once the entry is written (or not).
	Claim SharedClaim
	// Unstored, for a job without an entry, is what the other proxies'
	// waiters hear (AwaitUnstored: for how long the key passes requests
	// straight through, and the fill's answer they may share).
	Unstored Awaited
}

// Tier is where a look-up found an entry: the placeholder
// {http.edge_cache.tier}.
type Tier uint8

const (
	TierNone   Tier = iota // a miss
	TierMemory             // the hot tier
	TierDisk               // the disk tier
	TierShared             // the shared tier (another proxy's fill)
)

var tierNames = [...]string{"", "memory", "disk", "shared"}

func (t Tier) String() string { return tierNames[t] }

// Kept reports whether e, stored by a request that began at mark, still
// stands: no invalidation of its key since, and no purge that removed it.
// A purge of other keys does not count, unlike for a fill under way
// (voided): after a purge it checks that the key still holds e (an
// eviction reads as a purge, which is safe).
func (z *Zone) Kept(e *Entry, mark Mark) bool {
	if z.invalidated.since(primaryKey(e.Key), mark.Inval) {
		return false
	}
	if z.purgeGen.Load() == mark.Purge {
		return true
	}
	if cur, _, ok := z.mem.lookup(e.Key); ok {
		return cur.StoredAt.Equal(e.StoredAt)
	}
	if cur := z.diskGet(e.Key); cur != nil {
		return cur.StoredAt.Equal(e.StoredAt)
	}
	return false
}

// Adopt stores a copy of an entry found in the shared tier in the local
// tiers, as a fill would (its Meta as given to NewEntryWriter: the primary
// key, with VaryNames and Variant for a variant), and returns the stored
// entry; or e itself and false when the zone refused it (a purge since
// mark).
func (z *Zone) Adopt(e *Entry, at Mark) (*Entry, bool) {
	meta := e.Meta
	meta.BodySize = int64(len(e.Body))
	w := z.NewEntryWriter(meta, at)
	w.Write(e.Body)
	if stored, ok := w.Commit(); ok {
		return stored, true
	}
	return e, false
}
