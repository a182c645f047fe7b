package cache

import (
	"container/heap"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is returned by the disk tier for a key it does not hold,
// including one whose file was damaged (and has been removed) or replaced
// since the entry was read.
var ErrNotFound = errors.New("cache: entry not found")

// ErrCorrupt is returned when an entry's body does not match its checksum.
// The file has been removed; the caller must not finish the response.
var ErrCorrupt = errors.New("cache: entry body corrupt")

// DiskOptions configures a DiskStore. Zero values get defaults like nginx's
// proxy_cache_path.
type DiskOptions struct {
	MaxSize  int64         // bytes; 0 = unlimited
	Inactive time.Duration // remove entries not read for this long, whatever their freshness; 0 = never
	Levels   []int         // subfolder levels like nginx levels=1:2; default {1, 2}
	// Logger receives failures worth an operator's attention; the store
	// calls it at most once a minute per kind of failure.
	Logger func(msg string, err error)

	// The cache manager removes at most ManagerFiles entries, or works at
	// most ManagerThreshold, per round, then sleeps ManagerSleep if more
	// work remains (nginx manager_files, manager_threshold, manager_sleep).
	ManagerFiles     int           // default 100
	ManagerThreshold time.Duration // default 200ms
	ManagerSleep     time.Duration // default 50ms
	// The index rebuild at start reads the headers of at most LoaderFiles
	// files, or works at most LoaderThreshold, per round, then sleeps
	// LoaderSleep (nginx loader_files, loader_threshold, loader_sleep).
	LoaderFiles     int           // default 100
	LoaderThreshold time.Duration // default 200ms
	LoaderSleep     time.Duration // default 50ms

	now func() time.Time // clock for last access; tests set a fake one
}

// CheckLevels checks subfolder levels as nginx's levels=1:2: at most three,
// each of one or two hex digits.
func CheckLevels(levels []int) error {
	if len(levels) > 3 {
		return fmt.Errorf("levels: at most 3 levels, got %d", len(levels))
	}
	for _, l := range levels {
		if l != 1 && l != 2 {
			return fmt.Errorf("levels: each level is 1 or 2 characters, not %d", l)
		}
	}
	return nil
}

func (o *DiskOptions) setDefaults() error {
	if len(o.Levels) == 0 {
		o.Levels = []int{1, 2}
	}
	if err := CheckLevels(o.Levels); err != nil {
		return err
	}
	if o.MaxSize < 0 {
		return fmt.Errorf("max size must not be negative, got %d", o.MaxSize)
	}
	if o.Inactive < 0 {
		return fmt.Errorf("inactive must not be negative, got %s", o.Inactive)
	}
	if o.now == nil {
		o.now = time.Now
	}
	setDefault(&o.ManagerFiles, 100)
	setDefault(&o.ManagerThreshold, 200*time.Millisecond)
	setDefault(&o.ManagerSleep, 50*time.Millisecond)
	setDefault(&o.LoaderFiles, 100)
	setDefault(&o.LoaderThreshold, 200*time.Millisecond)
	setDefault(&o.LoaderSleep, 50*time.Millisecond)
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// DiskStore is the persistent tier of one cache zone: one file per entry in
// a folder, named from the MD5 of the key in nginx-like subfolders. It keeps
// an in-memory index (key, size, last access) that a background loader
// rebuilds from the folder at start, and a background manager that keeps
// the zone under MaxSize and removes inactive entries.
//
// Files are written to a temporary file and renamed into place, so a crash
// never leaves a partial entry visible. Every rename and unlink of an entry
// file happens under mu, so that what the index says about a path can be
// checked against the file system without races.
type DiskStore struct {
	dir  string
	abs  string // absolute dir, the key of openDirs
	opts DiskOptions
	now  func() time.Time // tests use a fake clock

	mu    sync.Mutex
	items map[[md5.Size]byte]*diskItem
	lru   lruHeap
	onRm  []func(key string)

	entries atomic.Int64
	bytes   atomic.Int64
	evicted atomic.Int64
	expired atomic.Int64
	corrupt atomic.Int64
	werrs   [numWriteReasons]atomic.Int64
	loading atomic.Bool

	logMu   sync.Mutex
	logLast map[string]time.Time
	logSkip map[string]int

	wake   chan struct{}
	stop   chan struct{}
	loaded chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

// diskItem is the index record of one entry file.
type diskItem struct {
	hash   [md5.Size]byte
	key    string
	size   int64 // bytes accounted, whole file rounded up to blocks
	access int64 // last access, Unix ns
	pos    int   // position in the lru heap
}

// DiskStats are the counters of a DiskStore.
type DiskStats struct {
	Entries          int64
	Bytes            int64 // file sizes rounded up to 4 KiB blocks
	Evictions        int64 // removed to stay under MaxSize
	InactiveRemovals int64 // removed for not being read within Inactive
	CorruptRemovals  int64 // damaged files found and removed
	// WriteErrors counts failed stores by reason: "no_space", "permission",
	// "body_size" (body length differs from Meta.BodySize), "too_large"
	// (header over 1 MiB or body over MaxSize) and "io" (anything else).
	WriteErrors map[string]int64
	Loading     bool // the index rebuild is still running
}

type writeReason int

const (
	reasonNoSpace writeReason = iota
	reasonPermission
	reasonBodySize
	reasonTooLarge
	reasonIO
	numWriteReasons
)

var writeReasonNames = [numWriteReasons]string{"no_space", "permission", "body_size", "too_large", "io"}

const (
	tempPrefix  = ".tmp-"
	trashPrefix = ".trash-"
	blockSize   = 4096
)

// OpenDiskStore opens (creating it if needed) the zone folder dir. It returns
// at once: temporary files left by a crash are removed, and the index is
// rebuilt in the background; Get finds entries not yet indexed.
func OpenDiskStore(dir string, opts DiskOptions) (*DiskStore, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("disk cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("disk cache: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("disk cache: %w", err)
	}
	openDirsMu.Lock()
	if openDirs[abs] {
		openDirsMu.Unlock()
		// Two stores would each evict by their own index and count.
		return nil, fmt.Errorf("disk cache %s: already open in this process; share the DiskStore (across config reloads too)", dir)
	}
	openDirs[abs] = true
	openDirsMu.Unlock()
	d := &DiskStore{
		abs:     abs,
		dir:     dir,
		opts:    opts,
		now:     opts.now,
		items:   make(map[[md5.Size]byte]*diskItem),
		logLast: make(map[string]time.Time),
		logSkip: make(map[string]int),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		loaded:  make(chan struct{}),
	}
	// Only the root is listed here (level folders, leftovers of a crash),
	// so this is quick; it must happen before any writer of this process
	// creates a temporary file.
	names, err := readDirNames(dir)
	if err != nil {
		d.unregister()
		return nil, fmt.Errorf("disk cache: %w", err)
	}
	var trash []string
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, tempPrefix+processToken):
			// A store of this process wrote it (Clear's or a reload's
			// sibling): not a crash leftover.
		case strings.HasPrefix(name, tempPrefix):
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				d.log("cleanup", "disk cache: removing a stale temporary file", err)
			}
		case strings.HasPrefix(name, trashPrefix):
			trash = append(trash, name)
		}
	}
	d.loading.Store(true)
	d.wg.Add(2)
	go d.load(trash)
	go d.manage()
	return d, nil
}

