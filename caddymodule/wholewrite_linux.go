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
	c       *coalescingConn
	step    func(fd uintptr) bool // c.ww.write, bound once
	bufs    [2][]byte
	n       int // bufs in use, from the first not yet written
	iov     [2]unix.Iovec
	w       wholeWrite
	written int64
	taken   int64 // bytes taken since the deadline last moved
	err     error
}

// writeWhole writes p (after held, if any) to c's socket in as few system
// calls as it takes them, waiting for room in between, and moves the write
// deadline forward by w.idle (never past w.ceiling) each time the socket
// has taken another w.chunk bytes. It reports the bytes written.
func (c *coalescingConn) writeWhole(held, p []byte, w wholeWrite) (int64, error) {
	if testHookWholeStart != nil {
		testHookWholeStart()
	}
	ww := c.ww
	if ww == nil {
		ww = &wholeWriter{c: c}
		ww.step = ww.write
		c.ww = ww
	}
	ww.bufs, ww.n = [2][]byte{held, p}, 2
	if len(held) == 0 {
		ww.bufs, ww.n = [2][]byte{p}, 1
	}
	ww.w, ww.written, ww.taken, ww.err = w, 0, 0, nil
	err := c.raw.Write(ww.step)
	if err == nil {
		err = ww.err
	}
	if testHookWholeDone != nil {
		testHookWholeDone(err)
	}
	n := ww.written
	// Nothing of the body stays reachable from the connection.
	ww.bufs, ww.iov, ww.err = [2][]byte{}, [2]unix.Iovec{}, nil
	return n, err
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
			if ww.taken += int64(r); ww.taken >= ww.w.chunk {
				ww.taken %= ww.w.chunk
				if ww.err = ww.c.Conn.SetWriteDeadline(ww.w.deadline(time.Now())); ww.err != nil {
					return true
				}
				if testHookWholeProgress != nil {
					testHookWholeProgress()
				}
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
