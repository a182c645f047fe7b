package cache

import (
	"errors"
	"io"
	"io/fs"
	"os"
)

// openChecked opens the file of a disk entry and checks that it is still
// the version e was read from: an overwrite between Get and the body read
// would otherwise pair e's header with another body. A replaced or removed
// file is ErrNotFound; a damaged one is removed and is ErrNotFound too.
func (d *DiskStore) openChecked(e *Entry) (*os.File, *fileHeader, error) {
	if e.File == "" {
		return nil, nil, errors.New("cache: not a disk entry")
	}
	f, err := os.Open(e.File)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, ErrNotFound
		}
		return nil, nil, err
	}
	fh, fi, err := readHeader(f)
	if err != nil {
		f.Close()
		if isReadErr(err) {
			return nil, nil, err
		}
		d.removeDamaged(keyHash(e.Key), e.File, fi, err)
		return nil, nil, ErrNotFound
	}
	if fh.Key != e.Key || fh.BodySize != e.BodySize || int64(fh.HeaderLen) != e.BodyOffset ||
		fh.Status != e.Status || !fh.StoredAt.Equal(e.StoredAt) || !fh.ValidUntil.Equal(e.ValidUntil) {
		f.Close()
		return nil, nil, ErrNotFound
	}
	return f, fh, nil
}

// LoadBody reads the whole body of a disk entry and verifies its block
// checksums; it is meant for promoting small entries to the memory tier. A
// body that does not match is removed and ErrCorrupt returned; an entry
// replaced or removed since Get is ErrNotFound.
func (d *DiskStore) LoadBody(e *Entry) ([]byte, error) {
	f, fh, err := d.openChecked(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The body and its table in one read. The sizes were checked against
	// the file's size, so a hostile header cannot make this allocate more
	// than the file holds.
	size := fh.fileSize() - int64(fh.HeaderLen)
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(fh.HeaderLen)); err != nil {
		if err == io.EOF {
			// Truncated in place since the header was read.
			d.removeDamagedFile(f, e, io.ErrUnexpectedEOF)
			return nil, ErrCorrupt
		}
		return nil, err
	}
	body := buf[:fh.BodySize:fh.BodySize]
	if !verifyBody(body, buf[fh.BodySize:], fh.BlockSize) {
		d.removeDamagedFile(f, e, ErrCorrupt)
		return nil, ErrCorrupt
	}
	return body, nil
}

func (d *DiskStore) removeDamagedFile(f *os.File, e *Entry, cause error) {
	fi, err := f.Stat()
	if err != nil {
		return
	}
	d.removeDamaged(keyHash(e.Key), e.File, fi, cause)
}

// OpenBody opens the body of a disk entry for reading, whole or in part
// (Seek, Limit). The reader verifies every block it reads (BodyReader).
// Prefer it to Entry.OpenBody for disk entries: it also checks that the
// file is still the version e was read from (ErrNotFound otherwise).
func (d *DiskStore) OpenBody(e *Entry) (*BodyReader, error) {
	f, fh, err := d.openChecked(e)
	if err != nil {
		return nil, err
	}
	return newBodyReader(d, e, f, fh), nil
}

// OpenRange opens a disk entry's body for a response that sends the bytes
// [start, end) of it. The first block it sends is read and verified before
// OpenRange returns, so that damage there is found before the response is
// started: the file is removed and the error is ErrCorrupt; an entry
// replaced or removed since its look-up is ErrNotFound.
func (e *Entry) OpenRange(start, end int64) (*BodyReader, error) {
	if e.disk == nil {
		return nil, errors.New("cache: not a disk entry")
	}
	r, err := e.disk.OpenBody(e)
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
