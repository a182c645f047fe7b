package disk

import (
	"github.com/edgecache/edgecache/cache/tagindex"

	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// Options configures a Store. Zero values get defaults like nginx's
// proxy_cache_path.
type Options struct {
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
	// FlushCheck is how often the folder's flush marker is looked for
	// (see watchFlush). Default 1s.
	FlushCheck time.Duration
	// OpenFiles is how many entry files, with their parsed headers, are
	// kept open for the next hits (see openfiles.go): default 512,
	// negative for none. SetOpenFiles changes it.
	OpenFiles int
	// VerifyAlways makes every read of a body verify its block checksums.
	// By default an entry file kept open whose blocks were all verified
	// once is sent from then on without reading it (sendfile): bit rot
	// after that first read goes unnoticed until the file is opened
	// again, as nginx never verifies at all.
	VerifyAlways bool

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

func (o *Options) setDefaults() error {
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
	setDefault(&o.FlushCheck, defaultFlushCheck)
	if o.OpenFiles == 0 {
		o.OpenFiles = DefaultOpenFiles
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Store is the persistent tier of one cache zone: one file per entry in
// a folder, named from the MD5 of the key in nginx-like subfolders. It keeps
// an in-memory index (a fixed-size record per entry, see diskIndex) that a
// background loader rebuilds from the folder at start, and a background
// manager that keeps the zone under MaxSize and removes inactive entries.
//
// Files are written to a temporary file and renamed into place, so a
// process crash never leaves a partial entry visible. They are not synced
// to disk: after a power loss a file may be missing, empty, short, or hold
// blocks that never reached the disk; the header checksum and the block
// checksums, verified on every read (blocks.go), make such a file a
// miss, or a cut response, never a complete-looking wrong one. Every rename and unlink of an entry
// file happens under mu, so that what the index says about a path can be
// checked against the file system without races.
//
// A store is made (New) without touching the disk, so that a
// configuration can be checked without side effects, and Open takes the
// folder: it creates it, locks it against other processes and starts the
// background work.
type Store struct {
	dir  string
	abs  string // absolute dir, the key of openDirs
	opts Options
	now  func() time.Time // tests use a fake clock

	mu      sync.Mutex
	idx     *diskIndex
	onFlush []func()
	// open is the open-file cache (openfiles.go), under mu; closedFiles:
	// the store is closed and keeps nothing open.
	open        map[[md5.Size]byte]*openFile
	closedFiles bool
	// openMax is Options.OpenFiles, changed by SetOpenFiles (under mu);
	// openCount and openBytes are the cache's files and their heap
	// (openFileBytes), changed under mu and read without it.
	openMax   atomic.Int64
	openCount atomic.Int64
	openBytes atomic.Int64
	// verifyAlways is Options.VerifyAlways, changed by SetVerifyAlways.
	verifyAlways atomic.Bool
	// tags maps a tag to the MD5s of the entries that carry it (tags.go).
	// Its methods are never called under mu, which its sweep takes.
	tags *tagindex.Index[[md5.Size]byte]

	entries atomic.Int64
	bytes   atomic.Int64
	evicted atomic.Int64
	expired atomic.Int64
	corrupt atomic.Int64
	flushes atomic.Int64
	// flushedAt is when the last flush was seen (Unix ns): entry files
	// older than that are gone, whatever is still on disk.
	flushedAt atomic.Int64
	// flushChecks counts the marker checks done, so that a test can wait
	// for some to have run rather than for a while.
	flushChecks atomic.Int64
	werrs       [numWriteReasons]atomic.Int64
	loading     atomic.Bool

	logMu   sync.Mutex
	logLast map[string]time.Time
	logSkip map[string]int

	openMu sync.Mutex // guards opened, closed and lock
	opened bool
	closed bool
	lock   *folderLock

	wake   chan struct{}
	stop   chan struct{}
	loaded chan struct{}
	wg     sync.WaitGroup
}

// Stats are the counters of a Store.
type Stats struct {
	Entries    int64
	Bytes      int64 // file sizes rounded up to 4 KiB blocks
	IndexBytes int64 // heap taken by the index
	// OpenFiles are the entry files the open-file cache holds, and
	// OpenFileBytes the heap they take (their parsed headers).
	OpenFiles        int64
	OpenFileBytes    int64
	Evictions        int64 // removed to stay under MaxSize
	InactiveRemovals int64 // removed for not being read within Inactive
	CorruptRemovals  int64 // damaged files found and removed
	Flushes          int64 // the folder was emptied from outside (see watchFlush)
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

// Open makes and opens a store: New, then Open.
func Open(dir string, opts Options) (*Store, error) {
	d, err := New(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := d.Open(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// New makes a store of the zone folder dir without touching the
// disk; Open opens it. Check whether the folder can be used with CheckDir.
func New(dir string, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("disk cache %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("disk cache: %w", err)
	}
	d := &Store{
		abs:     abs,
		dir:     dir,
		opts:    opts,
		now:     opts.now,
		idx:     newDiskIndex(),
		open:    make(map[[md5.Size]byte]*openFile),
		logLast: make(map[string]time.Time),
		logSkip: make(map[string]int),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		loaded:  make(chan struct{}),
	}
	d.verifyAlways.Store(opts.VerifyAlways)
	d.openMax.Store(int64(opts.OpenFiles))
	d.tags = tagindex.New(compareHash, md5.Size, d.indexed)
	return d, nil
}

// SetVerifyAlways changes Options.VerifyAlways of a store in use (a config
// reload keeps the store): readers opened from then on follow it.
func (d *Store) SetVerifyAlways(always bool) { d.verifyAlways.Store(always) }

// Open creates the zone folder if needed and takes it: it locks the folder
// against other processes (the error names the one holding it), removes
// the temporary files a crash left, and starts the index rebuild, the cache
// manager and the flush watch. It returns at once; Get finds entries the
// rebuild has not reached yet. Opening an open store does nothing.
func (d *Store) Open() error {
	d.openMu.Lock()
	defer d.openMu.Unlock()
	if d.opened {
		return nil
	}
	if d.closed {
		return fmt.Errorf("disk cache %s: store closed", d.dir)
	}
	openDirsMu.Lock()
	if openDirs[d.abs] {
		openDirsMu.Unlock()
		// Two stores would each evict by their own index and count.
		return fmt.Errorf("disk cache %s: already open in this process; share the Store (across config reloads too)", d.dir)
	}
	openDirs[d.abs] = true
	openDirsMu.Unlock()
	fail := func(err error) error {
		d.unregister()
		if d.lock != nil {
			d.lock.release()
			d.lock = nil
		}
		return fmt.Errorf("disk cache: %w", err)
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return fail(err)
	}
	lock, err := lockFolder(d.dir)
	if err != nil {
		return fail(err)
	}
	d.lock = lock
	// Only the root is listed here (level folders, leftovers of a crash),
	// so this is quick; it must happen before any writer of this process
	// creates a temporary file. The lock makes every other temporary file
	// a crash's leftover.
	names, err := readDirNames(d.dir)
	if err != nil {
		return fail(err)
	}
	var trash []string
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, tempPrefix+processToken):
			// A store of this process wrote it (a reload's sibling): not a
			// crash leftover.
		case strings.HasPrefix(name, tempPrefix):
			if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				d.log("cleanup", "disk cache: removing a stale temporary file", err)
			}
		case strings.HasPrefix(name, trashPrefix):
			trash = append(trash, name)
		}
	}
	if err := writeFlushMarker(d.dir); err != nil {
		return fail(err)
	}
	d.opened = true
	d.loading.Store(true)
	d.wg.Add(3)
	go d.load(trash)
	go d.manage()
	go d.watchFlush()
	return nil
}

// Loaded is closed when the background index rebuild has finished; from
// then on Walk sees every entry on disk.
func (d *Store) Loaded() <-chan struct{} { return d.loaded }

// Close stops the background work and releases the folder. Entries stay on
// disk.
func (d *Store) Close() error {
	d.openMu.Lock()
	if d.closed {
		d.openMu.Unlock()
		d.wg.Wait()
		return nil
	}
	d.closed = true
	close(d.stop)
	opened := d.opened
	if !opened {
		close(d.loaded) // nothing will ever be loaded
	}
	d.openMu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	d.closeOpenLocked()
	d.closedFiles = true
	d.mu.Unlock()
	if opened {
		d.openMu.Lock()
		d.lock.release()
		d.lock = nil
		d.openMu.Unlock()
		d.unregister()
	}
	return nil
}

func (d *Store) unregister() {
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

// KeyHash is the MD5 of key: it names the key's entry file, and WalkFrom
// goes in its order.
func KeyHash(key string) [md5.Size]byte {
	// Keys are short: a copy on the stack spares the conversion's
	// allocation on every look-up.
	var buf [512]byte
	if len(key) <= len(buf) {
		return md5.Sum(append(buf[:0], key...))
	}
	return md5.Sum([]byte(key))
}

// relPath returns the path of an entry file relative to the zone folder:
// levels 1:2 give c/29/b7f54b2df7773722d382f4809d65029c as nginx does.
func (d *Store) relPath(h [md5.Size]byte) string {
	name := hex.EncodeToString(h[:])
	parts := make([]string, 0, len(d.opts.Levels)+1)
	end := len(name)
	for _, l := range d.opts.Levels {
		parts = append(parts, name[end-l:end])
		end -= l
	}
	return filepath.Join(append(parts, name)...)
}

func (d *Store) path(h [md5.Size]byte) string { return filepath.Join(d.dir, d.relPath(h)) }

// Get returns the entry stored for key, its body on disk, or ErrNotFound.
// Its Header has the body's Content-Length, which a header written before
// the body lacks. The header checksum is verified; a damaged,
// truncated, unknown-version or colliding file is removed and is a miss.
// Read the body with OpenBody (streaming, verified block by block) or
// LoadBody. The entry is read-only: a file kept open (openfiles.go) gives
// every hit the same one.
func (d *Store) Get(key string) (*Entry, error) {
	h := KeyHash(key)
	now := d.now().UnixNano()
	d.mu.Lock()
	e := d.cachedLocked(h, key, now)
	d.mu.Unlock()
	if e != nil {
		return e, nil
	}
	path := d.path(h)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.forgetMissing(h, path)
			return nil, ErrNotFound
		}
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	fh, fi, err := readHeader(f)
	if err == nil && fh.Key != key {
		err = errors.New("key mismatch (md5 collision)")
	}
	if err != nil {
		if isReadErr(err) {
			return nil, err
		}
		d.removeDamaged(h, path, fi, err)
		return nil, ErrNotFound
	}
	if d.flushedFile(h, path, fi) {
		return nil, ErrNotFound
	}
	ok, inserted := d.touch(h, path, fi)
	if !ok {
		return nil, ErrNotFound // removed or replaced meanwhile
	}
	if inserted {
		d.tags.Add(h, fh.Tags)
	}
	fh.File = File{d: d, path: path, key: key, offset: int64(fh.HeaderLen), crc: fh.HeaderCRC}
	if _, ok := fh.Header["Content-Length"]; !ok {
		// The header was written before the body, whose length it could
		// not give: it is known now. Added once here, not on each hit, as
		// the map is shared by every hit of the open file.
		if fh.Header == nil {
			fh.Header = make(http.Header, 1)
		}
		fh.Header["Content-Length"] = []string{strconv.FormatInt(fh.BodySize, 10)}
	}
	if of := d.keepOpen(h, path, f, fh, fi); of != nil {
		keep = true
		return &of.entry, nil
	}
	return &fh.Entry, nil
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
	if fi.Size() != fh.fileSize() {
		return nil, fi, fmt.Errorf("file size %d, want %d for header %d + body %d + block table", fi.Size(), fh.fileSize(), fh.HeaderLen, fh.BodySize)
	}
	return fh, fi, nil
}

func accountedSize(fileSize int64) int64 { return (fileSize + blockSize - 1) / blockSize * blockSize }

// touch records an access to the file at path that was read as fi, adding
// it to the index if it is not there yet (inserted). It reports false if
// the file is no longer at path.
func (d *Store) touch(h [md5.Size]byte, path string, fi fs.FileInfo) (ok, inserted bool) {
	now := d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.idx.get(h); r != nil {
		d.idx.touch(r, now)
		return true, false
	}
	// Not indexed: the loader has not reached it yet, or it was removed
	// after we opened it. Renames and unlinks happen under mu, so this
	// check is exact.
	cur, err := os.Stat(path)
	if err != nil || !os.SameFile(cur, fi) {
		return false, false
	}
	d.insertLocked(h, fi.Size(), now)
	return true, true
}

// insertLocked indexes the entry file of h, of the given size.
func (d *Store) insertLocked(h [md5.Size]byte, fileSize, access int64) {
	d.forgetOpenLocked(h)
	d.idx.insert(h, fileSize, access)
	d.countLocked()
}

// dropLocked forgets the record of h and reports whether there was one.
func (d *Store) dropLocked(h [md5.Size]byte) bool {
	d.forgetOpenLocked(h)
	r := d.idx.get(h)
	if r == nil {
		return false
	}
	d.idx.remove(r)
	d.countLocked()
	d.tags.Gone()
	return true
}

// countLocked publishes the index's size for Stats, which takes no lock.
func (d *Store) countLocked() {
	d.entries.Store(int64(d.idx.len()))
	d.bytes.Store(d.idx.bytes)
}

// forgetMissing drops the index record of a file that is gone (the folder
// was emptied behind our back).
func (d *Store) forgetMissing(h [md5.Size]byte, path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.idx.get(h) == nil {
		return
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	d.dropLocked(h)
}

// removeDamaged removes the damaged file at path if it is still the one
// that was read (fi), and counts and logs it.
func (d *Store) removeDamaged(h [md5.Size]byte, path string, fi fs.FileInfo, cause error) {
	d.mu.Lock()
	cur, err := os.Stat(path)
	if err != nil || fi == nil || !os.SameFile(cur, fi) {
		d.mu.Unlock()
		return
	}
	d.dropLocked(h)
	err = os.Remove(path)
	d.mu.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log("remove", "disk cache: removing a damaged entry file", err)
	}
	if errors.Is(cause, errBadVersion) {
		// Written by an older release: not damage, just fetched again.
		d.log("version", "disk cache: removed an entry file of another format version "+d.relOf(path), nil)
	} else {
		d.corrupt.Add(1)
		d.log("corrupt", "disk cache: removed damaged entry file "+d.relOf(path), cause)
	}
}

func (d *Store) relOf(path string) string {
	if rel, err := filepath.Rel(d.dir, path); err == nil {
		return rel
	}
	return path
}

// Delete removes the entry for key and reports whether there was one: a
// file on disk, indexed or not.
func (d *Store) Delete(key string) (bool, error) {
	h := KeyHash(key)
	path := d.path(h)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropLocked(h)
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Clear removes every entry and returns how many the index held. The level
// folders are renamed away at once and deleted in the background, so a
// flush of a large zone does not block.
func (d *Store) Clear() (int, error) {
	// The tags first: a reference added meanwhile, to an entry the clear
	// then removes, is only stale (purges check, sweeps drop it), where
	// one cleared after an entry written just after the clear would lose
	// that entry's tags.
	d.tags.Clear()
	d.mu.Lock()
	names, err := readDirNames(d.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.mu.Unlock()
		return 0, err
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
	n := d.idx.len()
	d.idx = newDiskIndex()
	d.closeOpenLocked()
	d.countLocked()
	d.mu.Unlock()
	if len(trash) > 0 {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.removeTrash(trash)
		}()
	}
	return n, firstErr
}

func (d *Store) removeTrash(names []string) {
	for _, name := range names {
		if err := os.RemoveAll(filepath.Join(d.dir, name)); err != nil {
			d.log("trash", "disk cache: removing flushed entries", err)
		}
	}
}

// Walk calls fn for the key of every entry in the index, until fn returns
// false. The index holds no keys: Walk reads each from its entry file's
// header (one small read per entry), so it costs a pass over the zone, as
// nginx's purge by wildcard does. Keys not yet found by the loader are
// missing; wait for Loaded first to see them all. fn may call the store.
func (d *Store) Walk(fn func(key string) bool) {
	d.mu.Lock()
	hashes := d.idx.hashes()
	d.mu.Unlock()
	for _, h := range hashes {
		key, ok := d.keyOf(h)
		if ok && !fn(key) {
			return
		}
	}
}

// WalkFrom calls fn with the hash and key of every indexed entry whose
// hash follows from (all if from is nil), in the order of the hashes, until
// fn returns false. Keys are read from the entry files as fn asks for them.
func (d *Store) WalkFrom(from *[md5.Size]byte, fn func(h [md5.Size]byte, key string) bool) {
	d.mu.Lock()
	hashes := d.idx.hashes()
	d.mu.Unlock()
	slices.SortFunc(hashes, func(a, b [md5.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	i := 0
	if from != nil {
		i, _ = slices.BinarySearchFunc(hashes, *from, func(a, b [md5.Size]byte) int { return bytes.Compare(a[:], b[:]) })
		if i < len(hashes) && hashes[i] == *from {
			i++
		}
	}
	for _, h := range hashes[i:] {
		key, ok := d.keyOf(h)
		if ok && !fn(h, key) {
			return
		}
	}
}

// keyOf reads the key of the entry file of h.
func (d *Store) keyOf(h [md5.Size]byte) (string, bool) {
	f, err := os.Open(d.path(h))
	if err != nil {
		return "", false // removed meanwhile
	}
	defer f.Close()
	fh, _, err := readHeader(f)
	if err != nil || KeyHash(fh.Key) != h {
		return "", false // Get and the loader deal with damaged files
	}
	return fh.Key, true
}

// OnFlush registers fn to be called when the zone folder was found emptied
// from outside (see watchFlush), so that the memory tier forgets too.
func (d *Store) OnFlush(fn func()) {
	d.mu.Lock()
	d.onFlush = append(d.onFlush, fn)
	d.mu.Unlock()
}

// IndexBytes estimates the heap the index takes, for the memory limit.
func (d *Store) IndexBytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.sizeBytes()
}

// Stats returns the store's counters.
func (d *Store) Stats() Stats {
	s := Stats{
		Entries:          d.entries.Load(),
		Bytes:            d.bytes.Load(),
		IndexBytes:       d.IndexBytes(),
		OpenFiles:        d.openCount.Load(),
		OpenFileBytes:    d.openBytes.Load(),
		Flushes:          d.flushes.Load(),
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
func (d *Store) log(kind, msg string, err error) {
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

// Dir is the zone folder.
func (d *Store) Dir() string { return d.dir }

// MaxSize is the store's bound in bytes (0: none).
func (d *Store) MaxSize() int64 { return d.opts.MaxSize }

// Has reports whether the index holds an entry for key.
func (d *Store) Has(key string) bool {
	h := KeyHash(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.get(h) != nil
}
