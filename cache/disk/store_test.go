package disk

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// fakeClock drives last-access times in eviction and inactive tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time             { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration)    { c.ns.Add(int64(d)) }
func fastLoader(o Options) Options              { o.LoaderSleep = time.Millisecond; return o }
func withClock(o Options, c *fakeClock) Options { o.now = c.Now; return o }

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	d, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testMeta(key string, size int64) Meta {
	now := time.Now()
	return Meta{
		Key:    key,
		Status: 200,
		Header: http.Header{
			"Content-Type": {"image/png"},
			"X-Multi":      {"a", "b"},
		},
		StoredAt:             now,
		ValidUntil:           now.Add(time.Hour),
		StaleWhileRevalidate: 30 * time.Second,
		StaleIfError:         time.Minute,
		BodySize:             size,
	}
}

// put stores body under key, writing it in chunks.
func put(t testing.TB, d *Store, m Meta, body []byte) *Entry {
	t.Helper()
	w, err := d.Create(m)
	if err != nil {
		t.Fatal(err)
	}
	for p := body; len(p) > 0; {
		n := min(len(p), 7000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	e, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readAllBody(t testing.TB, d *Store, e *Entry) []byte {
	t.Helper()
	r, err := e.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitLoaded(t testing.TB, d *Store) {
	t.Helper()
	select {
	case <-d.Loaded():
	case <-time.After(20 * time.Second):
		t.Fatal("index rebuild did not finish")
	}
}

func randomBody(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileOf(d *Store, key string) string { return d.path(KeyHash(key)) }

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tmp []string
	for _, n := range names {
		if strings.HasPrefix(n, tempPrefix) {
			tmp = append(tmp, n)
		}
	}
	return tmp
}

func TestDiskRoundTrip(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	bodies := map[string][]byte{
		"empty": {},
		"small": []byte("hello, tile"),
		"large": randomBody(1, 300<<10),
	}
	for key, body := range bodies {
		m := testMeta(key, int64(len(body)))
		put(t, d, m, body)
		// Get gives the length the header was written without.
		m.Header.Set("Content-Length", strconv.Itoa(len(body)))

		e, err := d.Get(key)
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if e.File.path == "" || e.File.IsZero() {
			t.Fatalf("disk entry should have its File set: %+v", e)
		}
		if e.Key != key || e.Status != 200 || !e.StoredAt.Equal(m.StoredAt) || !e.ValidUntil.Equal(m.ValidUntil) ||
			e.StaleWhileRevalidate != m.StaleWhileRevalidate || e.StaleIfError != m.StaleIfError ||
			e.BodySize != int64(len(body)) || !reflect.DeepEqual(e.Header, m.Header) {
			t.Fatalf("meta changed in the round trip:\n got %+v\nwant %+v", e.Meta, m)
		}
		for name, vals := range e.Header {
			if len(vals) != cap(vals) {
				t.Errorf("header %s not clipped: len %d cap %d", name, len(vals), cap(vals))
			}
		}
		if got, err := e.File.Load(); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("LoadBody(%q) = %d bytes, %v", key, len(got), err)
		}
		if got := readAllBody(t, d, e); !bytes.Equal(got, body) {
			t.Fatalf("OpenBody(%q) read %d bytes, want %d", key, len(got), len(body))
		}
	}

	// nginx layout: levels 1:2 name c/29/<md5> after the last hex digits.
	sum := md5.Sum([]byte("small"))
	h := hex.EncodeToString(sum[:])
	want := filepath.Join(dir, h[31:], h[29:31], h)
	if e, _ := d.Get("small"); e.File.path != want {
		t.Fatalf("file path %s, want %s", e.File.path, want)
	}
	// Nothing in the file ties it to this folder or host.
	raw, _ := os.ReadFile(want)
	host, _ := os.Hostname()
	if bytes.Contains(raw, []byte(dir)) || (host != "" && bytes.Contains(raw, []byte(host))) {
		t.Fatal("entry file contains the zone path or host name")
	}

	// Headers are under a block: two one-block files and the large one.
	if st, want := d.Stats(), 2*blockSize+accountedSize(300<<10+1); st.Entries != 3 || st.Bytes != want {
		t.Fatalf("stats after 3 writes: %+v, want 3 entries, %d bytes", st, want)
	}
	if _, err := d.Get("absent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

func TestDiskUnknownBodySize(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	body := randomBody(2, 100000)
	e := put(t, d, testMeta("k", -1), body)
	if e.BodySize != int64(len(body)) {
		t.Fatalf("Commit set BodySize %d, want %d", e.BodySize, len(body))
	}
	got, err := d.Get("k")
	if err != nil || got.BodySize != int64(len(body)) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if b, err := got.File.Load(); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("LoadBody: %v", err)
	}
}

func TestDiskBodySizeMismatch(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})

	// Short: the backend closed early.
	w, err := d.Create(testMeta("short", 10))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("12345"))
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit of a short body succeeded")
	}
	// Long.
	w, err = d.Create(testMeta("long", 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("12345")); err == nil {
		t.Fatal("Write past the announced size succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit after a failed Write succeeded")
	}
	for _, key := range []string{"short", "long"} {
		if _, err := d.Get(key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
	}
	if n := d.Stats().WriteErrors["body_size"]; n != 2 {
		t.Errorf("body_size write errors = %d, want 2", n)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}

	// Abort leaves nothing.
	w, _ = d.Create(testMeta("aborted", -1))
	w.Write([]byte("partial"))
	w.Abort()
	w.Abort()
	if _, err := d.Get("aborted"); !errors.Is(err, ErrNotFound) {
		t.Errorf("aborted entry visible: %v", err)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left after Abort: %v", tmp)
	}
}

func TestDiskRestart(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	bodies := map[string][]byte{}
	for i := range n {
		key := fmt.Sprintf("https://idr.example/webgateway/render_image_region/%d/0/0/?tile=%d", i, i)
		bodies[key] = randomBody(uint64(i), 100+i*97)
		put(t, d, testMeta(key, -1), bodies[key])
	}
	want := d.Stats()
	d.Close()
	// A crash leftover in the root.
	os.WriteFile(filepath.Join(dir, tempPrefix+"crashed"), []byte("half"), 0o644)

	// Reopen with a loader that barely moves: Get must find entries on its own.
	slow := openStore(t, dir, Options{LoaderFiles: 1, LoaderSleep: time.Hour})
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("stale temporary files not cleaned at start: %v", tmp)
	}
	if !slow.Stats().Loading {
		t.Fatal("store should still be loading")
	}
	for key, body := range bodies {
		e, err := slow.Get(key)
		if err != nil {
			t.Fatalf("Get(%q) after restart: %v", key, err)
		}
		if got, err := e.File.Load(); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("LoadBody(%q) after restart: %v", key, err)
		}
	}
	if st := slow.Stats(); st.Entries != n || st.Bytes != want.Bytes {
		t.Fatalf("entries indexed by Get: %+v, want %d entries, %d bytes", st, n, want.Bytes)
	}
	slow.Close()

	// Reopen with a normal loader: the index is rebuilt without any Get.
	d2 := openStore(t, dir, fastLoader(Options{LoaderFiles: 7}))
	waitLoaded(t, d2)
	if st := d2.Stats(); st.Entries != n || st.Bytes != want.Bytes || st.Loading || st.CorruptRemovals != 0 {
		t.Fatalf("stats after rebuild: %+v, want %d entries, %d bytes", st, n, want.Bytes)
	}
	var keys []string
	d2.Walk(func(key string) bool {
		keys = append(keys, key)
		return true
	})
	if len(keys) != n {
		t.Fatalf("Walk saw %d keys, want %d", len(keys), n)
	}
	for _, k := range keys {
		if _, ok := bodies[k]; !ok {
			t.Fatalf("Walk returned unknown key %q", k)
		}
	}
}

