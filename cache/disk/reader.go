package disk

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
)

// Entry is an entry as its file holds it: the response's Meta, and where
// its body is. One from Store.Get is read-only: while the store keeps its
// file open, every hit of the file shares it.
type Entry struct {
	Meta
	File File
}

// Memo is a place for what the store's user makes of the entry (the zone's
// own entry), kept with the open file for its later hits to share, as the
// parsed header is; nil when the store did not keep the file open. What is
// stored there must stay valid for this version of the file: it goes when
// the file does.
func (e *Entry) Memo() *atomic.Value {
	if e.File.of == nil {
		return nil
	}
	return &e.File.of.memo
}

// File is where an entry's body is: the entry file, and the checksum of
// the header it was read with, which names that version of the file. The
// zero File is no file.
type File struct {
	d      *Store
	path   string
	key    string
	offset int64     // where the body starts
	crc    uint32    // the header's checksum
	of     *openFile // the file kept open by the store, if it was (openfiles.go)
}

// openChecked opens the entry file and checks that it is still the version
// f was read from: an overwrite between Get and the body read would
// otherwise pair the entry's header with another body. A replaced or
// removed file is ErrNotFound; a damaged one is removed and is ErrNotFound
// too.
func (f File) openChecked() (*os.File, *fileHeader, error) {
	if f.d == nil {
		return nil, nil, errors.New("disk: no entry file")
	}
	file, err := os.Open(f.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, ErrNotFound
		}
		return nil, nil, err
	}
	fh, fi, err := readHeader(file)
	if err != nil {
		file.Close()
		if isReadErr(err) {
			return nil, nil, err
		}
		f.d.removeDamaged(KeyHash(f.key), f.path, fi, err)
		return nil, nil, ErrNotFound
	}
	if fh.HeaderCRC != f.crc || fh.Key != f.key || int64(fh.HeaderLen) != f.offset {
		file.Close()
		return nil, nil, ErrNotFound
	}
	return file, fh, nil
}

// Load reads the whole body and verifies its block checksums; it is meant
// for promoting small entries to the memory tier. A body that does not
// match is removed and ErrCorrupt returned; a file replaced or removed
// since it was read is ErrNotFound.
func (f File) Load() ([]byte, error) {
	if f.of != nil && f.of.acquire() {
		defer f.of.release()
		return f.load(f.of.f, f.of.fh)
	}
	file, fh, err := f.openChecked()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return f.load(file, fh)
}

// load is Load's read of the open file.
func (f File) load(file *os.File, fh *fileHeader) ([]byte, error) {
	// The body and its table in one read. The sizes were checked against
	// the file's size, so a hostile header cannot make this allocate more
	// than the file holds.
	size := fh.fileSize() - int64(fh.HeaderLen)
	buf := make([]byte, size)
	if _, err := file.ReadAt(buf, int64(fh.HeaderLen)); err != nil {
		if err == io.EOF {
			// Truncated in place since the header was read.
			f.removeDamaged(file, io.ErrUnexpectedEOF)
			return nil, ErrCorrupt
		}
		return nil, err
	}
	body := buf[:fh.BodySize:fh.BodySize]
	if !verifyBody(body, buf[fh.BodySize:], fh.BlockSize) {
		f.removeDamaged(file, ErrCorrupt)
		return nil, ErrCorrupt
	}
	return body, nil
}

// removeDamaged removes the entry file, open as file, if it is still there.
func (f File) removeDamaged(file *os.File, cause error) {
	if f.of != nil {
		f.d.forgetOpen(KeyHash(f.key), f.of)
	}
	fi, err := file.Stat()
	if err != nil {
		return
	}
	f.d.removeDamaged(KeyHash(f.key), f.path, fi, cause)
}

// Open opens the body for reading, whole or in part (Seek, Limit). The
// reader verifies every block it reads (BodyReader). On Linux an open file
// stays readable after a concurrent overwrite (rename) or purge (unlink),
// so a reader gets the old or the new body, never a mix.
func (f File) Open() (*BodyReader, error) {
	if f.of != nil && f.of.acquire() {
		// The file the entry was read from, still open: no open, no
		// header to read again.
		r := newBodyReader(f, f.of.f, f.of.fh)
		r.of = f.of
		r.trusted = f.of.verified.Load() && !f.d.verifyAlways.Load()
		return r, nil
	}
	file, fh, err := f.openChecked()
	if err != nil {
		return nil, err
	}
	return newBodyReader(f, file, fh), nil
}

// IsZero reports whether f is no file.
func (f File) IsZero() bool { return f.d == nil }

// Path is the entry file's path.
func (f File) Path() string { return f.path }

// OpenRange opens the body for a response that sends the bytes [start,
// end) of it. The first block it sends is read and verified before
// OpenRange returns, so that damage there is found before the response is
// started: the file is removed and the error is ErrCorrupt; an entry
// replaced or removed since its look-up is ErrNotFound.
func (f File) OpenRange(start, end int64) (*BodyReader, error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	r.Seek(start, io.SeekStart)
	r.Limit(end)
	if err := r.Prepare(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
