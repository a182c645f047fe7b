package cache

import (
	"github.com/edgecache/edgecache/cache/disk"

	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// newDiskZone is a zone whose memory tier holds nothing over entryMax,
// over a disk tier in a temporary folder.
func newDiskZone(t *testing.T, entryMax int64) *Zone {
	t.Helper()
	d := openStore(t, t.TempDir(), disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, MemoryEntryMax: entryMax, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	return z
}

// openStream opens a reader of s from off.
func openStream(t *testing.T, s *Stream, off int64) *StreamReader {
	t.Helper()
	r, ok := s.Open(context.Background(), off)
	if !ok {
		t.Fatal("the stream cannot be opened")
	}
	return r
}

// readStream reads r to its end and closes it, returning the error that
// ended it (io.EOF for a complete body).
func readStream(r *StreamReader) ([]byte, error) {
	defer r.Close()
	var got bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.Bytes(), err
		}
	}
}

// A reader of the stream gets every byte as it is written, from the
// memory buffer or the disk temp file, and the end once the entry is
// committed; it reads on after the commit renames the file.
func TestStreamReadsWhileWritten(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10_000)
	for _, c := range []struct {
		name     string
		zone     func(t *testing.T) *Zone
		announce bool
		shared   bool
	}{
		{"memory", func(t *testing.T) *Zone { return newTestZone(t, 16<<20, 0) }, true, true},
		{"memory, unknown length", func(t *testing.T) *Zone { return newTestZone(t, 16<<20, 0) }, false, false},
		{"disk", func(t *testing.T) *Zone { return newDiskZone(t, 1) }, true, true},
		{"disk, unknown length", func(t *testing.T) *Zone { return newDiskZone(t, 1) }, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			z := c.zone(t)
			size := int64(-1)
			if c.announce {
				size = int64(len(body))
			}
			ew := z.NewEntryWriter(testMeta("/k", size), z.Mark())
			s := ew.Stream()
			if s == nil {
				t.Fatal("no stream")
			}
			if s.Shared() != c.shared {
				t.Errorf("shared %v, want %v", s.Shared(), c.shared)
			}
			if got := s.Entry().Header.Get("Content-Length"); c.announce != (got != "") {
				t.Errorf("Content-Length %q", got)
			}
			type result struct {
				body []byte
				err  error
			}
			done := make(chan result)
			for _, off := range []int64{0, 12_345} {
				r := openStream(t, s, off)
				go func() {
					b, err := readStream(r)
					done <- result{b, err}
				}()
			}
			for i := 0; i < len(body); i += 7_000 {
				ew.Write(body[i:min(i+7_000, len(body))])
				time.Sleep(time.Millisecond) // a backend of limited speed
			}
			if _, ok := ew.Commit(); !ok {
				t.Fatal("Commit refused")
			}
			for range 2 {
				r := <-done
				if r.err != io.EOF || (!bytes.Equal(r.body, body) && !bytes.Equal(r.body, body[12_345:])) {
					t.Errorf("read %d bytes, ending %v", len(r.body), r.err)
				}
			}
			if _, ok := s.Open(context.Background(), 0); ok {
				t.Error("a released stream opens")
			}
		})
	}
}

// A fill that fails mid-body fails its readers; one whose body comes out
// shorter than announced too.
func TestStreamFails(t *testing.T) {
	for _, z := range []*Zone{newTestZone(t, 16<<20, 0), newDiskZone(t, 1)} {
		for _, end := range []string{"abort", "short"} {
			ew := z.NewEntryWriter(testMeta("/k", 100), z.Mark())
			s := ew.Stream()
			r, _ := s.Open(context.Background(), 0)
			ew.Write(make([]byte, 50))
			if n, err := r.Read(make([]byte, 100)); n != 50 || err != nil {
				t.Errorf("%s: read %d, %v", end, n, err)
			}
			if end == "abort" {
				ew.Abort()
			} else if _, ok := ew.Commit(); ok {
				t.Error("a short body was committed")
			}
			if _, err := r.Read(make([]byte, 100)); !errors.Is(err, ErrStreamFailed) {
				t.Errorf("%s: read after the failure: %v", end, err)
			}
			if !s.Failed() {
				t.Errorf("%s: the stream does not report failing", end)
			}
			r.Close()
		}
	}
}

// A body of unknown length that outgrows the memory tier with no disk tier
// cuts the stream where it stopped storing; a reader gets what it held.
func TestStreamCutWhenTooLarge(t *testing.T) {
	z := newTestZone(t, 16<<20, 100)
	ew := z.NewEntryWriter(testMeta("/k", -1), z.Mark())
	s := ew.Stream()
	if s.Shared() {
		t.Error("a stream that may be cut is shared")
	}
	ew.Write(make([]byte, 60))
	ew.Write(make([]byte, 60))
	if !s.Cut() {
		t.Fatal("not cut")
	}
	got, err := readStream(openStream(t, s, 0))
	if len(got) != 60 || !errors.Is(err, ErrStreamCut) {
		t.Errorf("read %d bytes, ending %v", len(got), err)
	}
	if _, ok := ew.Commit(); ok {
		t.Error("committed")
	}
	// Known to be too large at once: nothing to stream.
	if s := z.NewEntryWriter(testMeta("/large", 101), z.Mark()).Stream(); s != nil {
		t.Error("a stream of a body stored nowhere")
	}
}

// A reader waiting for bytes ends when its context does.
func TestStreamReaderContext(t *testing.T) {
	z := newTestZone(t, 16<<20, 0)
	ew := z.NewEntryWriter(testMeta("/k", 10), z.Mark())
	defer ew.Abort()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := ew.Stream().Open(ctx, 0)
	defer r.Close()
	go cancel()
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("read: %v", err)
	}
}