// Loaded is closed when the background index rebuild has finished; from
// then on Walk sees every entry on disk.
func (d *DiskStore) Loaded() <-chan struct{} { return d.loaded }

// Close stops the manager and the loader. Entries stay on disk.
func (d *DiskStore) Close() error {
	d.closed.Do(func() {
		close(d.stop)
		d.unregister()
	})
	d.wg.Wait()
	return nil
}

func (d *DiskStore) unregister() {
	openDirsMu.Lock()
	delete(openDirs, d.abs)
	openDirsMu.Unlock()
}

var (
	openDirsMu sync.Mutex
	openDirs   = map[string]bool{} // zone folders open in this process
)

// processToken marks this process's temporary files, so that opening a
// store removes only those left by a crashed process.
var processToken = func() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b) + "-"
}()

func keyHash(key string) [md5.Size]byte { return md5.Sum([]byte(key)) }

// relPath returns the path of an entry file relative to the zone folder:
// levels 1:2 give c/29/b7f54b2df7773722d382f4809d65029c as nginx does.
func (d *DiskStore) relPath(h [md5.Size]byte) string {
	name := hex.EncodeToString(h[:])
	parts := make([]string, 0, len(d.opts.Levels)+1)
	end := len(name)
	for _, l := range d.opts.Levels {
		parts = append(parts, name[end-l:end])
		end -= l
	}
	return filepath.Join(append(parts, name)...)
}

func (d *DiskStore) path(h [md5.Size]byte) string { return filepath.Join(d.dir, d.relPath(h)) }

