package disk

import (
	"errors"
	"fmt"
	"github.com/edgecache/edgecache/internal/testkit"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// removeContents is the operators' flush: `rm -rf dir/*`, which leaves
// dotfiles.
func removeContents(t *testing.T, dir string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.RemoveAll(n); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiskFlushMarker(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{FlushCheck: 10 * time.Millisecond})
	var flushes atomic.Int64
	d.OnFlush(func() { flushes.Add(1) })
	marker := filepath.Join(dir, flushMarkerName)
	if b, err := os.ReadFile(marker); err != nil || !strings.HasPrefix(string(b), "Signature: 8a477f597d28d172789f06886806bc55") {
		t.Fatalf("marker: %q, %v", b, err)
	}
	for i := range 10 {
		put(t, d, testMeta(fmt.Sprint(i), -1), []byte("x"))
	}
	removeContents(t, dir)
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the flush", func() bool { return flushes.Load() == 1 }))
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the marker", func() bool { _, err := os.Stat(marker); return err == nil }))
	if st := d.Stats(); st.Entries != 0 || st.Flushes != 1 {
		t.Fatalf("stats after the flush: %+v", st)
	}
	// The lock survived: it is a dotfile.
	if _, err := lockFolder(dir); err == nil {
		t.Fatal("the folder lock was lost in the flush")
	}
	// The store goes on, and the marker's presence is no flush.
	put(t, d, testMeta("after", -1), []byte("y"))
	if _, err := d.Get("after"); err != nil {
		t.Fatal(err)
	}
	// Two more checks, each finding the marker: the first to end after this
	// point may have begun before it, the second began after.
	checks := d.flushChecks.Load()
	testkit.Eventually(t, 10*time.Second, testkit.Holds("two more flush checks", func() bool { return d.flushChecks.Load() >= checks+2 }))
	if n := flushes.Load(); n != 1 {
		t.Fatalf("%d flushes, want 1", n)
	}

	// A file the flush has not reached yet (a large folder takes a while
	// to empty, and the marker may go first) is not served.
	stale := put(t, d, testMeta("stale", -1), []byte("old"))
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(stale.File.path, old, old); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.idx = newDiskIndex() // as if found by the loader after the flush
	d.mu.Unlock()
	if _, err := d.Get("stale"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a file from before the flush = %v", err)
	}
	if _, err := os.Stat(stale.File.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file from before the flush is still there: %v", err)
	}

	// `rm -rf dir` takes the folder, the lock file with it: both come back.
	// (The store may re-create the folder while rm is still at work, and rm
	// then fails: the operator runs it again, as this does.)
	testkit.Eventually(t, 10*time.Second, testkit.Holds("rm -rf to succeed", func() bool { return os.RemoveAll(dir) == nil }))
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the second flush", func() bool { return flushes.Load() >= 2 }))
	testkit.Eventually(t, 10*time.Second, testkit.Holds("the marker", func() bool { _, err := os.Stat(marker); return err == nil }))
	// Files written within a clock tick of the flush count as older.
	flushed := time.Unix(0, d.flushedAt.Load())
	testkit.Eventually(t, 10*time.Second, testkit.Holds("a clock tick", func() bool { return time.Since(flushed) > 20*time.Millisecond }))
	if _, err := lockFolder(dir); err == nil {
		t.Fatal("the folder lock was not taken again")
	}
	put(t, d, testMeta("after the folder went", -1), []byte("z"))
	if n := flushes.Load(); n > 3 {
		t.Fatalf("%d flushes, want 2 or 3", n)
	}
	if _, err := d.Get("after the folder went"); err != nil {
		t.Fatal(err)
	}
}

func TestDiskFolderLock(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	// Another store of this process.
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second store in one process: %v", err)
	}
	// Another process: flock(2) locks belong to an open file description,
	// so a second one conflicts as another process's would.
	_, err := lockFolder(dir)
	if err == nil {
		t.Fatal("the lock was taken twice")
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	d.Close()
	l, err := lockFolder(dir)
	if err != nil {
		t.Fatalf("lock after Close: %v", err)
	}
	l.release()
	d2 := openStore(t, dir, Options{})
	if _, err := d2.Create(testMeta("k", -1)); err != nil {
		t.Fatal(err)
	}
}

// TestNewDiskStoreTouchesNothing: a store that is not opened (a config
// being validated) creates no folder and removes no file.
func TestNewDiskStoreTouchesNothing(t *testing.T) {
	root := t.TempDir()
	stale := filepath.Join(root, tempPrefix+"running")
	if err := os.WriteFile(stale, []byte("a running proxy's entry"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(root, "a", "b")
	for _, dir := range []string{root, missing} {
		d, err := New(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(dir); err != nil {
			t.Fatalf("CheckDir(%s) = %v", dir, err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		<-d.Loaded() // closed by Close: a zone waiting on it goes on
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a folder was created: %v", err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the temporary file is gone: %v", err)
	}
	names, _ := readDirNames(root)
	if len(names) != 1 {
		t.Fatalf("folder holds %v", names)
	}
	// A file where a folder should be.
	if err := CheckDir(filepath.Join(stale, "zone")); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Fatalf("CheckDir under a file = %v", err)
	}
}
