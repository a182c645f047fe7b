package disk

import (
	"github.com/edgecache/edgecache/cache/tagindex"

	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkPurgeTagDisk1M writes EDGECACHE_BENCH_ENTRIES entry files (a
// million by default; 10 per image, tagged image:<n>), opens a store on
// them (the loader reads the tags back), and times what a zone's purge by
// tag does on a disk-only zone: the tag's keys read from its 10 files,
// and the 10 files deleted. It reports it beside the same purge by
// prefix, a walk of every entry file (timed once), and the tag index's
// bytes per reference.
func BenchmarkPurgeTagDisk1M(b *testing.B) {
	entries := millionEntries
	if v := os.Getenv("EDGECACHE_BENCH_ENTRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			b.Fatalf("EDGECACHE_BENCH_ENTRIES=%q: want a count of at least 20", v)
		}
		entries = n
	}
	const perImage = 10
	dir := b.TempDir()
	writeEntryFiles(b, dir, entries, func(i int) []string { return []string{"image:" + strconv.Itoa(i/perImage)} })
	before := liveHeap()
	d := openStore(b, dir, Options{LoaderFiles: 1 << 30, LoaderThreshold: time.Hour})
	<-d.Loaded()
	heap := float64(liveHeap()-before) / float64(entries)
	tagBytes := d.TagIndexBytes()
	images := entries / perImage

	// The prefix purge of one image's entries: a walk of every file.
	start := time.Now()
	prefix := "/webclient/render_thumbnail/1/" // image 0's first key... and no other
	found := 0
	d.Walk(func(key string) bool {
		if strings.HasPrefix(key, prefix) {
			found++
		}
		return true
	})
	walk := time.Since(start)
	if found != 1 {
		b.Fatalf("the walk found %d keys under %s", found, prefix)
	}

	image := 0
	b.ResetTimer()
	for b.Loop() {
		if image == images {
			b.Fatalf("every image purged: run with a smaller -benchtime or more entries")
		}
		keys := d.Tagged(fmt.Sprintf("image:%d", image))
		for _, k := range keys {
			if _, err := d.Delete(k); err != nil {
				b.Fatal(err)
			}
		}
		if len(keys) != perImage {
			b.Fatalf("image %d: %d keys, want %d", image, len(keys), perImage)
		}
		image++
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/tag-purge")
	b.ReportMetric(walk.Seconds()*1000, "ms/prefix-walk")
	b.ReportMetric(float64(tagBytes-int64(images)*(int64(len("image:"))+5+tagindex.SlotBytes))/float64(entries), "tag-bytes/ref")
	b.ReportMetric(heap, "heap-bytes/entry")
}
