//go:build linux

package disk

import (
	"io/fs"
	"syscall"
	"time"
)

// fileAccessTime is the initial last access of an entry found at start: the
// later of atime (not updated on noatime mounts) and mtime.
func fileAccessTime(fi fs.FileInfo) time.Time {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if a := time.Unix(st.Atim.Unix()); a.After(t) {
			t = a
		}
	}
	return t
}
