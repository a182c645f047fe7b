package tagindex

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestIndex(t *testing.T) {
	var mu sync.Mutex
	live := map[string]bool{}
	x := New(strings.Compare, 16, func(k string) bool { mu.Lock(); defer mu.Unlock(); return live[k] })
	for i := range 3000 {
		k := fmt.Sprint("/k/", i)
		mu.Lock()
		live[k] = true
		mu.Unlock()
		x.Add(k, []string{"all", fmt.Sprint("one:", i)})
	}
	x.Add("/k/0", []string{"all"}) // again: no duplicate
	if tags, refs := x.Size(); tags != 3001 || refs != 6000 {
		t.Fatalf("Size = %d tags, %d refs; want 3001, 6000", tags, refs)
	}
	if got := x.Lookup("one:7"); !slices.Equal(got, []string{"/k/7"}) {
		t.Errorf("Lookup(one:7) = %q", got)
	}
	x.Remove("/k/7", []string{"one:7", "all"})
	if got := x.Lookup("one:7"); got != nil {
		t.Errorf("after Remove: %q", got)
	}
	// Entries that leave are swept once they pass a quarter of the
	// references (5,998 / 4).
	for i := range 1499 {
		mu.Lock()
		delete(live, fmt.Sprint("/k/", i))
		mu.Unlock()
		x.Gone()
	}
	if _, refs := x.Size(); refs != 5998 {
		t.Errorf("swept before a quarter of the references went: %d refs", refs)
	}
	mu.Lock()
	delete(live, "/k/1499")
	mu.Unlock()
	x.Gone()
	testkit.Eventually(t, 10*time.Second, func() string {
		if tags, refs := x.Size(); refs != 2*1500 || tags != 1+1500 {
			return fmt.Sprintf("after a sweep: %d tags, %d refs; want %d, %d", tags, refs, 1+1500, 2*1500)
		}
		return ""
	})
	x.Clear()
	if tags, refs := x.Size(); tags != 0 || refs != 0 || x.Bytes() != 0 {
		t.Errorf("after Clear: %d tags, %d refs, %d bytes", tags, refs, x.Bytes())
	}
}

// The accounting follows what the slices hold: 16 bytes a reference, and
// at most a sixteenth more while a tag grows.
func TestIndexBytes(t *testing.T) {
	x := New(strings.Compare, 16, func(string) bool { return true })
	for i := range 100_000 {
		x.Add(fmt.Sprintf("/k/%07d", i), []string{"dataset:1"})
	}
	perRef := float64(x.Bytes()-int64(len("dataset:1"))-SlotBytes) / 100_000
	if perRef < 16 || perRef > 17 {
		t.Errorf("%.2f B per reference, want 16 to 17", perRef)
	}
}

func BenchmarkIndexAdd(b *testing.B) {
	x := New(strings.Compare, 16, func(string) bool { return true })
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("/webgateway/render_image/%d/0/0/", i)
	}
	b.ResetTimer()
	for i := range b.N {
		x.Add(keys[i], []string{fmt.Sprint("image:", i/10)})
	}
}

// BenchmarkIndexHeap1M puts a million references (ten per tag, MD5s as
// the disk tier's) in an index and reports the live heap per reference
// beyond the tags' strings, beside the index's own count.
func BenchmarkIndexHeap1M(b *testing.B) {
	const refs, perTag = 1_000_000, 10
	tags := make([]string, refs/perTag)
	var tagBytes int64
	for i := range tags {
		tags[i] = fmt.Sprintf("image:%d", i)
		tagBytes += int64(len(tags[i]))
	}
	var heap, counted float64
	for b.Loop() {
		before := liveHeap()
		x := New(func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) }, 16, func([16]byte) bool { return true })
		for i := range refs {
			x.Add(md5.Sum([]byte(strconv.Itoa(i))), tags[i/perTag:i/perTag+1])
		}
		heap = float64(int64(liveHeap()-before)-tagBytes) / refs
		counted = float64(x.Bytes()-tagBytes) / refs
		runtime.KeepAlive(x)
	}
	b.ReportMetric(heap, "heap-bytes/ref")
	b.ReportMetric(counted, "counted-bytes/ref")
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