// TestDiskMovedFolder checks that a zone folder copied elsewhere works.
func TestDiskMovedFolder(t *testing.T) {
	base := t.TempDir()
	d, _ := Open(filepath.Join(base, "a"), Options{})
	put(t, d, testMeta("k", -1), []byte("body"))
	d.Close()
	if err := os.Rename(filepath.Join(base, "a"), filepath.Join(base, "b")); err != nil {
		t.Fatal(err)
	}
	d2 := openStore(t, filepath.Join(base, "b"), Options{})
	e, err := d2.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := e.File.Load(); err != nil || string(b) != "body" {
		t.Fatalf("LoadBody = %q, %v", b, err)
	}
}

func TestDiskDamagedFiles(t *testing.T) {
	body := randomBody(3, 20000)
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		// getOK: the header is intact, the damage is found reading the body.
		getOK bool
	}{
		{"header byte", func(t *testing.T, p string) { flipByte(t, p, 70) }, false},
		{"fixed header byte", func(t *testing.T, p string) { flipByte(t, p, 33) }, false},
		{"magic", func(t *testing.T, p string) { flipByte(t, p, 0) }, false},
		{"body byte", func(t *testing.T, p string) { flipByte(t, p, -5000) }, true},
		{"last body byte", func(t *testing.T, p string) { flipByte(t, p, -5) }, true}, // before the table's one checksum
		{"block checksum", func(t *testing.T, p string) { flipByte(t, p, -1) }, true},
		{"truncated", func(t *testing.T, p string) { truncateBy(t, p, 1) }, false},
		{"truncated into header", func(t *testing.T, p string) { truncateTo(t, p, 40) }, false},
		{"empty file", func(t *testing.T, p string) { truncateTo(t, p, 0) }, false},
		{"trailing garbage", func(t *testing.T, p string) { appendBytes(t, p, []byte("x")) }, false},
		{"unknown version", func(t *testing.T, p string) { setVersion(t, p, entryVersion+1) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := openStore(t, t.TempDir(), Options{})
			put(t, d, testMeta("k", -1), body)
			path := fileOf(d, "k")
			tc.damage(t, path)

			e, err := d.Get("k")
			if tc.getOK {
				if err != nil {
					t.Fatalf("Get with intact header: %v", err)
				}
				if _, err := e.File.Load(); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("LoadBody = %v, want ErrCorrupt", err)
				}
			} else if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get = %v, want ErrNotFound", err)
			}
			if exists(path) {
				t.Fatal("damaged file not removed")
			}
			wantCorrupt := int64(1)
			if tc.name == "unknown version" {
				wantCorrupt = 0 // an older release's file: removed, not damage
			}
			if st := d.Stats(); st.CorruptRemovals != wantCorrupt || st.Entries != 0 || st.Bytes != 0 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

// TestDiskStreamDetectsCorruption checks BodyReader: a damaged block is
// never returned, in part or whole, whether the body is read whole or in a
// range; the file is removed at once.
func TestDiskStreamDetectsCorruption(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	body := randomBody(4, 5*bodyBlockSize+1000)
	damaged := int64(2*bodyBlockSize + 100) // in the third block

	// A whole read stops before the damaged block.
	e := put(t, d, testMeta("k", -1), body)
	flipByte(t, e.File.path, e.File.offset+damaged)
	r, err := e.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := io.Copy(&got, r)
	r.Close()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("streaming a damaged body: %v, want ErrCorrupt", err)
	}
	if n != 2*bodyBlockSize || !bytes.Equal(got.Bytes(), body[:n]) {
		t.Fatalf("%d bytes delivered, want the %d before the damaged block", n, 2*bodyBlockSize)
	}
	if exists(e.File.path) {
		t.Fatal("damaged file not removed")
	}

	// A range inside the damaged block fails before returning anything,
	// at Prepare (before a response is started); one elsewhere is served.
	e = put(t, d, testMeta("k", -1), body)
	flipByte(t, e.File.path, e.File.offset+damaged)
	r, err = e.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	r.Seek(4*bodyBlockSize+10, io.SeekStart)
	r.Limit(4*bodyBlockSize + 2058)
	if err := r.Prepare(); err != nil {
		t.Fatalf("Prepare of an intact block: %v", err)
	}
	if b, err := io.ReadAll(r); err != nil || !bytes.Equal(b, body[4*bodyBlockSize+10:4*bodyBlockSize+2058]) {
		t.Fatalf("range of an intact block: %d bytes, %v", len(b), err)
	}
	r.Seek(damaged-50, io.SeekStart)
	r.Limit(damaged + 2000)
	if err := r.Prepare(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Prepare of the damaged block = %v, want ErrCorrupt", err)
	}
	if k, err := r.Read(make([]byte, 10)); k != 0 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read after damage = %d, %v", k, err)
	}
	r.Close()
	if exists(e.File.path) {
		t.Fatal("damaged file not removed")
	}

	// Seeks and short reads across block boundaries give the body.
	e = put(t, d, testMeta("k2", -1), body)
	r2, err := e.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if end, _ := r2.Seek(0, io.SeekEnd); end != int64(len(body)) {
		t.Fatalf("Seek end = %d", end)
	}
	r2.Seek(bodyBlockSize-3, io.SeekStart)
	small := make([]byte, 7)
	if _, err := io.ReadFull(r2, small); err != nil || !bytes.Equal(small, body[bodyBlockSize-3:bodyBlockSize+4]) {
		t.Fatalf("read across a block boundary: %q, %v", small, err)
	}
	r2.Seek(0, io.SeekStart)
	all, err := io.ReadAll(r2)
	if err != nil || !bytes.Equal(all, body) {
		t.Fatalf("read after seeks: %d bytes, %v", len(all), err)
	}
}

