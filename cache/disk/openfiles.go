package disk

import (
	"crypto/md5"
	"io/fs"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"
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

// DefaultOpenFiles is the open-file cache's size when Options.OpenFiles is
// 0: a few hundred hot files cost a few hundred descriptors and their
// headers' heap (a few KiB each, counted: see openFileBytes).
const DefaultOpenFiles = 512

// openFile is an entry file kept open with its parsed header. refs counts
// the cache's own reference (until it drops the file) and one per reader;
// the file is closed when the last is released, so that a reader keeps
// reading the version it opened across an overwrite or purge, as with a
// file of its own.
type openFile struct {
	f     *os.File
	fd    int    // f's descriptor, for sendfile
	path  string // where it was found
	fh    *fileHeader
	fi    fs.FileInfo
	bytes int64 // the heap it holds (openFileBytes), counted while cached
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
	if d.openMax.Load() < 0 {
		return nil
	}
	// Counted before taking mu: the header is this file's own until it
	// is in the cache.
	size := openFileBytes(path, fh)
	d.mu.Lock()
	defer d.mu.Unlock()
	limit := int(d.openMax.Load())
	if limit < 0 || d.closedFiles || d.idx.get(h) == nil {
		return nil
	}
	// Renames and unlinks happen under mu: the file at path now is the
	// one the cache will serve until the next of them drops it.
	if cur, err := os.Stat(path); err != nil || !os.SameFile(cur, fi) {
		return nil
	}
	d.forgetOpenLocked(h)
	d.trimOpenLocked(limit - 1)
	of := &openFile{f: f, fd: int(f.Fd()), path: path, fh: fh, fi: fi, bytes: size}
	of.entry = fh.Entry
	of.entry.File = File{d: d, path: path, key: fh.Key, offset: int64(fh.HeaderLen), crc: fh.HeaderCRC, of: of}
	of.refs.Store(1)
	d.open[h] = of
	d.openBytes.Add(size)
	d.openCount.Store(int64(len(d.open)))
	return of
}

// trimOpenLocked drops open files until at most n are left.
func (d *Store) trimOpenLocked(n int) {
	for h := range d.open {
		if len(d.open) <= n {
			break
		}
		// Full: drop one at random (map order), as cheap as it gets; the
		// hot files come back on their next hit.
		d.dropOpenLocked(h)
	}
}

// dropOpenLocked removes h's open file, which is in the cache, from it.
func (d *Store) dropOpenLocked(h [md5.Size]byte) {
	of := d.open[h]
	delete(d.open, h)
	d.openBytes.Add(-of.bytes)
	d.openCount.Store(int64(len(d.open)))
	of.drop()
}

// SetOpenFiles changes Options.OpenFiles of a store in use (a config
// reload keeps the store): a smaller cache drops files at once, a
// negative size all of them.
func (d *Store) SetOpenFiles(n int) {
	if n == 0 {
		n = DefaultOpenFiles
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.openMax.Store(int64(n))
	d.trimOpenLocked(max(n, 0))
}

// OpenFiles reports how many entry files the open-file cache holds and
// the heap they take (their parsed headers; counted in the memory limit).
func (d *Store) OpenFiles() (files, bytes int64) {
	return d.openCount.Load(), d.openBytes.Load()
}

// forgetOpenLocked drops the open file of h, if any.
func (d *Store) forgetOpenLocked(h [md5.Size]byte) {
	if d.open[h] != nil {
		d.dropOpenLocked(h)
	}
}

// forgetOpen drops of from the cache if it is still there (found damaged).
func (d *Store) forgetOpen(h [md5.Size]byte, of *openFile) {
	d.mu.Lock()
	if d.open[h] == of {
		d.dropOpenLocked(h)
	}
	d.mu.Unlock()
}

// closeOpenLocked drops every open file (the index was reset, or the
// store closed).
func (d *Store) closeOpenLocked() {
	d.trimOpenLocked(0)
}

// The heap an open file holds, as the allocator rounds it. The parts
// that no Go type of ours describes were measured on linux/amd64 (see
// TestOpenFileBytes, which checks the whole against the heap):
const (
	// osFileBytes: an *os.File and the file struct it points to (poll.FD,
	// name, flags), the name shared with the path.
	osFileBytes = 8 + 112
	// fileInfoBytes: os.Stat's *fileStat, with its syscall.Stat_t.
	fileInfoBytes = 208
	// openSlotBytes: the open map's slot (the MD5 and a pointer, a
	// control byte), at the average of a swiss table's fill range, as
	// the index counts its own.
	openSlotBytes = (md5.Size + 8 + 1) * 8 / 7 * 3 / 2
	// memoEntryBytes and memoAgeBytes: what the zone keeps in Entry.Memo
	// once it has looked the file up, its entry (this Entry, a body slice
	// and a pointer more) and that entry's Age string record.
	memoEntryBytes = int64(unsafe.Sizeof(Entry{})) + 24 + 8
	memoAgeBytes   = 24
)

// openFileBytes estimates the heap held by an open file of path read as
// fh: the records, the path and every string and slice the header decode
// allocated.
func openFileBytes(path string, fh *fileHeader) int64 {
	n := allocBytes(int64(unsafe.Sizeof(openFile{}))) + allocBytes(int64(unsafe.Sizeof(fileHeader{}))) +
		osFileBytes + fileInfoBytes + openSlotBytes + allocBytes(memoEntryBytes) + allocBytes(memoAgeBytes) +
		allocBytes(int64(len(path)))
	n += stringBytes(fh.Key) + stringBytes(fh.Variant) + stringBytes(fh.Date)
	if fh.Header != nil {
		n += headerMapBytes(len(fh.Header))
		for name, vals := range fh.Header {
			n += stringBytes(name) + allocBytes(int64(len(vals))*16)
			for _, v := range vals {
				n += stringBytes(v)
			}
		}
	}
	n += allocBytes(int64(len(fh.Tags)) * 16)
	for _, t := range fh.Tags {
		n += stringBytes(t)
	}
	return n
}

// headerMapBytes is what an http.Header of n names takes (Go's swiss
// tables): the map's 48 bytes and groups of 8 slots, each slot a name and
// a slice header, behind a control word; up to 8 names one group, beyond
// that a table whose slots are a power of two, at most 7/8 full.
func headerMapBytes(n int) int64 {
	const group = 8 + 8*(16+24)
	if n <= 8 {
		return 48 + allocBytes(group)
	}
	slots := int64(8)
	for slots*7/8 < int64(n) {
		slots *= 2
	}
	// The directory and the table's record.
	return 48 + 8 + 48 + allocBytes(slots/8*group)
}

// stringBytes is what a decoded string of s's length took: strings under
// 16 bytes share the tiny allocator's blocks.
func stringBytes(s string) int64 {
	if len(s) < 16 {
		return int64(len(s))
	}
	return allocBytes(int64(len(s)))
}

// sizeClasses are the Go allocator's object sizes (runtime's
// sizeclasses.go); larger objects take whole 8 KiB pages.
var sizeClasses = [...]int64{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
	2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// allocBytes is what an allocation of n bytes takes.
func allocBytes(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if i, _ := slices.BinarySearch(sizeClasses[:], n); i < len(sizeClasses) {
		return sizeClasses[i]
	}
	return (n + 8191) &^ 8191
}
