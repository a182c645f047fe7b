package cache

import (
	"github.com/edgecache/edgecache/cache/disk"

	"bytes"
	"context"
	"fmt"
	"github.com/edgecache/edgecache/internal/testkit"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestZone(t testing.TB, memory, entryMax int64) *Zone {
	t.Helper()
	z, err := NewZone(ZoneConfig{Name: "test", MemorySize: memory, MemoryEntryMax: entryMax})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	return z
}

// zonePut stores body under key in two writes, as a streamed response would.
func zonePut(t testing.TB, z *Zone, key string, body []byte, announce bool) bool {
	t.Helper()
	size := int64(-1)
	if announce {
		size = int64(len(body))
	}
	s := z.NewEntryWriter(testMeta(key, size), z.Mark())
	s.Write(body[:len(body)/2])
	s.Write(body[len(body)/2:])
	_, ok := s.Commit()
	return ok
}

func TestZoneStoreThenGet(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	body := []byte("hello, world")
	if !zonePut(t, z, "/a", body, true) {
		t.Fatal("Commit refused")
	}
	e, ok := z.Get("/a")
	if !ok {
		t.Fatal("entry just stored is not found")
	}
	if !bytes.Equal(e.Body, body) || e.BodySize != int64(len(body)) || e.Status != 200 {
		t.Fatalf("got %q size %d status %d", e.Body, e.BodySize, e.Status)
	}
	if got := e.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q", got)
	}
	if !e.Fresh(time.Now()) || e.Fresh(time.Now().Add(2*time.Hour)) {
		t.Error("freshness wrong")
	}
	r, err := e.OpenBody()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, body) {
		t.Errorf("OpenBody read %q", got)
	}
	if z.Len() != 1 {
		t.Errorf("Len = %d", z.Len())
	}
	// Unannounced length: stored with the length that came.
	if !zonePut(t, z, "/chunked", body, false) {
		t.Fatal("Commit of unannounced length refused")
	}
	if e, ok := z.Get("/chunked"); !ok || e.BodySize != int64(len(body)) {
		t.Fatalf("chunked entry: %v %+v", ok, e)
	}
	// Empty body.
	s := z.NewEntryWriter(testMeta("/empty", 0), z.Mark())
	if _, ok := s.Commit(); !ok {
		t.Fatal("empty body refused")
	}
	if e, ok := z.Get("/empty"); !ok || e.Body == nil || len(e.Body) != 0 {
		t.Fatalf("empty entry: %v %+v", ok, e)
	}
}

func TestZoneStoreWithNilHeader(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	m := testMeta("/nil-header", 2)
	m.Header = nil
	s := z.NewEntryWriter(m, z.Mark())
	s.Write([]byte("ok"))
	if _, ok := s.Commit(); !ok {
		t.Fatal("refused")
	}
	if e, ok := z.Get("/nil-header"); !ok || string(e.Body) != "ok" {
		t.Fatal("not stored")
	}
}

