package disk

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// load rebuilds the index from the zone folder in the background, with
// bounded work per round like nginx's cache loader, then deletes what an
// interrupted Clear left behind. Entries found by Get or written meanwhile
// are already indexed and are skipped.
func (d *Store) load(trash []string) {
	defer d.wg.Done()
	defer func() {
		d.loading.Store(false)
		close(d.loaded)
	}()
	l := &loader{d: d, roundStart: time.Now()}
	if !l.walk(d.dir, 0) {
		return
	}
	d.removeTrash(trash)
}

type loader struct {
	d          *Store
	files      int
	roundStart time.Time
}

// walk indexes the entry files under dir, which is at the given level
// depth. It returns false if the store was closed.
func (l *loader) walk(dir string, depth int) bool {
	d := l.d
	names, err := readDirNames(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			d.log("load", "disk cache: reading a zone folder", err)
		}
		return !l.stopped()
	}
	levels := d.opts.Levels
	for _, name := range names {
		if depth < len(levels) {
			if isHexName(name, levels[depth]) {
				if !l.walk(filepath.Join(dir, name), depth+1) {
					return false
				}
			}
			continue
		}
		if !isHexName(name, 2*md5.Size) {
			continue // not ours
		}
		l.loadFile(filepath.Join(dir, name), name)
		if !l.pace() {
			return false
		}
	}
	return !l.stopped()
}

func (l *loader) loadFile(path, name string) {
	d := l.d
	var h [md5.Size]byte
	hex.Decode(h[:], []byte(name))
	if d.path(h) != path {
		// In the wrong subfolder (levels changed): unreachable, and its
		// bytes would not be counted. nginx removes these too.
		if err := os.Remove(path); err == nil {
			d.log("stray", "disk cache: removed an entry file in the wrong subfolder (levels changed?) "+d.relOf(path), nil)
		}
		return
	}
	d.mu.Lock()
	known := d.idx.get(h) != nil
	d.mu.Unlock()
	if known {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return // removed meanwhile
	}
	fh, fi, err := readHeader(f)
	f.Close()
	if err == nil && KeyHash(fh.Key) != h {
		err = errors.New("key does not match the file name")
	}
	if err != nil {
		if isReadErr(err) {
			d.log("load", "disk cache: reading an entry file", err)
			return
		}
		d.removeDamaged(h, path, fi, err)
		return
	}
	if d.flushedFile(h, path, fi) {
		return
	}
	d.mu.Lock()
	if d.idx.get(h) != nil {
		d.mu.Unlock()
		return
	}
	if cur, err := os.Stat(path); err != nil || !os.SameFile(cur, fi) {
		d.mu.Unlock()
		return // replaced or removed while we read it
	}
	d.insertLocked(h, fi.Size(), fileAccessTime(fi).UnixNano())
	d.mu.Unlock()
	d.tags.Add(h, fh.Tags)
}

// pace ends a round after LoaderFiles files or LoaderThreshold and sleeps
// LoaderSleep. It returns false if the store was closed.
func (l *loader) pace() bool {
	l.files++
	o := &l.d.opts
	if l.files < o.LoaderFiles && time.Since(l.roundStart) < o.LoaderThreshold {
		return true
	}
	t := time.NewTimer(o.LoaderSleep)
	defer t.Stop()
	select {
	case <-l.d.stop:
		return false
	case <-t.C:
	}
	l.files = 0
	l.roundStart = time.Now()
	return true
}

func (l *loader) stopped() bool {
	select {
	case <-l.d.stop:
		return true
	default:
		return false
	}
}
