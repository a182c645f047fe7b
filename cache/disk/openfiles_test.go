package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func openCount(d *Store) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.open)
}

// TestOpenFilesFollowWrites: a hit reads through the file kept open by the
// previous one, and every write, purge and flush of the zone drops it, so
// that the next look-up sees the new version. A reader opened before keeps
// the version it was opened on.
func TestOpenFilesFollowWrites(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	v1, v2 := randomBody(1, 3*bodyBlockSize+7), randomBody(2, 2*bodyBlockSize+9)
	put(t, d, testMeta("k", -1), v1)
	e1, err := d.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	if n := openCount(d); n != 1 {
		t.Fatalf("%d open files after a look-up, want 1", n)
	}
	again, err := d.Get("k")
	if err != nil || again.File.of != e1.File.of {
		t.Fatalf("second look-up: %v, same open file %v", err, err == nil && again.File.of == e1.File.of)
	}
	old, err := e1.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	put(t, d, testMeta("k", -1), v2) // an overwrite
	if n := openCount(d); n != 0 {
		t.Fatalf("%d open files after an overwrite, want 0", n)
	}
	e2, err := d.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllBody(t, d, e2); !bytes.Equal(got, v2) {
		t.Fatalf("after the overwrite: %d bytes, want the new %d", len(got), len(v2))
	}
	if got, err := io.ReadAll(old); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("reader opened before the overwrite: %d bytes, %v; want the old %d", len(got), err, len(v1))
	}
	// An entry looked up before the overwrite reads nothing of the new
	// version: its open file is dropped, and the file at its path is
	// another one.
	if _, err := e1.File.Open(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old entry's Open after the overwrite: %v, want ErrNotFound", err)
	}

	if _, err := d.Delete("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	put(t, d, testMeta("k", -1), v1)
	if _, err := d.Get("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get("k"); !errors.Is(err, ErrNotFound) || openCount(d) != 0 {
		t.Fatalf("Get after Clear: %v, %d open files", err, openCount(d))
	}
}

// TestVerifyOnce: the first whole read of an open file verifies it; later
// readers are trusted (sent unread, by sendfile where it can), a range
// does not count, and VerifyAlways keeps every read verified: damage
// after the first read is then still found.
func TestVerifyOnce(t *testing.T) {
	for _, always := range []bool{false, true} {
		d := openStore(t, t.TempDir(), Options{VerifyAlways: always})
		body := randomBody(3, 2*bodyBlockSize+500)
		put(t, d, testMeta("k", -1), body)
		e, err := d.Get("k")
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.File.Open()
		if err != nil {
			t.Fatal(err)
		}
		r.Seek(bodyBlockSize, io.SeekStart) // a range: not all of it
		io.Copy(io.Discard, r)
		r.Close()
		if r, _ := e.File.Open(); r.Trusted() {
			t.Fatalf("always=%v: trusted after a range only", always)
		} else {
			r.Close()
		}
		if got := readAllBody(t, d, e); !bytes.Equal(got, body) {
			t.Fatal("whole read differs")
		}
		r, err = e.File.Open()
		if err != nil {
			t.Fatal(err)
		}
		if r.Trusted() == always {
			t.Fatalf("always=%v: trusted %v after a whole read", always, r.Trusted())
		}
		r.Close()
		if !always {
			// A reload to verify always: the next readers verify.
			d.SetVerifyAlways(true)
			if r, _ := e.File.Open(); r.Trusted() {
				t.Fatal("trusted after SetVerifyAlways(true)")
			} else {
				r.Close()
			}
			d.SetVerifyAlways(false)
		}

		// Bit rot after the first read, in place (the open file sees it).
		flipByte(t, e.File.path, e.File.offset+10)
		r, err = e.File.Open()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		r.Close()
		if always && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("verify always: read of a damaged body: %v, want ErrCorrupt", err)
		}
		if !always && err != nil {
			// The documented trade-off: a trusted file is not read
			// through the checksums again while it stays open.
			t.Fatalf("verify once: trusted read: %v", err)
		}
	}
}

