//go:build unix

package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockName is the lock file of a zone folder. A dotfile, so that the
// operators' flush (`rm -rf zone/*`) leaves it, and the lock, in place.
const lockName = ".edgecache.lock"

// folderLock is an exclusive flock(2) on a zone folder's lock file, held
// while the store is open: two processes on one folder would each evict by
// their own index and serve what the other purged. The kernel releases it
// when the process exits, however it exits. syscall.Flock is all this
// needs; a library would add nothing but a dependency.
type folderLock struct{ f *os.File }

// lockFolder takes dir's lock, or says which process holds it.
func lockFolder(dir string) (*folderLock, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking the zone folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("zone folder %s is in use by %s (lock file %s): one process per zone folder", dir, holder, path)
		}
		return nil, fmt.Errorf("locking the zone folder %s: %w", dir, err)
	}
	// Who holds it, for the error of the next one who tries.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &folderLock{f: f}, nil
}

// held reports whether the lock file at dir is still the one locked: `rm -rf
// zone` (the folder itself) takes it away.
func (l *folderLock) held(dir string) bool {
	fi, err := l.f.Stat()
	if err != nil {
		return false
	}
	cur, err := os.Stat(filepath.Join(dir, lockName))
	return err == nil && os.SameFile(fi, cur)
}

func (l *folderLock) release() {
	if l != nil {
		l.f.Close() // closing the last descriptor releases the flock
	}
}

// writable reports, without changing anything, whether this process may
// create files in the folder dir.
func writable(dir string) error {
	return syscall.Access(dir, 0x2|0x1) // W_OK | X_OK
}
