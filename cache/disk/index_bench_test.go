package disk

import (
	"crypto/md5"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The two benchmarks below work on a million entries whatever b.N is (run
// them with -benchtime 1x; CI skips them by name). They report what
// docs/performance.md compares with nginx's keys_zone: the heap an entry
// costs and how long the index takes to rebuild at start.

const millionEntries = 1_000_000

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkDiskIndex1M fills a store's index with a million records, as
// commits and the loader do, and reports the heap per entry.
func BenchmarkDiskIndex1M(b *testing.B) {
	d := openStore(b, b.TempDir(), Options{})
	var perEntry, estimate float64
	for b.Loop() {
		d.mu.Lock()
		d.idx = newDiskIndex()
		d.mu.Unlock()
		before := liveHeap()
		start := time.Now()
		for i := range millionEntries {
			h := md5.Sum([]byte(fmt.Sprintf("/webclient/render_thumbnail/%d/?_=1700000000000", i)))
			d.mu.Lock()
			d.insertLocked(h, 5<<10, int64(i))
			d.mu.Unlock()
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/millionEntries, "ns/insert")
		perEntry = float64(liveHeap()-before) / millionEntries
		estimate = float64(d.IndexBytes()) / millionEntries
	}
	b.ReportMetric(perEntry, "heap-bytes/entry")
	b.ReportMetric(estimate, "estimated-bytes/entry")
	if perEntry > 128 {
		b.Errorf("the index takes %.0f bytes per entry, want at most 128 (nginx's keys_zone)", perEntry)
	}
}

// BenchmarkDiskRebuild1M writes a million entry files (5 KiB thumbnails
// with 60-byte keys), then times the index rebuild of a store opened on
// them, without the loader's pauses (nginx's loader_sleep; with the
// defaults they add 1M/100 × 50 ms), and reports the live heap per entry
// once it is done. The files are in the page cache: a cold disk reads an
// inode and a 4 KiB block per entry on top.
//
// EDGECACHE_BENCH_ENTRIES sets another count: writing a million files takes
// most of an hour on a slow shared disk.
func BenchmarkDiskRebuild1M(b *testing.B) {
	entries := millionEntries
	if v := os.Getenv("EDGECACHE_BENCH_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("EDGECACHE_BENCH_ENTRIES=%q: want a positive count", v)
		}
		entries = n
	}
	dir := b.TempDir()
	writeEntryFiles(b, dir, entries, nil)
	var perEntry float64
	for b.Loop() {
		before := liveHeap()
		start := time.Now()
		d := openStore(b, dir, Options{LoaderFiles: 1 << 30, LoaderThreshold: time.Hour})
		<-d.Loaded() // no deadline: a million files take minutes
		took := time.Since(start)
		if n := d.Stats().Entries; n != int64(entries) {
			b.Fatalf("%d entries indexed, want %d", n, entries)
		}
		perEntry = float64(liveHeap()-before) / float64(entries)
		b.ReportMetric(took.Seconds(), "s/rebuild")
		b.ReportMetric(float64(took.Microseconds())/float64(entries), "µs/entry")
		d.Close()
	}
	b.ReportMetric(perEntry, "heap-bytes/entry")
}

// writeEntryFiles writes n entry files straight into dir (levels 1:2),
// with the tags tags(i) gives entry i (nil: none).
func writeEntryFiles(b *testing.B, dir string, n int, tags func(i int) []string) {
	b.Helper()
	d, err := New(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 5<<10)
	var blocks blockHasher
	blocks.Write(body)
	file := append(body, blocks.finish()...) // the body and its block table
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 2
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				m := testMeta(fmt.Sprintf("/webclient/render_thumbnail/%d/?_=1700000000000", i), int64(len(body)))
				if tags != nil {
					m.Tags = tags(i)
				}
				header, err := encodeHeader(&m, int64(len(body)))
				if err == nil {
					path := d.path(KeyHash(m.Key))
					if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
						err = os.WriteFile(path, append(header, file...), 0o644)
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}