// Get returns the entry stored for key, with File and BodyOffset set and
// Body nil, or ErrNotFound. The header checksum is verified; a damaged,
// truncated, unknown-version or colliding file is removed and is a miss.
// Read the body with OpenBody (streaming, verified at EOF) or LoadBody.
func (d *DiskStore) Get(key string) (*Entry, error) {
	h := keyHash(key)
	path := d.path(h)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.forgetMissing(h, path)
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer f.Close()
	fh, fi, err := readHeader(f)
	if err == nil && fh.Key != key {
		err = errors.New("key mismatch (md5 collision)")
	}
	if err != nil {
		if isReadErr(err) {
			return nil, err
		}
		d.removeDamaged(h, path, key, fi, err)
		return nil, ErrNotFound
	}
	if !d.touch(h, path, fh.Key, fi) {
		return nil, ErrNotFound // removed or replaced meanwhile
	}
	return &Entry{Meta: fh.Meta, File: path, BodyOffset: int64(fh.HeaderLen), disk: d}, nil
}

// readErr marks an I/O error (as opposed to damaged content).
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

func isReadErr(err error) bool { var r readErr; return errors.As(err, &r) }

// readHeader reads and verifies the header of an open entry file and checks
// that the file holds exactly the header and the body.
func readHeader(f *os.File) (*fileHeader, fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, readErr{err}
	}
	var buf [4096]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		return nil, fi, readErr{err}
	}
	p := buf[:n]
	hl, err := headerLength(p)
	if err != nil {
		return nil, fi, err
	}
	if int64(hl) > fi.Size() {
		return nil, fi, errBadHeaderLen
	}
	if hl > n {
		p = make([]byte, hl)
		if _, err := f.ReadAt(p, 0); err != nil {
			return nil, fi, readErr{err}
		}
	}
	fh, err := decodeHeader(p)
	if err != nil {
		return nil, fi, err
	}
	if fi.Size() != int64(fh.HeaderLen)+fh.BodySize {
		return nil, fi, fmt.Errorf("file size %d, want header %d + body %d", fi.Size(), fh.HeaderLen, fh.BodySize)
	}
	return fh, fi, nil
}

func accountedSize(fileSize int64) int64 { return (fileSize + blockSize - 1) / blockSize * blockSize }

// touch records an access to the file at path that was read as fi, adding
// it to the index if it is not there yet. It reports false if the file is
// no longer at path.
func (d *DiskStore) touch(h [md5.Size]byte, path, key string, fi fs.FileInfo) bool {
	now := d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if it := d.items[h]; it != nil {
		it.access = now
		heap.Fix(&d.lru, it.pos)
		return true
	}
	// Not indexed: the loader has not reached it yet, or it was removed
	// after we opened it. Renames and unlinks happen under mu, so this
	// check is exact.
	cur, err := os.Stat(path)
	if err != nil || !os.SameFile(cur, fi) {
		return false
	}
	d.insertLocked(&diskItem{hash: h, key: key, size: accountedSize(fi.Size()), access: now})
	return true
}

func (d *DiskStore) insertLocked(it *diskItem) {
	if old := d.items[it.hash]; old != nil {
		d.dropLocked(old)
	}
	d.items[it.hash] = it
	heap.Push(&d.lru, it)
	d.entries.Add(1)
	d.bytes.Add(it.size)
}

func (d *DiskStore) dropLocked(it *diskItem) {
	delete(d.items, it.hash)
	heap.Remove(&d.lru, it.pos)
	d.entries.Add(-1)
	d.bytes.Add(-it.size)
}

// forgetMissing drops the index record of a file that is gone (the folder
// was emptied behind our back).
func (d *DiskStore) forgetMissing(h [md5.Size]byte, path string) {
	d.mu.Lock()
	it := d.items[h]
	if it == nil {
		d.mu.Unlock()
		return
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		d.mu.Unlock()
		return
	}
	d.dropLocked(it)
	d.mu.Unlock()
	d.notifyRemoved(it.key)
}

// removeDamaged removes the damaged file at path if it is still the one
// that was read (fi), and counts and logs it. key is the caller's idea of
// the entry's key ("" if unknown); the index's key wins.
func (d *DiskStore) removeDamaged(h [md5.Size]byte, path, key string, fi fs.FileInfo, cause error) {
	d.mu.Lock()
	cur, err := os.Stat(path)
	if err != nil || fi == nil || !os.SameFile(cur, fi) {
		d.mu.Unlock()
		return
	}
	if it := d.items[h]; it != nil {
		key = it.key
		d.dropLocked(it)
	}
	err = os.Remove(path)
	d.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log("remove", "disk cache: removing a damaged entry file", err)
	}
	d.corrupt.Add(1)
	d.log("corrupt", "disk cache: removed damaged entry file "+d.relOf(path), cause)
	if key != "" {
		d.notifyRemoved(key)
	}
}

func (d *DiskStore) relOf(path string) string {
	if rel, err := filepath.Rel(d.dir, path); err == nil {
		return rel
	}
	return path
}

