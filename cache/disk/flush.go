package disk

import (
	"crypto/md5"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The operators' full flush is `rm -rf /var/cache/edgecache/<zone>/*` with
// the proxy running, as it was with nginx. The disk tier notices missing
// files on its own, but the memory tier would go on answering from what it
// holds. So every open zone folder holds a marker, a file that such a
// command removes (not a dotfile, which `*` leaves), and the store looks
// for it once a second (the price of one stat, off the request path): when
// it is gone, the zone forgets everything, memory included, and the marker
// is written again.
//
// The marker is a CACHEDIR.TAG (https://bford.info/cachedir/), so that
// backup tools that honour it skip the cache too.
const flushMarkerName = "CACHEDIR.TAG"

const flushMarker = "Signature: 8a477f597d28d172789f06886806bc55\n" +
	"# This file is a cache directory tag created by edgecache.\n" +
	"# Removing it (with the rest of the folder, e.g. rm -rf <folder>/*)\n" +
	"# flushes the zone, memory tier included, within two seconds.\n"

// defaultFlushCheck is how often the marker is looked for, as the
// maintenance flag is.
const defaultFlushCheck = time.Second

// writeFlushMarker writes the marker into dir unless it is there.
func writeFlushMarker(dir string) error {
	path := filepath.Join(dir, flushMarkerName)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return WriteFolderFile(path, []byte(flushMarker))
}

// WriteFolderFile writes a file of a zone folder's own (the flush marker,
// the fleet's position) through a temporary file, so that it is never
// seen half written, whoever writes it at the same time; a crash leaves a
// .tmp- file that the next start removes.
func WriteFolderFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix+processToken+"*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// watchFlush looks for the marker every FlushCheck and flushes the zone
// once each time it disappears.
func (d *Store) watchFlush() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.FlushCheck)
	defer t.Stop()
	marker := filepath.Join(d.dir, flushMarkerName)
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
			d.flushed()
		}
		d.flushChecks.Add(1)
	}
}

// flushed forgets every entry after the folder was emptied from outside,
// tells the zone (OnFlush), re-creates what the store needs and indexes
// what was written since.
func (d *Store) flushed() {
	d.flushes.Add(1)
	d.tags.Clear() // first, as Clear does
	d.mu.Lock()
	// A large folder takes a while to empty, and the marker may go first:
	// the files still there are as good as gone (see flushedFile).
	// Less a kernel tick: file times come from the kernel's coarse clock,
	// which lags this one by up to a tick (1-10 ms), so an entry
	// written just after this point could look older than it and be
	// dropped as the flush's leftover.
	d.flushedAt.Store(time.Now().Add(-mtimeSlack).UnixNano())
	d.idx = newDiskIndex()
	d.closeOpenLocked()
	d.countLocked()
	fns := d.onFlush
	d.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		d.log("flush", "disk cache: re-creating the zone folder after a flush", err)
		return // tried again in a second, as the marker is still missing
	}
	d.openMu.Lock()
	if d.lock != nil && !d.lock.held(d.dir) {
		// The folder itself was removed, and the lock file with it.
		if l, err := lockFolder(d.dir); err == nil {
			d.lock.release()
			d.lock = l
		} else {
			d.log("lock", "disk cache: re-taking the zone folder's lock after a flush", err)
		}
	}
	d.openMu.Unlock()
	if err := writeFlushMarker(d.dir); err != nil {
		d.log("flush", "disk cache: writing the flush marker", err)
		return
	}
	d.log("flush", "disk cache: the zone folder was emptied: zone flushed", nil)
	// Entries committed between the removal and now are on disk: index them.
	l := &loader{d: d, roundStart: time.Now()}
	l.walk(d.dir, 0)
}

// mtimeSlack is how far a file's modification time may lag time.Now():
// Linux stamps files with its coarse clock, one tick (at most 10 ms) behind.
const mtimeSlack = 10 * time.Millisecond

// flushedFile reports whether the entry file read as fi was written before
// the last flush, and then removes it if it is still at path: a `rm -rf`
// under way has not reached it yet, and it must not be served meanwhile.
func (d *Store) flushedFile(h [md5.Size]byte, path string, fi fs.FileInfo) bool {
	at := d.flushedAt.Load()
	if at == 0 || fi.ModTime().UnixNano() >= at {
		return false
	}
	d.mu.Lock()
	if cur, err := os.Stat(path); err == nil && os.SameFile(cur, fi) {
		d.dropLocked(h)
		os.Remove(path)
	}
	d.mu.Unlock()
	return true
}

// CheckDir reports, without changing anything on disk, whether dir can be
// a zone folder: it is a folder this process can write, or it does not
// exist and the nearest existing parent is one where it can be created.
func CheckDir(dir string) error {
	for p := dir; ; {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				if p == dir {
					return fmt.Errorf("%s is not a folder", dir)
				}
				return fmt.Errorf("cannot create %s: %s is not a folder", dir, p)
			}
			if err := writable(p); err != nil {
				if p == dir {
					return fmt.Errorf("folder %s is not writable: %w", dir, err)
				}
				return fmt.Errorf("cannot create %s: %s is not writable: %w", dir, p, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return err
		}
		p = parent
	}
}