func TestDiskKeyCollision(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	put(t, d, testMeta("a", -1), []byte("A"))
	// Pretend md5("b") == md5("a"): put a's file where b's belongs.
	raw, _ := os.ReadFile(fileOf(d, "a"))
	os.MkdirAll(filepath.Dir(fileOf(d, "b")), 0o755)
	os.WriteFile(fileOf(d, "b"), raw, 0o644)
	if _, err := d.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(b) = %v, want ErrNotFound", err)
	}
	if exists(fileOf(d, "b")) {
		t.Fatal("colliding file not removed")
	}
	if _, err := d.Get("a"); err != nil {
		t.Fatalf("Get(a): %v", err)
	}
}

func TestDiskLoaderRemovesDamaged(t *testing.T) {
	dir := t.TempDir()
	d, _ := Open(dir, Options{})
	put(t, d, testMeta("good", -1), []byte("good"))
	put(t, d, testMeta("bad", -1), []byte("bad"))
	d.Close()
	flipByte(t, fileOf(d, "bad"), 66)
	d2 := openStore(t, dir, fastLoader(Options{}))
	waitLoaded(t, d2)
	if st := d2.Stats(); st.Entries != 1 || st.CorruptRemovals != 1 {
		t.Fatalf("stats after rebuild: %+v", st)
	}
	if exists(fileOf(d2, "bad")) {
		t.Fatal("loader kept a damaged file")
	}
}

