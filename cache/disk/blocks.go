package disk

import (
	"cmp"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"sync"
)

// An entry body is checked in blocks, so that a response checks exactly
// what it sends: a range request reads and verifies only the blocks it
// touches, and a full response verifies each block before sending it.
//
// bodyBlockSize is 64 KiB, the smallest size the format allows: a small
// range (a tile of a large image, a header probe) reads at most two blocks,
// so a range's extra read stays under 128 KiB whatever the body size; the
// table costs 4 bytes per block (0.006%), and 64 KiB is also the disk
// writer's buffer, so a block is hashed as it is written. CRC-32C runs at
// several GB/s with SSE 4.2 or ARMv8 CRC, a few microseconds per block.
const bodyBlockSize = 64 << 10

// validBlockSize accepts the block sizes a reader can handle: powers of two
// from 4 KiB to 16 MiB (the writer uses bodyBlockSize).
func validBlockSize(n int64) bool {
	return n >= 4<<10 && n <= 16<<20 && n&(n-1) == 0
}

// blockCount is the number of blocks of a body of size bytes.
func blockCount(size, blockSize int64) int64 { return (size + blockSize - 1) / blockSize }

// fileSize is the size of the file holding h: header, body, block table.
func (h *fileHeader) fileSize() int64 {
	return int64(h.HeaderLen) + h.BodySize + 4*blockCount(h.BodySize, h.BlockSize)
}

// blockHasher computes the block checksums of a body as it is written.
type blockHasher struct {
	table []byte // one little-endian CRC-32C per full block so far
	crc   uint32 // of the current, partial block
	fill  int64  // bytes in the current block
}

func (b *blockHasher) Write(p []byte) {
	for len(p) > 0 {
		n := min(int64(len(p)), bodyBlockSize-b.fill)
		b.crc = crc32.Update(b.crc, castagnoli, p[:n])
		b.fill += n
		p = p[n:]
		if b.fill == bodyBlockSize {
			b.table = binary.LittleEndian.AppendUint32(b.table, b.crc)
			b.crc, b.fill = 0, 0
		}
	}
}

// finish returns the table, with the last, partial block's checksum.
func (b *blockHasher) finish() []byte {
	if b.fill > 0 {
		b.table = binary.LittleEndian.AppendUint32(b.table, b.crc)
		b.crc, b.fill = 0, 0
	}
	return b.table
}

// blockBuffers hold one block each, for readers of the usual block size.
var blockBuffers = sync.Pool{New: func() any { b := make([]byte, bodyBlockSize); return &b }}

// crcTables hold the part of a block table a verifying reader has read:
// a trusted reader (the common hit) needs none, and is the smaller for it.
var crcTables = sync.Pool{New: func() any { return new([tableChunk]uint32) }}

// tableChunk is how many checksums a reader fetches from the table at once:
// one read covers 16 MiB of body.
const tableChunk = 256

// BodyReader reads a disk entry's body, or a byte range of it, and verifies
// every block it reads against the block table before returning any of its
// bytes. A block that does not match removes the entry's file and makes
// Read and WriteTo return ErrCorrupt: nothing of a damaged block is ever
// returned. It implements io.ReadSeekCloser and io.WriterTo.
type BodyReader struct {
	file  File
	f     *os.File
	off   int64 // body offset in the file
	size  int64 // body size
	bs    int64 // block size
	pos   int64
	limit int64 // Read and WriteTo stop here (the end of a range)

	buf      *[]byte // the verified block held, from the pool when bs is the usual size
	bufBlock int64   // index of the block in buf; -1 for none
	bufLen   int64

	crcs     *[tableChunk]uint32 // from crcTables, for a reader that verifies
	crcFirst int64               // block index of crcs[0]
	crcN     int64               // valid entries in crcs

	// of is the store's open file the reader reads (nil: a file of its
	// own). trusted: of's blocks were all verified before, so this reader
	// reads and sends without checking (see Options.VerifyAlways).
	// verifiedTo counts the blocks verified in a row from the first: once
	// it reaches the last, of is marked verified.
	of         *openFile
	trusted    bool
	verifiedTo int64

	err error // sticky
}

// newBodyReader makes a reader of the body of the open entry file f.
func newBodyReader(file File, f *os.File, fh *fileHeader) *BodyReader {
	return &BodyReader{file: file, f: f, off: int64(fh.HeaderLen), size: fh.BodySize, bs: fh.BlockSize,
		limit: fh.BodySize, bufBlock: -1}
}

// Size returns the body size.
func (r *BodyReader) Size() int64 { return r.size }

// Limit makes Read and WriteTo stop at body offset end (a range's end).
func (r *BodyReader) Limit(end int64) { r.limit = min(max(end, 0), r.size) }

// Prepare reads and verifies the block at the current position, so that a
// caller learns of damage there before it sends anything. It returns
// ErrCorrupt (the file has been removed) or an I/O error.
func (r *BodyReader) Prepare() error {
	if r.pos >= r.limit || r.trusted {
		return r.err
	}
	_, err := r.block(r.pos / r.bs)
	return err
}

