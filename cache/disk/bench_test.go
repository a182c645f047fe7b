package disk

import (
	"runtime"
	"testing"
)

// BenchmarkDiskWriter1GiB streams a 1 GiB body through a Writer and
// reports how much the heap grew meanwhile: memory must not follow the body
// size. Run with -benchtime=1x.
func BenchmarkDiskWriter1GiB(b *testing.B) {
	const total = 1 << 30
	d := openStore(b, b.TempDir(), Options{})
	chunk := randomBody(5, 1<<20)
	b.SetBytes(total)
	var before, ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peakInuse, peakSys := before.HeapInuse, before.Sys
	sample := func() {
		runtime.ReadMemStats(&ms)
		peakInuse = max(peakInuse, ms.HeapInuse)
		peakSys = max(peakSys, ms.Sys)
	}
	for b.Loop() {
		w, err := d.Create(testMeta("big", total))
		if err != nil {
			b.Fatal(err)
		}
		for written := 0; written < total; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				b.Fatal(err)
			}
			if written%(32<<20) == 0 {
				sample()
			}
		}
		if _, err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		sample()
		if _, err := d.Delete("big"); err != nil {
			b.Fatal(err)
		}
	}
	inuse := float64(peakInuse-before.HeapInuse) / (1 << 20)
	sys := float64(peakSys-before.Sys) / (1 << 20)
	b.ReportMetric(inuse, "MiB-heap-inuse-growth")
	b.ReportMetric(sys, "MiB-sys-growth")
	if inuse > 64 || sys > 64 {
		b.Errorf("writing 1 GiB grew the heap by %.1f MiB in use, %.1f MiB sys; want well under 64 MiB", inuse, sys)
	}
}

// BenchmarkDiskGetLoadBody is a disk hit of a small entry (a tile) as the
// memory tier's promotion does it: Get, then LoadBody.
func BenchmarkDiskGetLoadBody(b *testing.B) {
	d := openStore(b, b.TempDir(), Options{})
	body := randomBody(6, 16<<10)
	put(b, d, testMeta("tile", -1), body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e, err := d.Get("tile")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.File.Load(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
