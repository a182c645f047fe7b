package caddymodule

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// wholeWriter is a connection's state for writeWhole, made on its first
// whole write and kept, so that a whole write allocates nothing.
type wholeWriter struct {
	c        *coalescingConn
	step     func(fd uintptr) bool // ww.write, bound once
	progress func(int64) error     // ww.sent, bound once
	bufs     [2][]byte
	n        int // bufs in use, from the first not yet written
	iov      [2]unix.Iovec
	w        wholeWrite
	written  int64
	taken    int64 // bytes taken since the deadline last moved
	err      error
}

// writeWhole writes p (after held, if any) to c's socket in as few system
// calls as it takes them, waiting for room in between, and moves the write
// deadline forward by w.idle (never past w.ceiling) each time the socket
// has taken another w.chunk bytes. It reports the bytes written.
func (c *coalescingConn) writeWhole(held, p []byte, w wholeWrite) (int64, error) {
	if hook := testHookWholeStart.Load(); hook != nil {
		(*hook)()
	}
	ww := c.wholeWriter()
	ww.bufs, ww.n = [2][]byte{held, p}, 2
	if len(held) == 0 {
		ww.bufs, ww.n = [2][]byte{p}, 1
	}
	ww.w, ww.written, ww.taken, ww.err = w, 0, 0, nil
	err := c.raw.Write(ww.step)
	if err == nil {
		err = ww.err
	}
	if hook := testHookWholeDone.Load(); hook != nil {
		(*hook)(err)
	}
	n := ww.written
	// Nothing of the body stays reachable from the connection.
	ww.bufs, ww.iov, ww.err = [2][]byte{}, [2]unix.Iovec{}, nil
	return n, err
}

// sendProgress is the progress function of a sendfile (disk.BodyReader's
// SendTo) under the whole write w, which moves the deadline as writeWhole
// does; nil when w is none (Caddy's chunks and deadlines).
func (c *coalescingConn) sendProgress(w wholeWrite) func(int64) error {
	if w.idle <= 0 {
		return nil
	}
	ww := c.wholeWriter()
	ww.w, ww.taken = w, 0
	return ww.progress
}

// sent moves the deadline once the socket has taken another chunk.
func (ww *wholeWriter) sent(n int64) error {
	if ww.taken += n; ww.taken < ww.w.chunk {
		return nil
	}
	ww.taken %= ww.w.chunk
	if err := ww.c.Conn.SetWriteDeadline(ww.w.deadline(time.Now())); err != nil {
		return err
	}
	if hook := testHookWholeProgress.Load(); hook != nil {
		(*hook)()
	}
	return nil
}

// wholeWriter returns c's, made on first use.
func (c *coalescingConn) wholeWriter() *wholeWriter {
	if c.ww == nil {
		c.ww = &wholeWriter{c: c}
		c.ww.step, c.ww.progress = c.ww.write, c.ww.sent
	}
	return c.ww
}

// write is the raw connection's write step: false to wait for room.
func (ww *wholeWriter) write(fd uintptr) bool {
	for {
		for ww.n > 0 && len(ww.bufs[0]) == 0 {
			ww.bufs[0], ww.bufs[1] = ww.bufs[1], nil
			ww.n--
		}
		if ww.n == 0 {
			return true
		}
		for i := range ww.n {
			ww.iov[i].Base = unsafe.SliceData(ww.bufs[i])
			ww.iov[i].SetLen(len(ww.bufs[i]))
		}
		r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&ww.iov[0])), uintptr(ww.n))
		if n := int(r); e == 0 && n > 0 {
			ww.written += int64(n)
			for n > 0 {
				m := min(n, len(ww.bufs[0]))
				ww.bufs[0], n = ww.bufs[0][m:], n-m
				if len(ww.bufs[0]) == 0 {
					ww.bufs[0], ww.bufs[1] = ww.bufs[1], nil
					ww.n--
				}
			}
			if ww.err = ww.sent(int64(r)); ww.err != nil {
				return true
			}
		}
		switch e {
		case 0, unix.EINTR:
		case unix.EAGAIN:
			return false // wait for room, until the deadline
		default:
			ww.err = syscall.Errno(e)
			return true
		}
	}
}

// wholeWritesSupported: writeWhole works on this system.
const wholeWritesSupported = true
