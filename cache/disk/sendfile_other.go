//go:build !linux

package disk

import "syscall"

// SendTo sends nothing where sendfile(2) is not used: the caller copies.
func (r *BodyReader) SendTo(dst syscall.RawConn, n int64, progress func(sent int64) error) (written int64, handled bool, err error) {
	return 0, false, nil
}
