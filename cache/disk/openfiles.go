package disk

import (
	"crypto/md5"
	"io/fs"
	"os"
	"sync/atomic"
)

// The open-file cache keeps the entry files of recent hits open, with their
// parsed headers, as nginx's open_file_cache does: a hit then costs no
// open, no header read and no parse, only the body's reads (or a
// sendfile, once verified). It is exact for the zone's own changes: every
// rename and unlink of an entry file happens under the store's mu, and
// each one drops the key's open file there (dropLocked, insertLocked, the
// index resets of Clear and flushed). A file changed behind the store's
// back (an operator's rm of one file) is served from the open copy until
// it leaves the cache, as nginx does; a flush of the folder is seen
// (watchFlush) and drops them all.

// defaultOpenFiles is the open-file cache's size when Options.OpenFiles is
// 0: a few hundred hot files cost a few hundred descriptors and their
// headers' heap.
const defaultOpenFiles = 512

// openFile is an entry file kept open with its parsed header. refs counts
// the cache's own reference (until it drops the file) and one per reader;
// the file is closed when the last is released, so that a reader keeps
// reading the version it opened across an overwrite or purge, as with a
// file of its own.
type openFile struct {
	f    *os.File
	fd   int    // f's descriptor, for sendfile
	path string // where it was found
	fh   *fileHeader
	fi   fs.FileInfo
	// entry is fh's entry reading through this open file: what Get
	// returns for every hit of it. memo is Entry.Memo's.
	entry Entry
	memo  atomic.Value
	refs  atomic.Int32
	// dropped: the cache let go of it (the entry was overwritten,
	// removed or evicted from the cache): no new reader takes it, as a
	// reopen of the path would not find this version either.
	dropped atomic.Bool
	// verified: every block of the body was read and matched its
	// checksum since this file was opened; later readers may send it
	// without reading it (zero copy) unless the store verifies always.
	verified atomic.Bool
}

// acquire takes a reference for a reader; false if the cache dropped the
// file.
func (o *openFile) acquire() bool {
	if o.dropped.Load() {
		return false
	}
	for {
		n := o.refs.Load()
		if n <= 0 {
			return false
		}
		if o.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// drop is the cache's release.
func (o *openFile) drop() {
	o.dropped.Store(true)
	o.release()
}

// release gives a reference back, closing the file with the last one.
func (o *openFile) release() {
	if o.refs.Add(-1) == 0 {
		o.f.Close()
	}
}

// cachedLocked returns the entry of key from the open-file cache, touched
// in the index, or nil.
func (d *Store) cachedLocked(h [md5.Size]byte, key string, now int64) *Entry {
	of := d.open[h]
	if of == nil || of.fh.Key != key {
		return nil
	}
	r := d.idx.get(h)
	if r == nil {
		return nil // not indexed: dropLocked has dropped it already
	}
	d.idx.touch(r, now)
	return &of.entry
}

// keepOpen adds the file f, read as fh and fi and found at path, to the
// cache, and returns the cache's record of it; nil (f to be closed by the
// caller) when the cache is off or the file is no longer at path.
func (d *Store) keepOpen(h [md5.Size]byte, path string, f *os.File, fh *fileHeader, fi fs.FileInfo) *openFile {
	if d.opts.OpenFiles < 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closedFiles || d.idx.get(h) == nil {
		return nil
	}
	// Renames and unlinks happen under mu: the file at path now is the
	// one the cache will serve until the next of them drops it.
	if cur, err := os.Stat(path); err != nil || !os.SameFile(cur, fi) {
		return nil
	}
	if old := d.open[h]; old != nil {
		delete(d.open, h)
		old.drop()
	}
	for k, of := range d.open {
		if len(d.open) < d.opts.OpenFiles {
			break
		}
		// Full: drop one at random (map order), as cheap as it gets; the
		// hot files come back on their next hit.
		delete(d.open, k)
		of.drop()
	}
	of := &openFile{f: f, fd: int(f.Fd()), path: path, fh: fh, fi: fi}
	of.entry = fh.Entry
	of.entry.File = File{d: d, path: path, key: fh.Key, offset: int64(fh.HeaderLen), crc: fh.HeaderCRC, of: of}
	of.refs.Store(1)
	d.open[h] = of
	return of
}

// forgetOpenLocked drops the open file of h, if any.
func (d *Store) forgetOpenLocked(h [md5.Size]byte) {
	if of := d.open[h]; of != nil {
		delete(d.open, h)
		of.drop()
	}
}

// forgetOpen drops of from the cache if it is still there (found damaged).
func (d *Store) forgetOpen(h [md5.Size]byte, of *openFile) {
	d.mu.Lock()
	if d.open[h] == of {
		delete(d.open, h)
		of.drop()
	}
	d.mu.Unlock()
}

// closeOpenLocked drops every open file (the index was reset, or the
// store closed).
func (d *Store) closeOpenLocked() {
	for h, of := range d.open {
		delete(d.open, h)
		of.drop()
	}
}
