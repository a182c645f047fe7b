package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
)

// Stream is the body of an entry while it is being written, readable as it
// grows: the fill reads the backend at the backend's speed into the entry
// (nginx's temp file), and the fill's own client, and with Shared the
// requests waiting on the fill, read it at their own pace (Varnish's
// streaming miss). The bytes come from the entry's disk temp file when it
// has one, else from its memory buffer, so a stream holds no memory of its
// own beyond what the entry being written holds.
type Stream struct {
	entry  *Entry // the entry as it will be stored, without its body
	shared bool

	mu    sync.Mutex
	grown sync.Cond
	mem   []byte   // memory source: the body so far
	file  *os.File // disk source: the temp file, opened for reading
	base  int64    // where the body starts in file
	n     int64    // bytes readable
	state streamState
	refs  int // the writer and the open readers; the file is closed at 0
}

type streamState uint8

const (
	streamOpen     streamState = iota
	streamComplete             // the whole body is there
	streamCut                  // the entry stopped storing at n (too large, a disk error): the rest is not in the stream
	streamFailed               // the fill failed (the backend broke, a short body): the body will never be whole
)

var (
	// ErrStreamCut: the entry stopped storing the body (it outgrew the
	// memory tier, or the disk failed); the stream ends where it stopped.
	ErrStreamCut = errors.New("cache: the entry being written stopped storing the body")
	// ErrStreamFailed: the fill failed mid-body; the body is incomplete.
	ErrStreamFailed = errors.New("cache: the fill failed mid-body")
)

// Stream makes the entry's body readable while it is written, and returns
// it; nil when the entry stores the body nowhere (too large for memory with
// no disk tier), so there is nothing to read. It is called before the first
// Write. Shared reports whether the stream may be given to other requests:
// a body of unknown length that only memory holds may still outgrow it, and
// then never be stored, so only the fill's own client reads it.
func (ew *EntryWriter) Stream() *Stream {
	if ew.stream != nil || ew.Abandoned() {
		return ew.stream
	}
	s := &Stream{entry: &Entry{Meta: ew.meta}, refs: 1}
	s.grown.L = &s.mu
	s.entry.Header = make(http.Header, len(ew.meta.Header)+1)
	for k, v := range ew.meta.Header {
		s.entry.Header[k] = append([]string(nil), v...)
	}
	if ew.meta.BodySize >= 0 {
		s.entry.Header["Content-Length"] = []string{strconv.FormatInt(ew.meta.BodySize, 10)}
	}
	if ew.file != nil {
		f, base, err := ew.file.OpenReader()
		if err == nil {
			s.file, s.base, s.shared = f, base, true
		} else {
			ew.file.Abort()
			ew.file = nil
			ew.zone.Stats.CountSkip(SkipDisk)
		}
	}
	if s.file == nil {
		if !ew.inMemory {
			return nil
		}
		s.shared = ew.meta.BodySize >= 0
	}
	ew.stream = s
	return s
}

// grow publishes the body written so far (body: the memory buffer, for a
// memory source).
func (s *Stream) grow(n int64, body []byte) {
	s.mu.Lock()
	if s.state == streamOpen {
		s.n = n
		if s.file == nil {
			s.mem = body
		}
		s.grown.Broadcast()
	}
	s.mu.Unlock()
}

// end settles the stream, once.
func (s *Stream) end(state streamState) {
	s.mu.Lock()
	if s.state == streamOpen {
		s.state = state
		s.grown.Broadcast()
	}
	s.mu.Unlock()
}

// Entry is the entry as it will be stored (its Content-Length when the
// length is known), without its body: what a request answered from the
// stream is told.
func (s *Stream) Entry() *Entry { return s.entry }

// Shared reports whether requests other than the fill's own may read the
// stream.
func (s *Stream) Shared() bool { return s.shared }

// Cut reports whether the entry stopped storing the body: what the stream
// holds ends there.
func (s *Stream) Cut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == streamCut
}

// Failed reports whether the body will never be whole.
func (s *Stream) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == streamFailed || s.state == streamCut
}

// Matches reports whether the entry answers a request with this header: the
// same variant, when the response varies (as Zone.Lookup decides).
func (s *Stream) Matches(req http.Header) bool {
	return len(s.entry.VaryNames) == 0 || VariantOf(s.entry.VaryNames, req) == s.entry.Variant
}

// release drops one reference; the last closes the file.
func (s *Stream) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last && s.file != nil {
		s.file.Close()
	}
}

// StreamReader reads a Stream from an offset on, waiting for the bytes to
// be written. It is not safe for concurrent use.
type StreamReader struct {
	s    *Stream
	ctx  context.Context
	stop func() bool
	off  int64
}

// Open returns a reader of the stream from off on; ctx ends its waits. It
// fails (false) once the stream is released by all: the entry is then
// stored, or not, and the zone has it.
func (s *Stream) Open(ctx context.Context, off int64) (*StreamReader, bool) {
	s.mu.Lock()
	if s.refs == 0 {
		s.mu.Unlock()
		return nil, false
	}
	s.refs++
	s.mu.Unlock()
	r := &StreamReader{s: s, ctx: ctx, off: off}
	r.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.grown.Broadcast()
		s.mu.Unlock()
	})
	return r, true
}

// Ready reports whether Read would return at once.
func (r *StreamReader) Ready() bool {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.off < s.n || s.state != streamOpen || r.ctx.Err() != nil
}

// Read reads the next bytes, waiting until some are written. At the end of a
// complete body it returns io.EOF; where the entry stopped storing,
// ErrStreamCut; when the fill failed, ErrStreamFailed (with no more bytes:
// what is past the failure is never given out).
func (r *StreamReader) Read(p []byte) (int, error) {
	s := r.s
	s.mu.Lock()
	for r.off >= s.n && s.state == streamOpen && r.ctx.Err() == nil {
		s.grown.Wait()
	}
	n, mem, state := s.n, s.mem, s.state
	s.mu.Unlock()
	switch {
	case state == streamFailed:
		return 0, ErrStreamFailed
	case r.off < n:
	case state == streamComplete:
		return 0, io.EOF
	case state == streamCut:
		return 0, ErrStreamCut
	default:
		return 0, r.ctx.Err()
	}
	p = p[:min(int64(len(p)), n-r.off)]
	var k int
	if mem != nil {
		k = copy(p, mem[r.off:n])
	} else {
		var err error
		if k, err = s.file.ReadAt(p, s.base+r.off); err != nil && k < len(p) {
			return k, err
		}
	}
	r.off += int64(k)
	return k, nil
}

// Offset is the body offset of the next byte Read returns.
func (r *StreamReader) Offset() int64 { return r.off }

// Close releases the reader.
func (r *StreamReader) Close() {
	r.stop()
	r.s.release()
}