func TestDiskDeleteAndClear(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	for i := range 20 {
		put(t, d, testMeta(fmt.Sprint(i), -1), []byte("x"))
	}
	if existed, err := d.Delete("3"); err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	if existed, err := d.Delete("never stored"); err != nil || existed {
		t.Fatalf("Delete of a key never stored = %v, %v", existed, err)
	}
	if _, err := d.Get("3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if st := d.Stats(); st.Entries != 19 {
		t.Fatalf("entries after Delete = %d", st.Entries)
	}
	// A writer in flight during Clear still commits afterwards.
	w, _ := d.Create(testMeta("inflight", -1))
	w.Write([]byte("y"))
	if n, err := d.Clear(); err != nil || n != 19 {
		t.Fatalf("Clear = %d, %v; want 19 entries", n, err)
	}
	for i := range 20 {
		if _, err := d.Get(fmt.Sprint(i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%d) after Clear = %v", i, err)
		}
	}
	if st := d.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("stats after Clear: %+v", st)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatalf("Commit after Clear: %v", err)
	}
	if _, err := d.Get("inflight"); err != nil {
		t.Fatalf("Get(inflight): %v", err)
	}
	testkit.Eventually(t, 20*time.Second, testkit.Holds("flushed folders to be deleted", func() bool {
		names, _ := readDirNames(dir)
		return !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, trashPrefix) })
	}))
}

