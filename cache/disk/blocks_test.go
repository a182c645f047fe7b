package disk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// TestDiskPowerLossLeftovers writes what a power loss can leave of an
// entry written without fsync (the file renamed into view, but some of its
// blocks never written: zeros, or another file's old bytes) and checks
// that no read ever returns a complete body that is wrong: a whole load
// fails, a stream stops before the first bad block.
func TestDiskPowerLossLeftovers(t *testing.T) {
	body := randomBody(7, 3*bodyBlockSize+500)
	stale := randomBody(8, bodyBlockSize)
	type damage func(t *testing.T, path string, bodyOffset int64)
	overwrite := func(at int64, p []byte) damage {
		return func(t *testing.T, path string, bodyOffset int64) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			copy(b[bodyOffset+at:], p)
			rewrite(t, path, b)
		}
	}
	cases := []struct {
		name   string
		damage damage
		good   int64 // body bytes before the first bad block
	}{
		{"body zeroed", overwrite(0, make([]byte, len(body))), 0},
		{"last block zeroed", overwrite(3*bodyBlockSize, make([]byte, 500)), 3 * bodyBlockSize},
		{"a block of another file", overwrite(bodyBlockSize, stale), bodyBlockSize},
		{"table zeroed", overwrite(int64(len(body)), make([]byte, 16)), 0},
		{"a page of zeros", overwrite(2*bodyBlockSize+4096, make([]byte, 4096)), 2 * bodyBlockSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := openStore(t, t.TempDir(), Options{})
			e := put(t, d, testMeta("k", -1), body)
			tc.damage(t, e.File.path, e.File.offset)

			r, err := e.File.Open()
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := io.Copy(&got, r)
			r.Close()
			if !errors.Is(err, ErrCorrupt) || n != tc.good || !bytes.Equal(got.Bytes(), body[:n]) {
				t.Fatalf("stream: %d bytes (want the %d good ones), %v", n, tc.good, err)
			}
			if exists(e.File.path) {
				t.Fatal("damaged file not removed")
			}

			e = put(t, d, testMeta("k", -1), body)
			tc.damage(t, e.File.path, e.File.offset)
			if b, err := e.File.Load(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("LoadBody = %d bytes, %v; want ErrCorrupt", len(b), err)
			}
			if got := d.Stats().CorruptRemovals; got != 2 {
				t.Fatalf("%d corrupt removals, want 2", got)
			}
		})
	}
}

// TestDiskOlderFormat: a file of an older format version is dropped (a
// miss, fetched again), at look-up and by the index rebuild, and not
// counted as damage.
func TestDiskOlderFormat(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	put(t, d, testMeta("a", -1), []byte("A"))
	put(t, d, testMeta("b", -1), []byte("B"))
	setVersion(t, fileOf(d, "a"), 1)
	setVersion(t, fileOf(d, "b"), 2)
	if _, err := d.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a version 1 file = %v, want ErrNotFound", err)
	}
	if exists(fileOf(d, "a")) {
		t.Fatal("version 1 file kept")
	}
	d.Close()

	d2 := openStore(t, dir, fastLoader(Options{}))
	waitLoaded(t, d2)
	if exists(fileOf(d2, "b")) {
		t.Fatal("the index rebuild kept a version 2 file")
	}
	if st := d2.Stats(); st.Entries != 0 || st.CorruptRemovals != 0 {
		t.Fatalf("stats after the rebuild: %+v", st)
	}
}
