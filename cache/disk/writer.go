package disk

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Writer streams one response into a temporary file of the zone folder.
// Commit makes it visible under its key; Abort throws it away. Memory use is
// one 64 KiB buffer, and the block checksums (4 bytes per 64 KiB of body).
// A Writer is not safe for concurrent use.
type Writer struct {
	d      *Store
	meta   Meta
	hash   [md5.Size]byte
	f      *os.File
	bw     *bufio.Writer
	header []byte
	blocks blockHasher
	n      int64
	err    error // sticky
	done   bool
}

const writeBufferSize = 64 << 10

var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

var errWriterDone = errors.New("cache: disk writer already committed or aborted")

// Create starts storing an entry for m.Key. m.BodySize may be -1 if the
// length is not known yet; otherwise Commit checks that exactly that many
// body bytes were written. Errors (disk full, folder unwritable) are counted
// by reason and logged at most once a minute; the caller just proxies
// without storing.
func (d *Store) Create(m Meta) (*Writer, error) {
	if m.Key == "" {
		return nil, errors.New("cache: empty key")
	}
	if d.opts.MaxSize > 0 && m.BodySize > d.opts.MaxSize {
		return nil, d.writeFailed(reasonTooLarge, fmt.Errorf("body of %d bytes exceeds the zone's max size", m.BodySize))
	}
	m.StoredAt = nanosToTime(timeToNanos(m.StoredAt))
	m.ValidUntil = nanosToTime(timeToNanos(m.ValidUntil))
	header, err := encodeHeader(&m, 0)
	if err != nil {
		return nil, d.writeFailed(reasonTooLarge, err)
	}
	f, err := os.CreateTemp(d.dir, tempPrefix+processToken+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// The zone folder itself was removed: recreate it.
		if err = os.MkdirAll(d.dir, 0o755); err == nil {
			f, err = os.CreateTemp(d.dir, tempPrefix+processToken+"*")
		}
	}
	if err != nil {
		return nil, d.writeFailed(classifyWriteErr(err), err)
	}
	w := &Writer{d: d, meta: m, hash: KeyHash(m.Key), f: f, header: header}
	w.bw = writeBuffers.Get().(*bufio.Writer)
	w.bw.Reset(f)
	if _, err := w.bw.Write(header); err != nil {
		w.fail(classifyWriteErr(err), err)
		w.Abort()
		return nil, w.err
	}
	return w, nil
}

// Write appends body bytes, updating the block checksums.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errWriterDone
	}
	if w.meta.BodySize >= 0 && w.n+int64(len(p)) > w.meta.BodySize {
		return 0, w.fail(reasonBodySize, fmt.Errorf("body longer than the announced %d bytes", w.meta.BodySize))
	}
	if max := w.d.opts.MaxSize; max > 0 && w.n+int64(len(p)) > max {
		return 0, w.fail(reasonTooLarge, fmt.Errorf("body exceeds the zone's max size of %d bytes", max))
	}
	n, err := w.bw.Write(p)
	w.blocks.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, w.fail(classifyWriteErr(err), err)
	}
	return n, nil
}

// Flush writes what the buffer holds to the file, for its readers
// (OpenReader).
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errWriterDone
	}
	if err := w.bw.Flush(); err != nil {
		return w.fail(classifyWriteErr(err), err)
	}
	return nil
}

// OpenReader opens the file being written for reading, with the offset of
// the body in it: the reader sees what Flush has written. The file stays
// readable after Commit renames it and after Abort removes it.
func (w *Writer) OpenReader() (*os.File, int64, error) {
	f, err := os.Open(w.f.Name())
	if err != nil {
		return nil, 0, err
	}
	return f, int64(len(w.header)), nil
}

// Commit completes the file and renames it over the entry's path, so that
// readers see the old entry or the new one, never a mix. It fails if the
// body length differs from Meta.BodySize (when that was known). The writer
// is finished either way.
func (w *Writer) Commit() (*Entry, error) {
	if w.done {
		return nil, errWriterDone
	}
	if w.err != nil {
		w.Abort()
		return nil, w.err
	}
	defer w.Abort() // removes the temporary file if anything below fails
	if w.meta.BodySize >= 0 && w.n != w.meta.BodySize {
		return nil, w.fail(reasonBodySize, fmt.Errorf("body of %d bytes, %d announced", w.n, w.meta.BodySize))
	}
	w.meta.BodySize = w.n
	table := w.blocks.finish()
	if _, err := w.bw.Write(table); err != nil {
		return nil, w.fail(classifyWriteErr(err), err)
	}
	if err := w.bw.Flush(); err != nil {
		return nil, w.fail(classifyWriteErr(err), err)
	}
	patchHeader(w.header, w.n)
	if _, err := w.f.WriteAt(w.header, 0); err != nil {
		return nil, w.fail(classifyWriteErr(err), err)
	}
	if err := w.f.Close(); err != nil {
		return nil, w.fail(classifyWriteErr(err), err)
	}
	d := w.d
	final := d.path(w.hash)
	d.mu.Lock()
	err := os.Rename(w.f.Name(), final)
	if errors.Is(err, fs.ErrNotExist) {
		// A level folder is missing (new zone, or emptied by hand).
		if err = os.MkdirAll(filepath.Dir(final), 0o755); err == nil {
			err = os.Rename(w.f.Name(), final)
		}
	}
	if err == nil {
		d.insertLocked(w.hash, int64(len(w.header))+w.n+int64(len(table)), d.now().UnixNano())
	}
	d.mu.Unlock()
	if err != nil {
		return nil, w.fail(classifyWriteErr(err), err)
	}
	d.tags.Add(w.hash, w.meta.Tags)
	w.done = true
	if d.opts.MaxSize > 0 && d.bytes.Load() > d.opts.MaxSize {
		d.kick()
	}
	return &Entry{Meta: w.meta, File: File{d: d, path: final, key: w.meta.Key, offset: int64(len(w.header)), crc: binary.LittleEndian.Uint32(w.header[12:])}}, nil
}

// Abort discards the entry being written. It is safe to call more than
// once and after Commit.
func (w *Writer) Abort() {
	if w.bw != nil {
		w.bw.Reset(nil)
		writeBuffers.Put(w.bw)
		w.bw = nil
	}
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.d.log("remove-temp", "disk cache: removing a temporary file", err)
	}
}

// fail records the writer's first error, counting and logging it.
func (w *Writer) fail(reason writeReason, err error) error {
	if w.err == nil {
		w.err = w.d.writeFailed(reason, err)
	}
	return w.err
}

func (d *Store) writeFailed(reason writeReason, err error) error {
	d.werrs[reason].Add(1)
	name := writeReasonNames[reason]
	d.log("write:"+name, "disk cache: cannot store an entry ("+name+")", err)
	return fmt.Errorf("disk cache: %w", err)
}

func classifyWriteErr(err error) writeReason {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return reasonNoSpace
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return reasonPermission
	}
	return reasonIO
}