func TestDiskEvictionLRU(t *testing.T) {
	clock := newFakeClock()
	const maxSize = 10 * blockSize
	d := openStore(t, t.TempDir(), withClock(Options{MaxSize: maxSize}, clock))
	body := make([]byte, 3000) // one block with its header
	for i := range 10 {
		put(t, d, testMeta(fmt.Sprintf("k%d", i), -1), body)
		clock.Advance(time.Second)
	}
	if st := d.Stats(); st.Bytes != maxSize || st.Evictions != 0 {
		t.Fatalf("at the limit: %+v", st)
	}
	// Reading k0 and k1 makes k2 and k3 the least recently used.
	for _, k := range []string{"k0", "k1"} {
		if _, err := d.Get(k); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	put(t, d, testMeta("k10", -1), body)
	clock.Advance(time.Second)
	put(t, d, testMeta("k11", -1), body)
	testkit.Eventually(t, 20*time.Second, testkit.Holds("eviction", func() bool { return d.Stats().Bytes <= maxSize }))
	for _, k := range []string{"k2", "k3"} {
		if _, err := d.Get(k); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s still there: %v", k, err)
		}
	}
	for _, k := range []string{"k0", "k1", "k4", "k9", "k10", "k11"} {
		if _, err := d.Get(k); err != nil {
			t.Errorf("%s evicted: %v", k, err)
		}
	}
	if st := d.Stats(); st.Evictions != 2 || st.Entries != 10 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDiskMaxSizeBound(t *testing.T) {
	dir := t.TempDir()
	const maxSize = 1 << 20
	d := openStore(t, dir, Options{MaxSize: maxSize, ManagerFiles: 5, ManagerSleep: time.Millisecond})
	for i := range 300 {
		put(t, d, testMeta(fmt.Sprint(i), -1), randomBody(uint64(i), 1000+i*50))
	}
	testkit.Eventually(t, 20*time.Second, testkit.Holds("the zone to shrink under max size", func() bool { return d.Stats().Bytes <= maxSize }))
	// What is really on disk agrees with the counters.
	var onDisk, files int64
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && isHexName(de.Name(), 2*md5.Size) {
			fi, _ := de.Info()
			onDisk += accountedSize(fi.Size())
			files++
		}
		return nil
	})
	st := d.Stats()
	if onDisk > maxSize || onDisk != st.Bytes || files != st.Entries {
		t.Fatalf("on disk %d bytes in %d files; stats %+v", onDisk, files, st)
	}
	if st.Evictions == 0 || st.Evictions+st.Entries != 300 {
		t.Fatalf("evictions %d + entries %d != 300", st.Evictions, st.Entries)
	}
	// The most recent entry survives.
	if _, err := d.Get("299"); err != nil {
		t.Fatal(err)
	}
	// A body larger than the zone is refused up front.
	if _, err := d.Create(testMeta("huge", maxSize+1)); err == nil {
		t.Fatal("Create of a body over max size succeeded")
	}
	w, err := d.Create(testMeta("huge, size unknown", -1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, maxSize+1)); err == nil {
		t.Fatal("Write of a body over max size succeeded")
	}
	w.Abort()
	if n := d.Stats().WriteErrors["too_large"]; n != 2 {
		t.Fatalf("too_large = %d", n)
	}
}

