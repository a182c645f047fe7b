//go:build !linux

package disk

import (
	"io/fs"
	"time"
)

// fileAccessTime is the initial last access of an entry found at start.
func fileAccessTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
