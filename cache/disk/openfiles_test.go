package disk

import (
	"bytes"
	"errors"
	"io"
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