func TestDiskInactive(t *testing.T) {
	clock := newFakeClock()
	d := openStore(t, t.TempDir(), withClock(Options{Inactive: time.Hour}, clock))
	put(t, d, testMeta("read", -1), []byte("a"))
	put(t, d, testMeta("unread", -1), []byte("b"))
	clock.Advance(30 * time.Minute)
	if _, err := d.Get("read"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(40 * time.Minute)
	d.kick()
	testkit.Eventually(t, 20*time.Second, testkit.Holds("inactive removal", func() bool { return d.Stats().InactiveRemovals == 1 }))
	if _, err := d.Get("unread"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inactive entry still there: %v", err)
	}
	if _, err := d.Get("read"); err != nil {
		t.Fatalf("recently read entry removed: %v", err)
	}
	// Freshness does not matter: a fresh entry goes too once inactive.
	clock.Advance(2 * time.Hour)
	d.kick()
	testkit.Eventually(t, 20*time.Second, testkit.Holds("second inactive removal", func() bool { return d.Stats().InactiveRemovals == 2 }))
}

func TestDiskFolderEmptiedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	for i := range 30 {
		put(t, d, testMeta(fmt.Sprint(i), -1), []byte("x"))
	}
	names, _ := readDirNames(dir)
	for _, n := range names {
		os.RemoveAll(filepath.Join(dir, n))
	}
	for i := range 30 {
		if _, err := d.Get(fmt.Sprint(i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after the flush = %v", err)
		}
	}
	if st := d.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("stale index after the flush: %+v", st)
	}
	for i := range 30 {
		put(t, d, testMeta(fmt.Sprint(i), -1), []byte("new"))
		if e, err := d.Get(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		} else if b, _ := e.File.Load(); string(b) != "new" {
			t.Fatalf("body %q", b)
		}
	}
	// Even the zone folder itself may go.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	put(t, d, testMeta("after", -1), []byte("y"))
	if _, err := d.Get("after"); err != nil {
		t.Fatal(err)
	}
}