// archiveMeta is an entry with the headers of an image server's answer.
func archiveMeta(key string) Meta {
	m := testMeta(key, -1)
	m.Header = http.Header{
		"Content-Type":                {"image/jpeg"},
		"Cache-Control":               {"public, max-age=86400, stale-while-revalidate=60"},
		"Etag":                        {`"5f3c0a7e-2a1b4c"`},
		"Last-Modified":               {"Mon, 07 Dec 2026 12:00:00 GMT"},
		"Vary":                        {"Accept-Encoding"},
		"Access-Control-Allow-Origin": {"*"},
		"X-Omero-Image":               {strings.Repeat("9", 9)},
		"Set-Cookie-Free":             {"a", "b", "c"},
		"Link":                        {`<https://idr.openmicroscopy.org/webclient/?show=image-9836839>; rel="canonical"`},
	}
	m.Tags = []string{"image:9836839", "dataset:1234"}
	m.Date = "Mon, 07 Dec 2026 12:00:00 GMT"
	return m
}

// zoneEntry and ageString stand for cache.Entry and its Age record, which
// the zone keeps in an open file's Entry.Memo.
type zoneEntry struct {
	Entry
	body []byte
	age  *ageString
}

type ageString struct {
	sec   int64
	value string
}

// TestOpenFileBytes fills the open-file cache and checks what it counts
// against the live heap it added.
func TestOpenFileBytes(t *testing.T) {
	const files = 300
	d := openStore(t, t.TempDir(), Options{OpenFiles: files})
	keys := make([]string, files)
	for i := range keys {
		keys[i] = fmt.Sprintf("idr.openmicroscopy.org/webgateway/render_thumbnail/%d/96/", 9836839+i)
		put(t, d, archiveMeta(keys[i]), randomBody(uint64(i), 100))
	}
	waitLoaded(t, d)
	before := liveHeap()
	for _, k := range keys {
		e, err := d.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		// What the zone keeps with the file (cache.fromDisk).
		e.Memo().Store(&zoneEntry{Entry: *e, age: new(ageString)})
	}
	heap := int64(liveHeap() - before)
	n, counted := d.OpenFiles()
	if n != files {
		t.Fatalf("%d open files, want %d", n, files)
	}
	t.Logf("%d open files: heap %d B (%d per file), counted %d B (%d per file)", n, heap, heap/n, counted, counted/n)
	if counted < heap*9/10 || counted > heap*11/10 {
		t.Errorf("counted %d B for a heap of %d B: more than 10%% apart", counted, heap)
	}
	if st := d.Stats(); st.OpenFiles != n || st.OpenFileBytes != counted {
		t.Errorf("Stats: %d open files, %d B; OpenFiles: %d, %d B", st.OpenFiles, st.OpenFileBytes, n, counted)
	}

	// Every way out of the cache gives its bytes back.
	put(t, d, archiveMeta(keys[0]), randomBody(1, 100)) // an overwrite
	if _, err := d.Delete(keys[1]); err != nil {
		t.Fatal(err)
	}
	if n, b := d.OpenFiles(); n != files-2 || b != counted/files*(files-2) {
		t.Errorf("after an overwrite and a delete: %d files, %d B; want %d, %d", n, b, files-2, counted/files*(files-2))
	}
	if _, err := d.Clear(); err != nil {
		t.Fatal(err)
	}
	if n, b := d.OpenFiles(); n != 0 || b != 0 {
		t.Errorf("after Clear: %d files, %d B", n, b)
	}
}

// TestSetOpenFiles: a reload's new size applies to the store in use: a
// smaller one drops files at once, off drops them all and keeps none,
// and 0 is the default.
func TestSetOpenFiles(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{OpenFiles: 4})
	getAll := func() {
		t.Helper()
		for i := range 6 {
			if _, err := d.Get(fmt.Sprint("k", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 6 {
		put(t, d, testMeta(fmt.Sprint("k", i), -1), randomBody(uint64(i), 10))
	}
	getAll()
	n, b4 := d.OpenFiles()
	if n != 4 || openCount(d) != 4 {
		t.Fatalf("%d open files (%d in the map), want 4", n, openCount(d))
	}
	d.SetOpenFiles(2)
	if n, b := d.OpenFiles(); n != 2 || openCount(d) != 2 || b != b4/2 {
		t.Fatalf("after SetOpenFiles(2): %d files (%d in the map), %d B; want 2, %d B", n, openCount(d), b, b4/2)
	}
	d.SetOpenFiles(-1)
	getAll()
	if n, b := d.OpenFiles(); n != 0 || openCount(d) != 0 || b != 0 {
		t.Fatalf("off: %d files (%d in the map), %d B", n, openCount(d), b)
	}
	d.SetOpenFiles(0)
	getAll()
	if n, _ := d.OpenFiles(); n != 6 {
		t.Fatalf("default: %d open files, want all 6", n)
	}
}
