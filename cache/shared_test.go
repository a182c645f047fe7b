package cache

import "testing"

// Kept: a stored entry stands until its key is purged or invalidated; a
// purge of another key leaves it standing.
func TestKept(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	commit := func(key string) (*Entry, Mark) {
		mark := z.Mark()
		w := z.NewEntryWriter(testMeta(key, 1), mark)
		w.Write([]byte("x"))
		e, ok := w.Commit()
		if !ok {
			t.Fatal("not stored")
		}
		return e, mark
	}
	a, markA := commit("/a")
	b, markB := commit("/b")
	if !z.Kept(a, markA) || !z.Kept(b, markB) {
		t.Fatal("not kept right after the store")
	}
	z.Purge("/b")
	if !z.Kept(a, markA) {
		t.Error("a purge of /b voided /a")
	}
	if z.Kept(b, markB) {
		t.Error("/b kept after its purge")
	}
	z.Invalidate("/a")
	if z.Kept(a, markA) {
		t.Error("/a kept after its invalidation")
	}
	c, markC := commit("/c")
	if _, err := z.PurgePrefix("/"); err != nil {
		t.Fatal(err)
	}
	if z.Kept(c, markC) {
		t.Error("/c kept after a purge by prefix")
	}
}
