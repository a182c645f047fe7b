//go:build linux

package disk

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestDiskFull fills a small tmpfs: the write fails with a "no_space"
// count and one log line, nothing is left behind, and the store works again
// once there is room.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a small tmpfs to fill (needs CAP_SYS_ADMIN; CI runs as root): %v", err)
		}
		t.Skipf("cannot mount a small tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	var logged atomic.Int64
	d := openStore(t, mnt, Options{Logger: func(msg string, err error) {
		if strings.Contains(msg, "no_space") && errors.Is(err, syscall.ENOSPC) {
			logged.Add(1)
		}
	}})
	chunk := make([]byte, 32<<10)
	for range 3 {
		w, err := d.Create(testMeta("big", -1))
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for range 32 { // 1 MiB
			if _, werr = w.Write(chunk); werr != nil {
				break
			}
		}
		if werr == nil {
			_, werr = w.Commit()
		} else {
			w.Abort()
		}
		if werr == nil {
			t.Fatal("1 MiB stored in a 256 KiB file system")
		}
	}
	if n := d.Stats().WriteErrors["no_space"]; n != 3 {
		t.Fatalf("no_space errors = %d, want 3", n)
	}
	if logged.Load() != 1 {
		t.Fatalf("logged %d times, want once", logged.Load())
	}
	if tmp := tempFiles(t, mnt); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	put(t, d, testMeta("small", -1), make([]byte, 10<<10))
	if _, err := d.Get("small"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Fatal(err)
	}
}
