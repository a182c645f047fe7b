package cache

import (
	"errors"
	"hash/crc32"
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
	if fh.BodySize == 0 && fh.BodyCRC != 0 {
		f.Close()
		d.removeDamaged(keyHash(e.Key), e.File, fi, ErrCorrupt)
		return nil, nil, ErrCorrupt
	}
	return f, fh, nil
}

// LoadBody reads the whole body of a disk entry and verifies its checksum;
// it is meant for promoting small entries to the memory tier. A body that
// does not match is removed and ErrCorrupt returned; an entry replaced or
// removed since Get is ErrNotFound.
func (d *DiskStore) LoadBody(e *Entry) ([]byte, error) {
	f, fh, err := d.openChecked(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The size was checked against the file's size, so a hostile header
	// cannot make this allocate more than the file holds.
	body := make([]byte, fh.BodySize)
	if _, err := f.ReadAt(body, int64(fh.HeaderLen)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if crc32.Checksum(body, castagnoli) != fh.BodyCRC {
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

// OpenBody opens the body of a disk entry for streaming. The returned reader
// checks the body checksum as it goes: when the body has been read in order
// to its end and does not match, the last Read returns ErrCorrupt instead of
// the final bytes (so a response with a Content-Length stays short and the
// client sees the failure), and the file is removed. Prefer it to
// Entry.OpenBody for disk entries: it also checks that the file is still
// the version e was read from (ErrNotFound otherwise).
func (d *DiskStore) OpenBody(e *Entry) (*VerifyingReader, error) {
	f, fh, err := d.openChecked(e)
	if err != nil {
		return nil, err
	}
	return &VerifyingReader{d: d, e: e, f: f, off: int64(fh.HeaderLen), size: fh.BodySize, want: fh.BodyCRC}, nil
}

// VerifyingReader reads a disk entry's body and verifies its CRC-32C once
// every byte has been read in order. It implements io.ReadSeekCloser (so it
// suits http.ServeContent); after a Seek the checksum covers only the bytes
// read contiguously from the start, and Verified tells whether the whole
// body was checked.
type VerifyingReader struct {
	d      *DiskStore
	e      *Entry
	f      *os.File
	off    int64 // body offset in the file
	size   int64
	want   uint32
	pos    int64
	hashed int64 // bytes [0, hashed) went into crc
	crc    uint32
	err    error
}

// Read implements io.Reader.
func (r *VerifyingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.f.ReadAt(p, r.off+r.pos)
	if err == io.EOF {
		// The file was shorter than its header says: truncated in place.
		r.err = ErrCorrupt
		r.d.removeDamagedFile(r.f, r.e, io.ErrUnexpectedEOF)
		return 0, r.err
	}
	if r.pos == r.hashed {
		r.crc = crc32.Update(r.crc, castagnoli, p[:n])
		r.hashed += int64(n)
		if r.hashed == r.size && r.crc != r.want {
			r.err = ErrCorrupt
			r.d.removeDamagedFile(r.f, r.e, ErrCorrupt)
			return 0, r.err // withhold the last bytes
		}
	}
	r.pos += int64(n)
	return n, err
}

// Seek implements io.Seeker.
func (r *VerifyingReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("cache: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("cache: negative position")
	}
	r.pos = offset
	return offset, nil
}

// Size returns the body size.
func (r *VerifyingReader) Size() int64 { return r.size }

// Verified reports whether the whole body has been read and matched its
// checksum.
func (r *VerifyingReader) Verified() bool {
	return r.err == nil && r.hashed == r.size && r.crc == r.want
}

// Close closes the file.
func (r *VerifyingReader) Close() error { return r.f.Close() }

var _ io.ReadSeekCloser = (*VerifyingReader)(nil)
