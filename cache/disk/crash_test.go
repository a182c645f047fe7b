package disk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-runs this test binary as a writer process and kills it
// with SIGKILL in the middle of its writes.
const crashHelperEnv = "EDGECACHE_DISK_CRASH_HELPER_DIR"

const crashKeys = 40

// crashBody is the body the helper writes for a key at a version; the
// checker recomputes it from the version stored in the entry's header.
func crashBody(key string, version int) []byte {
	n := 1 + (version*104729)%(600<<10)
	b := make([]byte, n)
	seed := byte(len(key)*31 + version*17)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// TestDiskCrashHelper is the writer process; it does nothing in a normal run.
func TestDiskCrashHelper(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestDiskKill9")
	}
	first, _ := strconv.Atoi(os.Getenv(crashHelperEnv + "_FIRST"))
	d, err := Open(dir, Options{MaxSize: 8 << 20, ManagerSleep: time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for v := first; ; v++ {
		key := fmt.Sprintf("key-%d", v%crashKeys)
		body := crashBody(key, v)
		m := testMeta(key, int64(len(body)))
		m.Header.Set("X-Version", strconv.Itoa(v))
		if v%3 == 0 {
			m.BodySize = -1
		}
		w, err := d.Create(m)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for off := 0; off < len(body); {
			n := min(len(body)-off, 8192)
			if _, err := w.Write(body[off : off+n]); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			if off == 0 && len(body) > 256<<10 {
				fmt.Println("writing", v) // the parent may kill us now
			}
			off += n
		}
		if _, err := w.Commit(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", v)
	}
}

func TestDiskKill9(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	next, temps := 0, 0
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDiskCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir, fmt.Sprintf("%s_FIRST=%d", crashHelperEnv, next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Let it commit a few entries, then kill it: in even rounds just
		// after it started writing a body, in odd rounds at a random moment.
		sc := bufio.NewScanner(out)
		commits := 0
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "error") {
				t.Fatalf("helper: %s", line)
			}
			if v, ok := strings.CutPrefix(line, "committed "); ok {
				commits++
				next, _ = strconv.Atoi(v)
				next++
			}
			if commits >= 15 && (round%2 == 1 || strings.HasPrefix(line, "writing")) {
				break
			}
		}
		if commits < 15 {
			t.Fatalf("helper stopped after %d commits", commits)
		}
		if round%2 == 1 {
			time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		go func() { // drain so the helper never blocks on a full pipe
			for sc.Scan() {
			}
		}()
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: helper did not die of SIGKILL: %v", round, err)
		}
		next += crashKeys // skip versions the helper may have written unreported
		temps += checkCrashedZone(t, dir)
	}
	if temps == 0 {
		t.Fatal("no kill landed in the middle of a write")
	}
}

// checkCrashedZone opens a zone a writer was killed in: every Get misses or
// returns an entry whose body verifies and is the one written for it.
// It returns how many temporary files the crash left.
func checkCrashedZone(t *testing.T, dir string) int {
	t.Helper()
	hadTemp := len(tempFiles(t, dir))
	d, err := Open(dir, Options{LoaderSleep: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files survived the restart: %v", tmp)
	}
	found := 0
	for i := range crashKeys {
		key := fmt.Sprintf("key-%d", i)
		e, err := d.Get(key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		v, err := strconv.Atoi(e.Header.Get("X-Version"))
		if err != nil {
			t.Fatalf("%s: bad version header %q", key, e.Header.Get("X-Version"))
		}
		body, err := e.File.Load()
		if err != nil {
			t.Fatalf("LoadBody(%s) v%d: %v", key, v, err)
		}
		if !bytes.Equal(body, crashBody(key, v)) {
			t.Fatalf("%s v%d: body is not the one written", key, v)
		}
		readAllBody(t, d, e)
		found++
	}
	waitLoaded(t, d)
	if st := d.Stats(); st.CorruptRemovals != 0 {
		t.Fatalf("damaged entries after kill -9: %+v", st)
	}
	t.Logf("after kill -9: %d of %d keys found, all verified; %d temporary files left by the crash", found, crashKeys, hadTemp)
	if found == 0 {
		t.Fatal("no entry survived the crash")
	}
	return hadTemp
}