// Delete removes the entry for key, if any.
func (d *DiskStore) Delete(key string) error {
	h := keyHash(key)
	path := d.path(h)
	d.mu.Lock()
	defer d.mu.Unlock()
	if it := d.items[h]; it != nil {
		d.dropLocked(it)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Clear removes every entry. The level folders are renamed away at once and
// deleted in the background, so a flush of a large zone does not block.
func (d *DiskStore) Clear() error {
	d.mu.Lock()
	names, err := readDirNames(d.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.mu.Unlock()
		return err
	}
	var trash []string
	var firstErr error
	stamp := d.now().UnixNano()
	for i, name := range names {
		if !isHexName(name, d.opts.Levels[0]) {
			continue // temporary files of running writers, trash, foreign files
		}
		t := fmt.Sprintf("%s%d-%d", trashPrefix, stamp, i)
		if err := os.Rename(filepath.Join(d.dir, name), filepath.Join(d.dir, t)); err != nil {
			if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
				firstErr = err
			}
			continue
		}
		trash = append(trash, t)
	}
	d.items = make(map[[md5.Size]byte]*diskItem)
	d.lru = nil
	d.entries.Store(0)
	d.bytes.Store(0)
	d.mu.Unlock()
	if len(trash) > 0 {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.removeTrash(trash)
		}()
	}
	return firstErr
}

func (d *DiskStore) removeTrash(names []string) {
	for _, name := range names {
		if err := os.RemoveAll(filepath.Join(d.dir, name)); err != nil {
			d.log("trash", "disk cache: removing flushed entries", err)
		}
	}
}

// Walk calls fn for every key in the index, with its size on disk, until fn
// returns false. Keys not yet found by the loader are missing; wait for
// Loaded first to see them all. fn may call the store.
func (d *DiskStore) Walk(fn func(key string, size int64) bool) {
	type kv struct {
		key  string
		size int64
	}
	d.mu.Lock()
	all := make([]kv, 0, len(d.items))
	for _, it := range d.items {
		all = append(all, kv{it.key, it.size})
	}
	d.mu.Unlock()
	for _, e := range all {
		if !fn(e.key, e.size) {
			return
		}
	}
}

// OnRemove registers fn to be called with the key of every entry the store
// removes on its own: evicted for size, inactive, or found damaged or
// missing. It is not called for Delete and Clear. fn runs without locks
// held and may call the store.
func (d *DiskStore) OnRemove(fn func(key string)) {
	d.mu.Lock()
	d.onRm = append(d.onRm, fn)
	d.mu.Unlock()
}

func (d *DiskStore) notifyRemoved(key string) {
	d.mu.Lock()
	fns := d.onRm
	d.mu.Unlock()
	for _, fn := range fns {
		fn(key)
	}
}

// Stats returns the store's counters.
func (d *DiskStore) Stats() DiskStats {
	s := DiskStats{
		Entries:          d.entries.Load(),
		Bytes:            d.bytes.Load(),
		Evictions:        d.evicted.Load(),
		InactiveRemovals: d.expired.Load(),
		CorruptRemovals:  d.corrupt.Load(),
		WriteErrors:      make(map[string]int64, numWriteReasons),
		Loading:          d.loading.Load(),
	}
	for i := range d.werrs {
		s.WriteErrors[writeReasonNames[i]] = d.werrs[i].Load()
	}
	return s
}

// log reports a failure of the given kind, at most once a minute per kind,
// saying how many were left out since.
func (d *DiskStore) log(kind, msg string, err error) {
	if d.opts.Logger == nil {
		return
	}
	now := time.Now()
	d.logMu.Lock()
	last, seen := d.logLast[kind]
	if seen && now.Sub(last) < time.Minute {
		d.logSkip[kind]++
		d.logMu.Unlock()
		return
	}
	skipped := d.logSkip[kind]
	d.logLast[kind] = now
	d.logSkip[kind] = 0
	d.logMu.Unlock()
	if skipped > 0 {
		msg = fmt.Sprintf("%s (and %d more like it in the last minute)", msg, skipped)
	}
	d.opts.Logger(msg, err)
}

// isHexName reports whether name is n lower-case hex digits.
func isHexName(name string, n int) bool {
	if len(name) != n {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// lruHeap orders index records by last access, oldest first.
type lruHeap []*diskItem

func (h lruHeap) Len() int           { return len(h) }
func (h lruHeap) Less(i, j int) bool { return h[i].access < h[j].access }
func (h lruHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}
func (h *lruHeap) Push(x any) {
	it := x.(*diskItem)
	it.pos = len(*h)
	*h = append(*h, it)
}
func (h *lruHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