func TestDiskUnwritable(t *testing.T) {
	dir := t.TempDir()
	var logs sync.Map // kind of message -> count
	logger := func(msg string, err error) {
		n, _ := logs.LoadOrStore(msg, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	d := openStore(t, dir, Options{Logger: logger})
	// Tests run as root, so chmod does not stop us: put a file where the
	// key's level-1 subfolder must go.
	key := "blocked"
	level1 := filepath.Join(dir, d.relPath(KeyHash(key))[:1])
	if err := os.WriteFile(level1, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		w, err := d.Create(testMeta(key, 4))
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("body"))
		if _, err := w.Commit(); err == nil {
			t.Fatal("Commit into a blocked subfolder succeeded")
		}
	}
	if n := d.Stats().WriteErrors["io"]; n != 5 {
		t.Fatalf("io write errors = %d, want 5", n)
	}
	calls := 0
	logs.Range(func(k, v any) bool {
		if strings.Contains(k.(string), "cannot store") {
			calls += int(v.(*atomic.Int64).Load())
		}
		return true
	})
	if calls != 1 {
		t.Fatalf("logged %d times in a burst of 5 failures, want 1", calls)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	// Other keys still work.
	var other string
	for i := 0; ; i++ {
		other = fmt.Sprint("other", i)
		if filepath.Join(dir, d.relPath(KeyHash(other))[:1]) != level1 {
			break
		}
	}
	put(t, d, testMeta(other, -1), []byte("ok"))

	// The zone folder replaced by a file: Create fails, nothing panics.
	os.RemoveAll(dir)
	os.WriteFile(dir, []byte("not a folder"), 0o644)
	t.Cleanup(func() { os.Remove(dir) })
	if _, err := d.Create(testMeta("k", -1)); err == nil {
		t.Fatal("Create in a zone folder that is a file succeeded")
	}
	if _, err := d.Get(other); err == nil {
		t.Fatal("Get found an entry in a zone folder that is a file")
	}
}

func TestDiskConcurrentOverwrite(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	version := func(v int) (Meta, []byte) {
		m := testMeta("k", -1)
		m.Header = http.Header{"X-Version": {fmt.Sprint(v)}}
		return m, bytes.Repeat([]byte{byte(v)}, 1000+(v*7919)%60000)
	}
	m, b := version(0)
	put(t, d, m, b)

	// A reader that opened the body keeps the old version across an overwrite.
	e, _ := d.Get("k")
	r, err := e.File.Open()
	if err != nil {
		t.Fatal(err)
	}
	m1, b1 := version(1)
	put(t, d, m1, b1)
	old, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(old, b) {
		t.Fatalf("open reader saw %d bytes, %v after an overwrite", len(old), err)
	}
	// An entry read before the overwrite but opened after is refused, not
	// paired with the new body.
	if _, err := e.File.Open(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody of a replaced entry = %v, want ErrNotFound", err)
	}

	const versions = 300
	var wg sync.WaitGroup
	var stop atomic.Bool
	var reads, replaced atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				e, err := d.Get("k")
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				var v int
				fmt.Sscan(e.Header.Get("X-Version"), &v)
				_, want := version(v)
				r, err := e.File.Open()
				if errors.Is(err, ErrNotFound) {
					replaced.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("OpenBody: %v", err)
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("version %d: read %d bytes (want %d), %v: mixed or damaged", v, len(got), len(want), err)
					return
				}
				reads.Add(1)
			}
		})
	}
	for v := 2; v < versions; v++ {
		m, b := version(v)
		put(t, d, m, b)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d verified reads, %d entries replaced between Get and OpenBody", reads.Load(), replaced.Load())
	if st := d.Stats(); st.Entries != 1 || st.CorruptRemovals != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDiskLevels(t *testing.T) {
	for _, levels := range [][]int{{1}, {2}, {1, 2}, {2, 2}, {1, 1, 2}} {
		dir := t.TempDir()
		d := openStore(t, dir, Options{Levels: levels})
		put(t, d, testMeta("k", -1), []byte("v"))
		rel, _ := filepath.Rel(dir, fileOf(d, "k"))
		if parts := strings.Split(rel, string(filepath.Separator)); len(parts) != len(levels)+1 {
			t.Fatalf("levels %v: path %s", levels, rel)
		}
		d.Close()
		d2 := openStore(t, dir, fastLoader(Options{Levels: levels}))
		waitLoaded(t, d2)
		if d2.Stats().Entries != 1 {
			t.Fatalf("levels %v: not found by the loader", levels)
		}
	}
	for _, bad := range [][]int{{3}, {0}, {1, 2, 2, 1}} {
		if _, err := Open(t.TempDir(), Options{Levels: bad}); err == nil {
			t.Errorf("levels %v accepted", bad)
		}
	}
}

// File damage helpers. Negative offsets count from the end.

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x40
	rewrite(t, path, b)
}

func truncateBy(t *testing.T, path string, n int64) {
	fi, _ := os.Stat(path)
	truncateTo(t, path, fi.Size()-n)
}

func truncateTo(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, extra []byte) {
	b, _ := os.ReadFile(path)
	rewrite(t, path, append(b, extra...))
}

// setVersion writes another format version with a valid checksum.
func setVersion(t *testing.T, path string, v uint16) {
	b, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint16(b[4:], v)
	hl := binary.LittleEndian.Uint32(b[8:])
	binary.LittleEndian.PutUint32(b[12:], headerChecksum(b[:hl]))
	rewrite(t, path, b)
}

// rewrite changes a file in place (same inode), as disk damage would.
func rewrite(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestDiskOpenTwice(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, Options{})
	if _, err := Open(dir+"/.", Options{}); err == nil {
		t.Fatal("a zone folder was opened twice in one process")
	}
	// A writer in flight (this process's temporary file) survives another
	// store's start-up; a crashed process's does not.
	w, err := d.Create(testMeta("inflight", -1))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, tempPrefix+"0123456789ab-crashed"), nil, 0o644)
	d.Close()
	d2 := openStore(t, dir, Options{})
	if tmp := tempFiles(t, dir); len(tmp) != 1 || !strings.HasPrefix(tmp[0], tempPrefix+processToken) {
		t.Fatalf("temporary files after start: %v", tmp)
	}
	w.Write([]byte("x"))
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Get("inflight"); err != nil {
		t.Fatal(err)
	}
}
