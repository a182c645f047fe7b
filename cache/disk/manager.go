package disk

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// managerIdle is the longest the manager sleeps with nothing to do.
const managerIdle = 10 * time.Second

// kick wakes the manager, e.g. when a commit pushed the zone over MaxSize.
func (d *Store) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// manage is the cache manager: it removes inactive entries and, least
// recently used first, entries over MaxSize. Like nginx's, it does bounded
// work per round and sleeps ManagerSleep between busy rounds.
func (d *Store) manage() {
	defer d.wg.Done()
	for {
		more, next := d.manageRound()
		wake := d.wake
		if more {
			next = d.opts.ManagerSleep
			wake = nil // sleep the full pause: this is what bounds the work
		}
		t := time.NewTimer(next)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// manageRound removes up to ManagerFiles entries. It reports whether work
// remains, and otherwise how long until the next entry becomes inactive.
func (d *Store) manageRound() (more bool, next time.Duration) {
	start := time.Now()
	for i := 0; i < d.opts.ManagerFiles; i++ {
		if i > 0 && time.Since(start) >= d.opts.ManagerThreshold {
			return true, 0
		}
		d.mu.Lock()
		it := d.idx.oldest()
		if it == nil {
			d.mu.Unlock()
			return false, managerIdle
		}
		now := d.now().UnixNano()
		inactive := d.opts.Inactive > 0 && now-it.access >= int64(d.opts.Inactive)
		if !inactive && (d.opts.MaxSize == 0 || d.bytes.Load() <= d.opts.MaxSize) {
			next = managerIdle
			if d.opts.Inactive > 0 {
				next = min(next, time.Duration(it.access+int64(d.opts.Inactive)-now))
			}
			d.mu.Unlock()
			return false, next
		}
		h := it.hash
		d.dropLocked(h)
		err := os.Remove(d.path(h))
		d.mu.Unlock()
		if inactive {
			d.expired.Add(1)
		} else {
			d.evicted.Add(1)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log("remove", "disk cache: removing an entry file", err)
		}
	}
	return true, 0
}
