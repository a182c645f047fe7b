package nginximport

import (
	"encoding/hex"
	"io/fs"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/edgecache/edgecache/internal/nginxcache"
)

// file is what the scan keeps of one nginx cache file: 40 bytes, so that a
// folder of millions of entries is listed in tens of megabytes. The path is
// rebuilt from the hash and the folder's levels; the rare file elsewhere
// (levels changed over the years) keeps its own path in odd.
type file struct {
	hash   [nginxcache.KeyLen]byte
	size   int64
	access int64 // last use, Unix ns: the later of atime and mtime
	mtime  int64 // when nginx stored it, Unix ns
	odd    int32 // index+1 into scan.odd, 0 when at its levels path
}

type scan struct {
	dir     string
	levels  []int
	files   []file
	odd     []string
	skipped map[string]int64
	bytes   int64
}

func (s *scan) path(f *file) string {
	if f.odd > 0 {
		return s.odd[f.odd-1]
	}
	return filepath.Join(s.dir, nginxcache.FileName(f.hash, s.levels))
}

// scanFolder lists the entry files of an nginx cache folder. Files whose
// name is not an MD5 are nginx's temporary files (a response being written,
// or left by a crash) or foreign: they are counted as skipped. Entries
// stored before since are skipped too.
func scanFolder(dir string, since time.Time) (*scan, error) {
	s := &scan{dir: dir, skipped: make(map[string]int64)}
	levelsKnown := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			s.skipped[ReasonUnreadable]++
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		var f file
		if len(name) != 2*nginxcache.KeyLen {
			s.skipped[ReasonTemp]++
			return nil
		}
		if _, err := hex.Decode(f.hash[:], []byte(name)); err != nil {
			s.skipped[ReasonTemp]++
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			s.skipped[ReasonUnreadable]++
			return nil
		}
		f.size = fi.Size()
		f.mtime = fi.ModTime().UnixNano()
		f.access = f.mtime
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if a := time.Unix(st.Atim.Unix()).UnixNano(); a > f.access {
				f.access = a
			}
		}
		if !since.IsZero() && f.mtime < since.UnixNano() {
			s.skipped[ReasonSince]++
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if !levelsKnown {
			s.levels, levelsKnown = levelsOf(rel), true
		}
		if rel != nginxcache.FileName(f.hash, s.levels) {
			s.odd = append(s.odd, path)
			f.odd = int32(len(s.odd))
		}
		s.files = append(s.files, f)
		s.bytes += f.size
		return nil
	})
	return s, err
}

// levelsOf reads nginx's levels from the relative path of an entry file:
// "c/29/b7f5..." is levels=1:2.
func levelsOf(rel string) []int {
	var levels []int
	for dir := filepath.Dir(rel); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
		levels = append([]int{len(filepath.Base(dir))}, levels...)
	}
	// Folders are named from the end of the hash: the first level is the
	// last characters, so the order read from the path is the order.
	return levels
}

// accountedSize is a file's size rounded up to 4 KiB blocks, as both nginx
// and edgecache count it against max_size.
func accountedSize(n int64) int64 { return (n + 4095) / 4096 * 4096 }

// selectWithin keeps the most recently used files that fit budget bytes
// (0: no bound) and returns how many were left out; the kept files are
// ordered least recently used first, the order to write them in so that
// the zone's own LRU order ends up as nginx's.
func (s *scan) selectWithin(budget int64) (left int64) {
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].access > s.files[j].access })
	if budget > 0 {
		var used int64
		keep := len(s.files)
		for i := range s.files {
			used += accountedSize(s.files[i].size)
			if used > budget {
				keep = i
				break
			}
		}
		left = int64(len(s.files) - keep)
		for _, f := range s.files[keep:] {
			s.bytes -= f.size
		}
		s.files = s.files[:keep]
	}
	for i, j := 0, len(s.files)-1; i < j; i, j = i+1, j-1 {
		s.files[i], s.files[j] = s.files[j], s.files[i]
	}
	return left
}
