package disk

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// SendTo sends at most n bytes of the rest of a trusted reader's body (up
// to its limit) to the socket dst with sendfile(2), from the file's page cache to the
// socket with no copy through this process. Each call gives the offset:
// the store's open file is shared by concurrent readers, so its own
// offset is never used. handled is false, and nothing sent, for a reader
// that verifies what it sends (not Trusted): the caller copies then.
// progress, if not nil, is called after each sendfile that sent bytes,
// before the next waits for room (the caller moves its write deadline);
// an error from it ends the send.
func (r *BodyReader) SendTo(dst syscall.RawConn, n int64, progress func(sent int64) error) (written int64, handled bool, err error) {
	if !r.trusted || r.of == nil {
		return 0, false, nil
	}
	end := min(r.limit, r.pos+n)
	for r.pos < end && r.err == nil {
		off := r.off + r.pos
		var sent int
		var serr error
		err := dst.Write(func(fd uintptr) bool {
			sent, serr = unix.Sendfile(int(fd), r.of.fd, &off, int(min(end-r.pos, 1<<30)))
			return serr != unix.EAGAIN
		})
		if sent > 0 {
			r.pos += int64(sent)
			written += int64(sent)
			if err == nil && serr == nil && progress != nil {
				err = progress(int64(sent))
			}
		}
		if err == nil {
			err = serr
		}
		if err != nil {
			return written, true, err
		}
		if sent == 0 {
			// The file ends before its header said: truncated in place.
			return written, true, r.fail(ErrCorrupt)
		}
	}
	return written, true, r.err
}