func TestZoneRefusesIncompleteOrOversized(t *testing.T) {
	z := newTestZone(t, 16<<20, 1024)

	// Shorter than announced: the backend broke mid-body.
	s := z.NewEntryWriter(testMeta("/short", 100), z.Mark())
	s.Write(make([]byte, 50))
	if _, ok := s.Commit(); ok {
		t.Error("short body committed")
	}
	// Longer than announced.
	s = z.NewEntryWriter(testMeta("/long", 10), z.Mark())
	s.Write(make([]byte, 20))
	if _, ok := s.Commit(); ok {
		t.Error("long body committed")
	}
	// Announced larger than the per-entry limit.
	s = z.NewEntryWriter(testMeta("/big-announced", 2048), z.Mark())
	if !s.Abandoned() {
		t.Error("store of announced oversized body not abandoned at once")
	}
	s.Write(make([]byte, 2048))
	if _, ok := s.Commit(); ok {
		t.Error("announced oversized body committed")
	}
	// Unannounced, turns out larger than the limit.
	s = z.NewEntryWriter(testMeta("/big-chunked", -1), z.Mark())
	s.Write(make([]byte, 1000))
	if s.Abandoned() {
		t.Error("abandoned too early")
	}
	s.Write(make([]byte, 1000))
	if !s.Abandoned() {
		t.Error("not abandoned past the limit")
	}
	if _, ok := s.Commit(); ok {
		t.Error("unannounced oversized body committed")
	}
	// Aborted.
	s = z.NewEntryWriter(testMeta("/aborted", 3), z.Mark())
	s.Write([]byte("abc"))
	s.Abort()
	if _, ok := s.Commit(); ok {
		t.Error("aborted store committed")
	}
	for _, k := range []string{"/short", "/long", "/big-announced", "/big-chunked", "/aborted"} {
		if _, ok := z.Get(k); ok {
			t.Errorf("%s is in the zone", k)
		}
	}
	if z.Len() != 0 {
		t.Errorf("key index holds %d keys", z.Len())
	}
}

func TestZoneFailedOverwriteKeepsOldEntry(t *testing.T) {
	z := newTestZone(t, 16<<20, 0)
	zonePut(t, z, "/k", []byte("old"), true)
	s := z.NewEntryWriter(testMeta("/k", 10), z.Mark())
	s.Write([]byte("new"))
	s.Commit() // short: refused
	if e, ok := z.Get("/k"); !ok || string(e.Body) != "old" {
		t.Fatalf("after a failed overwrite: %v %q", ok, e.Body)
	}
	zonePut(t, z, "/k", []byte("newer"), true)
	if e, ok := z.Get("/k"); !ok || string(e.Body) != "newer" {
		t.Fatalf("after an overwrite: %v %q", ok, e.Body)
	}
}

// Every Get right after its Commit must succeed: ristretto's Set is lossy,
// so the zone must not rely on it alone.
func TestZoneGetAfterCommitManyKeys(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	z := newTestZone(t, 256<<20, 0)
	body := bytes.Repeat([]byte("x"), 100)
	for i := range n {
		key := "/many/" + strconv.Itoa(i)
		if !zonePut(t, z, key, body, true) {
			t.Fatalf("key %d: Commit refused", i)
		}
		if _, ok := z.Get(key); !ok {
			t.Fatalf("key %d: not found right after Commit", i)
		}
	}
}

// A full zone still serves what it just stored, whatever TinyLFU thinks of
// the newcomer.
func TestZoneFullStillServesJustStored(t *testing.T) {
	z := newTestZone(t, 1<<20, 0) // room for about 700 entries of 1 KiB
	body := bytes.Repeat([]byte("y"), 1024)
	// Make the resident entries popular, so TinyLFU rejects newcomers.
	for i := range 2000 {
		key := "/full/" + strconv.Itoa(i)
		if !zonePut(t, z, key, body, true) {
			t.Fatalf("key %d: Commit refused", i)
		}
		for range 3 {
			if _, ok := z.Get(key); !ok {
				t.Fatalf("key %d: not served right after Commit (zone full)", i)
			}
		}
	}
	if n := z.Len(); n > 2000 || n < 100 {
		t.Errorf("key index holds %d keys", n)
	}
}

