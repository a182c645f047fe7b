package cache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestKeyIndexAfterLateEviction: ristretto evicts in a goroutine of its
// own, so the eviction of a key's older value may reach the key index
// after a store indexed the key again and before the store's write is
// applied. The key must still be indexed once the store returns, or a
// purge by prefix leaves the entry.
func TestKeyIndexAfterLateEviction(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	e := &Entry{Meta: testMeta("/a/1", 1), Body: []byte("x")}
	z.keys.add(e.Key)    // the store indexes the key,
	z.keys.remove(e.Key) // the older value's eviction arrives,
	z.mem.set(e)         // and the store's write is applied
	if _, _, ok := z.mem.lookup(e.Key); !ok {
		t.Fatal("the entry is not in memory")
	}
	if n, err := z.PurgePrefix("/a/"); n != 1 || err != nil {
		t.Errorf("PurgePrefix found %d entries (%v), want 1", n, err)
	}
	if _, ok := z.Get(e.Key); ok {
		t.Error("the entry outlived the purge by prefix")
	}
}

// TestPurgePrefixUnderChurn stores and reads keys from several goroutines
// in a memory tier too small for them (ristretto evicting, rejecting and
// readmitting from the recent FIFO all along), then purges them by prefix:
// none may stay in memory.
func TestPurgePrefixUnderChurn(t *testing.T) {
	const keys = 400
	for round := range 4 {
		z := newTestZone(t, 1<<20, 0)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for range 6000 {
					k := fmt.Sprintf("/k/%d", r.IntN(keys))
					if r.IntN(3) == 0 {
						zonePut(t, z, k, make([]byte, 4<<10+r.IntN(12<<10)), true)
					} else {
						z.Get(k)
					}
				}
			})
		}
		wg.Wait()
		if _, err := z.PurgePrefix("/k/"); err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if k := fmt.Sprintf("/k/%d", i); inMemory(z, k) {
				t.Fatalf("round %d: %s is still in memory after the purge by prefix", round, k)
			}
		}
	}
}

func inMemory(z *Zone, key string) bool {
	_, _, ok := z.mem.lookup(key)
	return ok
}
