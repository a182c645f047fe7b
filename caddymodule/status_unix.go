//go:build unix

package caddymodule

import "syscall"

// maxOpenFiles is the process's limit of open files (RLIMIT_NOFILE), or -1.
func maxOpenFiles() int64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return -1
	}
	return int64(l.Cur)
}