func TestZoneConcurrentOverwriteNeverMixes(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	const size = 64 << 10
	zonePut(t, z, "/o", bytes.Repeat([]byte{'a'}, size), true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				e, ok := z.Get("/o")
				if !ok {
					errs <- fmt.Errorf("entry missing during overwrite")
					return
				}
				if len(e.Body) != size || !bytes.Equal(e.Body, bytes.Repeat(e.Body[:1], size)) {
					errs <- fmt.Errorf("mixed or short body (%d bytes)", len(e.Body))
					return
				}
			}
		})
	}
	for i := range 200 {
		zonePut(t, z, "/o", bytes.Repeat([]byte{byte('a' + i%26)}, size), true)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestZonePurge(t *testing.T) {
	z := newTestZone(t, 16<<20, 0)
	for _, k := range []string{"/a/1", "/a/2", "/b/1"} {
		zonePut(t, z, k, []byte(k), true)
	}
	if !z.Purge("/b/1") || z.Purge("/b/1") {
		t.Error("Purge reports wrongly")
	}
	if _, ok := z.Get("/b/1"); ok {
		t.Error("purged key still served")
	}
	if n, err := z.PurgePrefix("/a/"); err != nil || n != 2 {
		t.Errorf("PurgePrefix = %d", n)
	}
	if _, ok := z.Get("/a/1"); ok {
		t.Error("prefix-purged key still served")
	}
	zonePut(t, z, "/c", []byte("c"), true)
	if keys, more, _ := z.Keys("", "", 10); len(keys) != 1 || keys[0] != "/c" || more {
		t.Errorf("Keys = %v %v", keys, more)
	}
	if n, err := z.PurgeAll(); err != nil || n != 1 {
		t.Errorf("PurgeAll = %d", n)
	}
	if _, ok := z.Get("/c"); ok || z.Len() != 0 {
		t.Error("PurgeAll left something")
	}
}

func TestFillCoalescing(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	fill, leader := z.JoinFill("/k", time.Minute)
	if !leader {
		t.Fatal("first request does not lead")
	}
	waiter, leader2 := z.JoinFill("/k", time.Minute)
	if leader2 {
		t.Fatal("second request leads too")
	}
	if _, leads := z.JoinFill("/other", time.Minute); !leads {
		t.Fatal("another key is held back")
	}
	result := make(chan AwaitResult)
	go func() {
		result <- waiter.Wait(context.Background(), z.Clock().Now().Add(10*time.Second)).Result
	}()
	fill.Finish(Awaited{Result: AwaitStored})
	if r := <-result; r != AwaitStored {
		t.Fatalf("waiter got %v, want stored", r)
	}
	// The key is free again.
	if _, leads := z.JoinFill("/k", time.Minute); !leads {
		t.Fatal("a finished fill still holds the key")
	}
}

func TestFillWaitTimeoutAndContext(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	fill, _ := z.JoinFill("/k", time.Minute)
	defer fill.Finish(Awaited{Result: AwaitAbandoned})
	waiter, _ := z.JoinFill("/k", time.Minute)
	if got := waiter.Wait(context.Background(), z.Clock().Now().Add(20*time.Millisecond)); got.Result != AwaitTimeout {
		t.Fatal("wait did not time out")
	}
	if z.Stats.LockTimeouts.Load() != 1 || z.Stats.LockWaits.Load() != 1 {
		t.Errorf("lock stats: waits %d timeouts %d", z.Stats.LockWaits.Load(), z.Stats.LockTimeouts.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := waiter.Wait(ctx, z.Clock().Now().Add(time.Minute)); got.Result != AwaitTimeout {
		t.Fatal("wait with a cancelled context reports an ended fill")
	}
}

func TestFillLockAge(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	clock := z.Clock()
	old, _ := z.JoinFill("/k", time.Second)
	clock.Advance(500 * time.Millisecond)
	if _, leads := z.JoinFill("/k", time.Second); leads {
		t.Fatal("led before lock_age")
	}
	clock.Advance(time.Second)
	newer, leads := z.JoinFill("/k", time.Second)
	if !leads {
		t.Fatal("no new leader after lock_age")
	}
	// The old fill ending must not free the key while the newer one runs.
	old.Finish(Awaited{Result: AwaitAbandoned})
	clock.Advance(100 * time.Millisecond)
	if _, leads := z.JoinFill("/k", time.Second); leads {
		t.Fatal("the old fill's end released the newer fill's key")
	}
	newer.Finish(Awaited{Result: AwaitStored})
	clock.Advance(100 * time.Millisecond)
	if _, leads := z.JoinFill("/k", time.Second); !leads {
		t.Fatal("key not released")
	}
}

func TestVariant(t *testing.T) {
	req := http.Header{"Accept-Encoding": {"gzip"}, "Accept-Language": {"en"}}
	a := Variant([]string{"Accept-Encoding, accept-language"}, req)
	b := Variant([]string{"Accept-Encoding, accept-language"}, http.Header{"Accept-Encoding": {"br"}, "Accept-Language": {"fr"}})
	if a == "" || a == b {
		t.Errorf("variants %q and %q", a, b)
	}
	if Variant(nil, req) != "" {
		t.Error("no Vary gives a variant")
	}
	// Entries hold the identity encoding: Accept-Encoding splits nothing.
	if v := Variant([]string{"Accept-Encoding"}, req); v != "" {
		t.Errorf("Vary: Accept-Encoding gives variant %q", v)
	}
}

func BenchmarkZoneGet(b *testing.B) {
	z := newTestZone(b, 256<<20, 0)
	const keys = 1000
	body := make([]byte, 10<<10)
	names := make([]string, keys)
	for i := range keys {
		names[i] = "/bench/" + strconv.Itoa(i)
		zonePut(b, z, names[i], body, true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := z.Get(names[i%keys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// TestStoreBegunBeforePurgeIsDropped: a response fetched while a purge ran
// may be what the purge removed, so it is not stored.
func TestStoreBegunBeforePurgeIsDropped(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	s := z.NewEntryWriter(testMeta("/a", 3), z.Mark())
	s.Write([]byte("old"))
	z.Purge("/a")
	if _, ok := s.Commit(); ok {
		t.Error("a store begun before a purge was committed")
	}
	if _, ok := z.Get("/a"); ok {
		t.Error("the purged key is served")
	}
	s = z.NewEntryWriter(testMeta("/a", 3), z.Mark())
	s.Write([]byte("new"))
	if _, ok := s.Commit(); !ok {
		t.Error("a store begun after the purge was refused")
	}
}

// TestPurgeBeforeTheAnswerVoidsTheStore: the generation is the one from
// when the request began, so a purge between then and the backend's answer
// (the writer's creation) wins too.
func TestPurgeBeforeTheAnswerVoidsTheStore(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	at := z.Mark() // the request begins
	z.Purge("/a")
	s := z.NewEntryWriter(testMeta("/a", 3), at) // the answer comes
	s.Write([]byte("old"))
	if _, ok := s.Commit(); ok {
		t.Error("an answer asked for before a purge was committed")
	}
}

// TestPromotionDoesNotResurrectOldVersion: readers promoting disk reads to
// memory while newer versions are committed (the refresh listener) must not
// leave an old version in memory once the writes end.
func TestPromotionDoesNotResurrectOldVersion(t *testing.T) {
	d := openStore(t, t.TempDir(), disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "z", MemorySize: 1 << 20, MemoryEntryMax: 1 << 10, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	for round := range 20 {
		var done atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !done.Load() {
					z.mem.del("/k") // force the next Get to promote from disk
					z.Get("/k")
				}
			}()
		}
		last := ""
		for i := range 50 {
			last = fmt.Sprintf("round %d version %d", round, i)
			m := testMeta("/k", int64(len(last)))
			m.StoredAt = time.Now()
			s := z.NewEntryWriter(m, z.Mark())
			s.Write([]byte(last))
			if _, ok := s.Commit(); !ok {
				t.Fatal("store refused")
			}
		}
		done.Store(true)
		wg.Wait()
		if e, ok := z.Get("/k"); !ok || string(e.Body) != last {
			t.Fatalf("after the writes: %q, want %q", e.Body, last)
		}
	}
}

// TestZonePurgeCounts: purges count the entries that existed, once each,
// with and without a disk tier, whichever tier holds them.
func TestZonePurgeCounts(t *testing.T) {
	for _, withDisk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", withDisk), func(t *testing.T) {
			cfg := ZoneConfig{Name: "t", MemorySize: 16 << 20, MemoryEntryMax: 100}
			if withDisk {
				cfg.Disk = openStore(t, t.TempDir(), disk.Options{})
				// Purges by prefix wait for the index (IndexReady); a
				// loaded machine may not have walked the empty folder yet.
				waitLoaded(t, cfg.Disk)
			}
			z, err := NewZone(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer z.Close()
			small, large := []byte("small"), bytes.Repeat([]byte("L"), 1000)
			zonePut(t, z, "/a/1", small, true)
			zonePut(t, z, "/b/1", small, true)
			zonePut(t, z, "/c", small, true)
			want := int64(0)
			if withDisk {
				// Too large for memory: on disk only.
				zonePut(t, z, "/a/2", large, true)
				zonePut(t, z, "/b/2", large, true)
			}
			if z.Purge("/nonexistent") {
				t.Error("Purge of a key never stored reports true")
			}
			if !z.Purge("/b/1") || z.Purge("/b/1") {
				t.Error("Purge of /b/1 twice: want true, then false")
			}
			want++
			if withDisk {
				if !z.Purge("/b/2") {
					t.Error("Purge of an entry on disk only reports false")
				}
				want++
			}
			wantPrefix := 1
			if withDisk {
				wantPrefix = 2
			}
			if n, err := z.PurgePrefix("/a/"); err != nil || n != wantPrefix {
				t.Errorf("PurgePrefix = %d, %v; want %d", n, err, wantPrefix)
			}
			want += int64(wantPrefix)
			for _, p := range []string{"/a/", "/nonexistent/"} {
				if n, err := z.PurgePrefix(p); err != nil || n != 0 {
					t.Errorf("PurgePrefix(%s) of nothing = %d, %v", p, n, err)
				}
			}
			if keys, more, _ := z.Keys("", "", 10); len(keys) != 1 || keys[0] != "/c" || more {
				t.Errorf("Keys = %v %v", keys, more)
			}
			if n, err := z.PurgeAll(); err != nil || n != 1 {
				t.Errorf("PurgeAll = %d, %v; want 1", n, err)
			}
			want++
			if n, err := z.PurgeAll(); err != nil || n != 0 {
				t.Errorf("PurgeAll of an empty zone = %d, %v", n, err)
			}
			if got := z.Stats.Purged.Load(); got != want {
				t.Errorf("Purged counter = %d, want %d", got, want)
			}
		})
	}
}

// TestZoneDiskKeys: after a restart the memory tier is empty and the keys
// come from the entry files, for listing and purging.
func TestZoneDiskKeys(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		zonePut(t, z, fmt.Sprintf("/k/%d", i), []byte("x"), true)
	}
	zonePut(t, z, "/other", []byte("x"), true)
	z.Close()
	d.Close()

	d = openStore(t, dir, fastLoader(disk.Options{}))
	z, err = NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	waitLoaded(t, d)
	// One key in memory too: listed once.
	if _, ok := z.Get("/k/3"); !ok {
		t.Fatal("/k/3 not found after the restart")
	}
	var got []string
	after := ""
	for {
		keys, more, err := z.Keys("/k/", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys...)
		if !more {
			break
		}
		after = keys[len(keys)-1]
	}
	// In the order of their MD5, each once.
	for i := 1; i < len(got); i++ {
		if a, b := disk.KeyHash(got[i-1]), disk.KeyHash(got[i]); bytes.Compare(a[:], b[:]) >= 0 {
			t.Errorf("Keys pages not in hash order: %v", got)
		}
	}
	slices.Sort(got)
	want := []string{"/k/0", "/k/1", "/k/2", "/k/3", "/k/4", "/k/5", "/k/6"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Keys pages = %v, want %v", got, want)
	}
	if n, err := z.PurgePrefix("/k/"); err != nil || n != 7 {
		t.Fatalf("PurgePrefix = %d, %v; want 7", n, err)
	}
	if _, ok := z.Get("/k/3"); ok {
		t.Fatal("purged key served")
	}
	if keys, _, _ := z.Keys("", "", 10); fmt.Sprint(keys) != "[/other]" {
		t.Fatalf("Keys after the purge = %v", keys)
	}
}

// TestZoneFlushedFolder: emptying the zone folder empties the memory tier
// too (the operators' full flush).
func TestZoneFlushedFolder(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, disk.Options{FlushCheck: 10 * time.Millisecond})
	z, err := NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	zonePut(t, z, "/a", []byte("old"), true)
	if e, ok := z.Get("/a"); !ok || !e.InMemory() {
		t.Fatal("/a not in memory")
	}
	// The operators' flush: `rm -rf dir/*`.
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.RemoveAll(n); err != nil {
			t.Fatal(err)
		}
	}
	// The store writes its flush marker again once the zone forgot.
	marker := filepath.Join(dir, "CACHEDIR.TAG")
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the flush", func() bool { _, err := os.Stat(marker); return err == nil }))
	if _, ok := z.Get("/a"); ok {
		t.Fatal("served from memory after the flush")
	}
	zonePut(t, z, "/a", []byte("new"), true)
	if e, ok := z.Get("/a"); !ok || string(e.Body) != "new" {
		t.Fatal("the zone does not store after the flush")
	}
}

// A key whose fill stored nothing is remembered for its time only, and a
// fill that stores forgets it.
func TestUncacheableMark(t *testing.T) {
	z := newTestZone(t, 1<<20, 0)
	z.MarkUncacheable("/k", 10*time.Second)
	if !z.Uncacheable("/k") || z.Uncacheable("/other") {
		t.Fatal("mark not kept, or kept for another key")
	}
	z.Clock().Advance(10 * time.Second)
	if z.Uncacheable("/k") {
		t.Error("mark outlived its time")
	}
	z.MarkUncacheable("/k", time.Minute)
	z.MarkUncacheable("/k", 0)
	if z.Uncacheable("/k") {
		t.Error("mark not forgotten")
	}
	// Keys nobody asks for again are swept as others are added.
	for i := range 5000 {
		z.MarkUncacheable(fmt.Sprint("/old", i), time.Second)
	}
	z.Clock().Advance(2 * time.Second)
	for i := range 5000 {
		z.MarkUncacheable(fmt.Sprint("/new", i), time.Second)
	}
	if n := len(z.fills.uncacheable); n > 6000 {
		t.Errorf("%d marks kept, the expired ones not swept", n)
	}
}

// The mark never outlasts the answer's own freshness.
func TestPolicyUncacheable(t *testing.T) {
	p := &Policy{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header http.Header
		want   time.Duration
	}{
		{nil, 10 * time.Second},
		{http.Header{"Cache-Control": {"no-store"}}, 10 * time.Second},
		{http.Header{"Cache-Control": {"private, max-age=3"}}, 3 * time.Second},
		{http.Header{"Cache-Control": {"max-age=0"}}, 0},
		{http.Header{"Date": {now.Format(http.TimeFormat)}, "Expires": {now.Add(4 * time.Second).Format(http.TimeFormat)}}, 4 * time.Second},
		{http.Header{"Expires": {"0"}}, 0},
	} {
		if got := p.Uncacheable(10*time.Second, c.header, now); got != c.want {
			t.Errorf("%v: %v, want %v", c.header, got, c.want)
		}
	}
}

// TestRevalidateKeepsDiskBody: a revalidated disk entry reads its body from
// the file it was read from, whether the zone stored the revalidation or
// refused it (a purge of another key since the request's Mark).
func TestRevalidateKeepsDiskBody(t *testing.T) {
	for _, purge := range []bool{false, true} {
		z := newDiskZone(t, 1<<10)
		body := bytes.Repeat([]byte("0123456789abcdef"), 8<<10)
		if !zonePut(t, z, "/big", body, true) {
			t.Fatal("not stored")
		}
		old, ok := z.Get("/big")
		if !ok || old.InMemory() {
			t.Fatal("/big is not a disk entry")
		}
		at := z.Mark()
		if purge {
			z.Purge("/other")
		}
		now := time.Now()
		e := z.Revalidate(old, Revalidation{At: now, Decision: Decision{Store: true, ValidUntil: now.Add(time.Hour)}, Mark: at})
		if e.InMemory() || !e.ValidUntil.Equal(now.Add(time.Hour)) {
			t.Fatalf("purge %v: the revalidated entry: in memory %v, valid until %s", purge, e.InMemory(), e.ValidUntil)
		}
		r, err := e.OpenRange(0, e.BodySize)
		if err != nil {
			t.Fatalf("purge %v: OpenRange: %v", purge, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("purge %v: read %d bytes, %v; want the whole %d", purge, len(got), err, len(body))
		}
		if stored, _ := z.Get("/big"); stored.ValidUntil.Equal(e.ValidUntil) == purge {
			t.Errorf("purge %v: stored %v, want %v", purge, stored.ValidUntil.Equal(e.ValidUntil), !purge)
		}
	}
}

// TestMemoryEvictionsCounted: entries pushed out of a full memory tier
// are counted (the status page and edgecache_memory_evictions_total);
// purges are not evictions.
func TestMemoryEvictionsCounted(t *testing.T) {
	z := newTestZone(t, 1<<20, 64<<10)
	body := bytes.Repeat([]byte("x"), 32<<10)
	z.Purge("/none")
	for i := range 200 {
		zonePut(t, z, fmt.Sprintf("/e/%d", i), body, true)
	}
	testkit.Eventually(t, 5*time.Second, func() string {
		if n := z.Tiers().MemoryEvictions; n == 0 {
			return "evictions from a 1 MiB tier given 6 MiB"
		}
		return ""
	})
	if got := z.Tiers().MemoryEvictions; got > 200 {
		t.Errorf("MemoryEvictions = %d for 200 writes", got)
	}
}

// A look-up of a disk entry whose file the store keeps open allocates
// nothing: every hit of the file shares the store's entry and the zone's
// (its Age string too).
func TestDiskHitLookupAllocations(t *testing.T) {
	d := openStore(t, t.TempDir(), disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "z", MemorySize: 1 << 20, MemoryEntryMax: 1, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	body := []byte("a disk entry's body")
	w := z.NewEntryWriter(testMeta("/k", int64(len(body))), z.Mark())
	w.Write(body)
	if _, ok := w.Commit(); !ok {
		t.Fatal("store refused")
	}
	first, tier := z.LookupTier("/k", nil)
	if tier != TierDisk {
		t.Fatalf("tier %v, want disk", tier)
	}
	allocs := testing.AllocsPerRun(100, func() {
		e, tier := z.LookupTier("/k", nil)
		if tier != TierDisk || e != first {
			t.Fatalf("tier %v, entry %p; want disk, %p", tier, e, first)
		}
		_ = e.AgeValue(time.Now())
	})
	if allocs != 0 {
		t.Errorf("%v allocations per look-up, want 0", allocs)
	}
	// An overwrite drops the open file, and its entry with it.
	w = z.NewEntryWriter(testMeta("/k", int64(len(body))), z.Mark())
	w.Write(body)
	if _, ok := w.Commit(); !ok {
		t.Fatal("store refused")
	}
	if e, _ := z.LookupTier("/k", nil); e == first {
		t.Error("the overwritten version's entry is still served")
	}
}
