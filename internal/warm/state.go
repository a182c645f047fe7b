package warm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bits-and-blooms/bitset"
)

// The state file is an append-only log: a header line naming the list's
// fingerprint, then the number of each line done, one per line. It is
// synced every stateSyncInterval, so a crash loses at most that much
// progress (those URLs are fetched again). A last line without its newline
// was cut by a crash and is ignored, as is any line that is not a number of
// the list.
const (
	stateHeaderPrefix = "edgecache-warm-state v1 "
	stateSyncInterval = time.Second
)

// loadState reads the lines done from a state file written for a list with
// the given fingerprint. It returns the size of the file's valid prefix
// (ending with a complete line): appends go after it. A missing file, or
// one cut before the end of its header, is an empty state.
func loadState(path string, list listInfo) (done *bitset.BitSet, validSize int64, err error) {
	done = bitset.New(uint(list.lines + 1))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return done, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	// drop a partial last line
	end := bytes.LastIndexByte(data, '\n') + 1
	if end == 0 {
		// a header cut by a crash, or some other file that must not be lost
		// (a cut header records nothing done, whatever list it was for)
		cut := string(data)
		if !strings.HasPrefix(cut, stateHeaderPrefix) && !strings.HasPrefix(stateHeaderPrefix, cut) {
			return nil, 0, fmt.Errorf("%s is not a warm state file; "+
				"give another --state file or use --restart to overwrite it", path)
		}
		return done, 0, nil
	}
	data = data[:end]
	header, rest, _ := bytes.Cut(data, []byte("\n"))
	fingerprint, ok := strings.CutPrefix(string(header), stateHeaderPrefix)
	if !ok {
		return nil, 0, fmt.Errorf("%s is not a warm state file (it does not start with %q); "+
			"give another --state file or use --restart to overwrite it", path, stateHeaderPrefix)
	}
	if fingerprint != list.fingerprint {
		return nil, 0, fmt.Errorf("state file %s was written for another content of the URL list "+
			"(the list changed since); use --restart to start over", path)
	}
	for line := range bytes.SplitSeq(rest, []byte("\n")) {
		n, err := strconv.Atoi(string(line))
		if err != nil || n < 1 || n > list.lines {
			continue
		}
		done.Set(uint(n))
	}
	return done, int64(end), nil
}

// stateLog appends done line numbers to a state file.
type stateLog struct {
	f        *os.File
	w        *bufio.Writer
	lastSync time.Time
}

// openStateLog opens the state file for appending after its first
// validSize bytes; if validSize is 0 the file is started anew with a header
// for the list.
func openStateLog(path string, validSize int64, list listInfo) (*stateLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(validSize); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(validSize, 0); err != nil {
		f.Close()
		return nil, err
	}
	s := &stateLog{f: f, w: bufio.NewWriter(f), lastSync: time.Now()}
	if validSize == 0 {
		s.w.WriteString(stateHeaderPrefix + list.fingerprint + "\n")
		if err := s.sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

// markDone records a line as done, syncing at intervals.
func (s *stateLog) markDone(num int) error {
	s.w.WriteString(strconv.Itoa(num))
	s.w.WriteByte('\n')
	if time.Since(s.lastSync) >= stateSyncInterval {
		return s.sync()
	}
	return nil
}

func (s *stateLog) sync() error {
	s.lastSync = time.Now()
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.f.Sync()
}

// Close syncs and closes the file.
func (s *stateLog) Close() error {
	err := s.sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
