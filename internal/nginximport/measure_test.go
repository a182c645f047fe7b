package nginximport

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/cache/disk"
	"github.com/edgecache/edgecache/internal/nginxcache"
)

// TestMeasureImport measures an import into a stopped proxy's zone (the
// disk tier written directly) of 100,000 entries of 2 KiB and 1,000 of
// 1 MiB, as nginx writes them. It is a measurement, not a check: it runs
// only with EDGECACHE_MEASURE_IMPORT=1 and prints files/s and MB/s.
// Generating the nginx folder is not timed; its files are then in the page
// cache, so the figures are the import's own cost, not a cold disk's.
func TestMeasureImport(t *testing.T) {
	if os.Getenv("EDGECACHE_MEASURE_IMPORT") != "1" {
		t.Skip("a measurement: run with EDGECACHE_MEASURE_IMPORT=1")
	}
	for _, c := range []struct {
		name  string
		files int
		size  int
	}{
		{"100,000 entries of 2 KiB", 100_000, 2 << 10},
		{"1,000 entries of 1 MiB", 1_000, 1 << 20},
	} {
		dir := t.TempDir()
		from := filepath.Join(dir, "nginx")
		body := make([]byte, c.size)
		for i := range body {
			body[i] = byte(i)
		}
		raw := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nETag: \"x\"\r\nSet-Cookie: s=1\r\nVary: Cookie\r\n\r\n", c.size))
		now := time.Now()
		for i := range c.files {
			key := fmt.Sprintf("/webclient/render_thumbnail/%d/?", i)
			b, err := nginxcache.Encode(&nginxcache.Entry{Key: key, ValidSec: now.Add(time.Hour).Unix(), Date: now.Unix(), LastModified: -1}, raw, body)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(from, nginxcache.FileName(nginxcache.KeyHash(key), []int{1, 2}))
			os.MkdirAll(filepath.Dir(path), 0o700)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		d, err := disk.Open(filepath.Join(dir, "zone"), disk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		<-d.Loaded()
		z, err := cache.NewZone(cache.ZoneConfig{Name: "m", MemorySize: 1 << 20, Disk: d})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := Run(context.Background(), Options{From: from}, zoneSink{z})
		z.Close()
		d.Close()
		if err != nil || sum.Imported != int64(c.files) {
			t.Fatalf("%s: %+v %v", c.name, sum, err)
		}
		secs := sum.Elapsed.Seconds()
		t.Logf("%s: %s, %.0f files/s, %.1f MB/s (bodies)", c.name, sum.Elapsed.Round(time.Millisecond), float64(c.files)/secs, float64(sum.Bytes)/secs/1e6)
	}
}

type zoneSink struct{ z *cache.Zone }

func (s zoneSink) Import(_ context.Context, m cache.Meta, body io.Reader) error {
	return s.z.Import(m, body)
}