// block returns block i, verified.
func (r *BodyReader) block(i int64) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if i == r.bufBlock {
		return (*r.buf)[:r.bufLen], nil
	}
	want, err := r.checksum(i)
	if err != nil {
		return nil, r.fail(err)
	}
	if r.buf == nil {
		if r.bs == bodyBlockSize {
			r.buf = blockBuffers.Get().(*[]byte)
		} else {
			b := make([]byte, r.bs)
			r.buf = &b
		}
	}
	n := min(r.bs, r.size-i*r.bs)
	p := (*r.buf)[:n]
	r.bufBlock = -1
	if _, err := r.f.ReadAt(p, r.off+i*r.bs); err != nil {
		return nil, r.fail(err)
	}
	if crc32.Checksum(p, castagnoli) != want {
		return nil, r.fail(ErrCorrupt)
	}
	r.bufBlock, r.bufLen = i, n
	if i == r.verifiedTo {
		r.verifiedTo++
		if r.of != nil && r.verifiedTo == blockCount(r.size, r.bs) {
			r.of.verified.Store(true)
		}
	}
	return p, nil
}

// checksum returns the stored checksum of block i, reading the table a
// chunk at a time.
func (r *BodyReader) checksum(i int64) (uint32, error) {
	if r.crcs == nil {
		r.crcs, r.crcN = crcTables.Get().(*[tableChunk]uint32), 0
	}
	if i < r.crcFirst || i >= r.crcFirst+r.crcN {
		n := min(int64(tableChunk), blockCount(r.size, r.bs)-i)
		var raw [4 * tableChunk]byte
		if _, err := r.f.ReadAt(raw[:4*n], r.off+r.size+4*i); err != nil {
			return 0, err
		}
		for j := range n {
			r.crcs[j] = binary.LittleEndian.Uint32(raw[4*j:])
		}
		r.crcFirst, r.crcN = i, n
	}
	return r.crcs[i-r.crcFirst], nil
}

// fail records the reader's first error. Damage, and a file shorter than
// its header says (truncated in place), remove the file.
func (r *BodyReader) fail(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = ErrCorrupt
	}
	if errors.Is(err, ErrCorrupt) {
		r.file.removeDamaged(r.f, ErrCorrupt) // and drops the open file
	}
	r.err = err
	return err
}

// Read implements io.Reader.
func (r *BodyReader) Read(p []byte) (int, error) {
	if r.pos >= r.limit {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	if r.trusted {
		return r.readTrusted(p)
	}
	b, err := r.block(r.pos / r.bs)
	if err != nil {
		return 0, err
	}
	from := r.pos % r.bs
	to := min(int64(len(b)), r.limit-(r.pos-from))
	n := copy(p, b[from:to])
	r.pos += int64(n)
	return n, nil
}

// readTrusted reads straight from the file into p, unchecked.
func (r *BodyReader) readTrusted(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	p = p[:min(int64(len(p)), r.limit-r.pos)]
	n, err := r.f.ReadAt(p, r.off+r.pos)
	r.pos += int64(n)
	if n < len(p) {
		// Truncated in place since it was verified.
		return n, r.fail(cmp.Or(err, io.ErrUnexpectedEOF))
	}
	return n, nil
}

// Trusted reports whether the reader sends without verifying: its file's
// blocks were all verified by an earlier reader since the store opened it
// (see Options.VerifyAlways). A trusted reader's Read reads the file
// directly, and SendTo sends it with sendfile(2).
func (r *BodyReader) Trusted() bool { return r.trusted }

// Remaining is the number of bytes left to send before the limit.
func (r *BodyReader) Remaining() int64 { return max(r.limit-r.pos, 0) }

// WriteTo implements io.WriterTo: io.Copy sends each verified block
// straight from the reader's buffer, with no copy of its own.
func (r *BodyReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if r.trusted {
		buf := blockBuffers.Get().(*[]byte)
		defer blockBuffers.Put(buf)
		for r.pos < r.limit {
			n, err := r.readTrusted(*buf)
			m, werr := w.Write((*buf)[:n])
			total += int64(m)
			if err != nil {
				return total, err
			}
			if werr != nil {
				return total, werr
			}
		}
		return total, nil
	}
	for r.pos < r.limit {
		b, err := r.block(r.pos / r.bs)
		if err != nil {
			return total, err
		}
		from := r.pos % r.bs
		to := min(int64(len(b)), r.limit-(r.pos-from))
		n, err := w.Write(b[from:to])
		total += int64(n)
		r.pos += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, r.err
}

// Seek implements io.Seeker.
func (r *BodyReader) Seek(offset int64, whence int) (int64, error) {
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

// Close closes the file and returns the block buffer.
func (r *BodyReader) Close() error {
	if r.buf != nil && r.bs == bodyBlockSize {
		blockBuffers.Put(r.buf)
	}
	r.buf, r.bufBlock = nil, -1
	if r.crcs != nil {
		crcTables.Put(r.crcs)
		r.crcs, r.crcN = nil, 0
	}
	if r.of != nil {
		r.of.release()
		r.of = nil
		return nil
	}
	return r.f.Close()
}

// verifyBody checks a whole body, read with its table, against the table.
func verifyBody(body, table []byte, bs int64) bool {
	for i := int64(0); len(body) > 0; i++ {
		n := min(int64(len(body)), bs)
		if crc32.Checksum(body[:n], castagnoli) != binary.LittleEndian.Uint32(table[4*i:]) {
			return false
		}
		body = body[n:]
	}
	return true
}

var (
	_ io.ReadSeekCloser = (*BodyReader)(nil)
	_ io.WriterTo       = (*BodyReader)(nil)
)
