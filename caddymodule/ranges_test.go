package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

// rangeSites serves each path's registered body with a Content-Length, and
// caches it through two sites: MEM (a memory zone) and DISK (a disk zone
// whose memory tier holds nothing over 1 byte, so hits stream from disk).
type rangeSites struct {
	*site
	be     *testkit.Backend
	dir    string
	bodies sync.Map // path -> []byte
}

func startRangeSites(t testing.TB) *rangeSites {
	t.Helper()
	rs := &rangeSites{dir: t.TempDir()}
	rs.be = testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		v, ok := rs.bodies.Load(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		body := v.([]byte)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Etag", `"v1"`)
		w.Write(body)
	})
	rs.site = startCaddy(t, globalOptions(`zone mem 64MiB
		zone disk {
			memory 64MiB
			memory_entry_max 1B
			path `+rs.dir+`
		}`)+`
http://127.0.0.1:$MEM {
	edge_cache {
		zone mem
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
http://127.0.0.1:$DISK {
	edge_cache {
		zone disk
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`, rs.be, "MEM", "DISK")
	return rs
}

// rangeAnswer is what a client sees of a range request, cache status aside.
type rangeAnswer struct {
	Status  int
	Headers string // the headers that matter, one line each
	Body    []byte
	Err     error
}

var rangeHeaders = []string{"Content-Length", "Content-Range", "Content-Type", "Content-Encoding", "Accept-Ranges", "Etag"}

func (rs *rangeSites) ask(t testing.TB, listener, method, path string, header ...string) (rangeAnswer, string) {
	t.Helper()
	req, err := http.NewRequest(method, rs.url(listener, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[header[i]] = []string{header[i+1]}
	}
	res, err := rs.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s %v: %v", method, path, header, err)
	}
	defer res.Body.Close()
	a := rangeAnswer{Status: res.StatusCode}
	a.Body, a.Err = io.ReadAll(res.Body)
	var hs []string
	for _, name := range rangeHeaders {
		hs = append(hs, name+": "+strings.Join(res.Header.Values(name), ", "))
	}
	a.Headers = strings.Join(hs, "\n")
	return a, res.Header.Get("X-Cache-Status")
}

// checkSameAnswer asks for a new path holding body with the given request
// headers, through each site: as a MISS, then as a HIT, and on disk once
// more after a whole read verified the file. All five answers must be the
// same, and right.
func (rs *rangeSites) checkSameAnswer(t testing.TB, path string, body []byte, method string, header ...string) {
	t.Helper()
	rs.bodies.Store(path, body)
	var first rangeAnswer
	for i, step := range []struct{ listener, status string }{{"MEM", "MISS"}, {"MEM", "HIT"}, {"DISK", "MISS"}, {"DISK", "HIT"}} {
		a, status := rs.ask(t, step.listener, method, path, header...)
		if status != step.status {
			t.Fatalf("%s %s via %s: %s, want %s", method, header, step.listener, status, step.status)
		}
		if a.Err != nil {
			t.Fatalf("%s %s via %s %s: reading the body: %v", method, header, step.listener, status, a.Err)
		}
		if i == 0 {
			first = a
			checkRangeAnswer(t, a, body, method)
			continue
		}
		if a.Status != first.Status || a.Headers != first.Headers || !bytes.Equal(a.Body, first.Body) {
			t.Fatalf("%s %q of %d bytes: %s %s answered\n%d\n%s\n%d bytes\nbut MEM MISS answered\n%d\n%s\n%d bytes",
				method, header, len(body), step.listener, step.status, a.Status, a.Headers, len(a.Body), first.Status, first.Headers, len(first.Body))
		}
		if i == 3 {
			// Once a whole read has verified the entry file, its hits
			// are sent unread (disk.BodyReader.Trusted): the same again.
			if _, status := rs.ask(t, "DISK", http.MethodGet, path); status != "HIT" {
				t.Fatalf("whole GET via DISK: %s, want HIT", status)
			}
			if a, _ = rs.ask(t, "DISK", method, path, header...); a.Err != nil || a.Status != first.Status || a.Headers != first.Headers || !bytes.Equal(a.Body, first.Body) {
				t.Fatalf("%s %q of %d bytes: DISK HIT once verified answered\n%d\n%s\n%d bytes (%v)\nbut MEM MISS answered\n%d\n%s\n%d bytes",
					method, header, len(body), a.Status, a.Headers, len(a.Body), a.Err, first.Status, first.Headers, len(first.Body))
			}
		}
	}
}

// checkRangeAnswer checks that an answer is consistent with the body.
func checkRangeAnswer(t testing.TB, a rangeAnswer, body []byte, method string) {
	t.Helper()
	want := body
	switch a.Status {
	case http.StatusOK:
	case http.StatusPartialContent:
		var start, end, size int64
		if _, err := fmt.Sscanf(headerLine(a.Headers, "Content-Range"), "bytes %d-%d/%d", &start, &end, &size); err != nil ||
			size != int64(len(body)) || start < 0 || end < start || end >= size {
			t.Fatalf("206 with Content-Range %q for %d bytes", headerLine(a.Headers, "Content-Range"), len(body))
		}
		want = body[start : end+1]
	case http.StatusRequestedRangeNotSatisfiable:
		if got := headerLine(a.Headers, "Content-Range"); got != "bytes */"+strconv.Itoa(len(body)) {
			t.Fatalf("416 with Content-Range %q for %d bytes", got, len(body))
		}
		want = nil
	default:
		t.Fatalf("status %d", a.Status)
	}
	if method == http.MethodHead {
		want = nil
	}
	if !bytes.Equal(a.Body, want) {
		t.Fatalf("status %d: %d body bytes, not the %d expected", a.Status, len(a.Body), len(want))
	}
}

func headerLine(headers, name string) string {
	for line := range strings.Lines(headers) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), name+": "); ok {
			return v
		}
	}
	return ""
}

func TestRangeSameOnHitAndMiss(t *testing.T) {
	rs := startRangeSites(t)
	for i, tc := range []struct {
		size   int
		method string
		header []string
	}{
		{10240, "GET", []string{"Range", "bytes=-0"}}, // net/http: 206 with "bytes 10240-10239/10240"
		{0, "GET", []string{"Range", "bytes=0-"}},     // net/http: 200
		{0, "GET", []string{"Range", "bytes=-5"}},
		{10240, "HEAD", []string{"Range", "bytes=0-99"}},
		{10240, "GET", []string{"Range", "bytes=0-99"}},
		{200000, "GET", []string{"Range", "bytes=65530-131080"}}, // across blocks
		{10240, "GET", []string{"Range", "bytes=0-9,5-20"}},      // merged
		{10240, "GET", []string{"Range", "bytes=0-9,20-29"}},     // several parts: whole
		{10240, "GET", []string{"Range", "bytes=0-9,20000-"}},    // one satisfiable
		{10240, "GET", []string{"Range", "bytes=+1-2"}},
		{10240, "GET", []string{"Range", "BYTES=1-2"}},
		{10240, "GET", []string{"Range", "bytes=1-2,"}},
		{10240, "GET", []string{"Range", "bytes=99999999999999999999-"}},
		{10240, "GET", []string{"Range", "bytes=5-99999999999999999999"}},
		{10240, "GET", []string{"Range", "bytes=0-1", "If-Range", `"v1"`}},
		{10240, "GET", []string{"Range", "bytes=0-1", "If-Range", `"v2"`}},
		{10240, "GET", []string{"Range", "bytes=0-1", "If-Range", `W/"v1"`}},
	} {
		rs.checkSameAnswer(t, "/case/"+strconv.Itoa(i), sizedBody(tc.size), tc.method, tc.header...)
	}
}

// FuzzRangeHitMiss: any body, any Range header: a MISS and a HIT (from
// memory, from disk) give the same status, headers and bytes.
func FuzzRangeHitMiss(f *testing.F) {
	for _, seed := range []struct {
		size uint32
		spec string
	}{
		{10240, "bytes=-0"}, {0, "bytes=0-"}, {200000, "bytes=65530-131080"}, {100, "bytes=0-1,4-5"},
		{100, "bytes=0-10,5-20"}, {36, "bytes=5-2"}, {36, "bytes= 1-2 , 3-4"}, {1000, "bytes=-100000000000000000000"},
	} {
		f.Add(seed.size, seed.spec)
	}
	rs := startRangeSites(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, size uint32, spec string) {
		size %= 300 << 10
		for i := 0; i < len(spec); i++ {
			if c := spec[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				t.Skip("not a valid header value")
			}
		}
		rs.checkSameAnswer(t, "/fuzz/"+strconv.FormatInt(n.Add(1), 10), sizedBody(int(size)), http.MethodGet, "Range", spec)
	})
}

// entryFiles lists the entry files (named by the MD5 of their key) under a
// zone folder.
func entryFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && len(d.Name()) == 32 && strings.Trim(d.Name(), "0123456789abcdef") == "" {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// flipBodyByte flips the byte at body offset off in the only entry file,
// found by its first bytes (whatever the file's layout).
func flipBodyByte(t testing.TB, dir string, body []byte, off int) {
	t.Helper()
	files := entryFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d entry files, want 1", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, body[:256])
	if at < 0 {
		t.Fatal("body not found in the entry file")
	}
	b[at+off] ^= 0x40
	f, err := os.OpenFile(files[0], os.O_WRONLY, 0) // in place, as disk damage
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDiskEntryNeverServed: a flipped byte in a 5 MiB disk entry is
// found by any request that reads its block, range or whole; before the
// response starts it is a MISS (the right bytes from the backend), after
// it the response is cut; the entry is removed either way.
func TestDamagedDiskEntryNeverServed(t *testing.T) {
	rs := startRangeSites(t)
	body := make([]byte, 5<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>8)
	}
	const path = "/big"
	rs.bodies.Store(path, body)
	if a, status := rs.ask(t, "DISK", "GET", path); status != "MISS" || !bytes.Equal(a.Body, body) {
		t.Fatalf("priming: %s, %d bytes", status, len(a.Body))
	}

	// The case: damage in the first 2 KiB, then a range of them.
	flipBodyByte(t, rs.dir, body, 1000)
	a, status := rs.ask(t, "DISK", "GET", path, "Range", "bytes=0-2047")
	if a.Status != http.StatusPartialContent || !bytes.Equal(a.Body, body[:2048]) || status != "MISS" {
		t.Fatalf("range over a damaged block: %d %s, right bytes: %v", a.Status, status, bytes.Equal(a.Body, body[:2048]))
	}
	if a, status = rs.ask(t, "DISK", "GET", path, "Range", "bytes=0-2047"); status != "HIT" || !bytes.Equal(a.Body, body[:2048]) {
		t.Fatalf("after the refetch: %s, right bytes: %v", status, bytes.Equal(a.Body, body[:2048]))
	}

	// Damage far into the body: a range elsewhere is served, a whole
	// response is cut short, never complete-looking; then it is a miss.
	flipBodyByte(t, rs.dir, body, 3<<20)
	if a, status = rs.ask(t, "DISK", "GET", path, "Range", "bytes=100-199"); status != "HIT" || !bytes.Equal(a.Body, body[100:200]) {
		t.Fatalf("range of an intact block: %s, right bytes: %v", status, bytes.Equal(a.Body, body[100:200]))
	}
	a, status = rs.ask(t, "DISK", "GET", path)
	if status != "HIT" || a.Err == nil || len(a.Body) >= len(body) || !bytes.Equal(a.Body, body[:len(a.Body)]) {
		t.Fatalf("whole damaged body: %s, %d of %d bytes, error %v", status, len(a.Body), len(body), a.Err)
	}
	if a, status = rs.ask(t, "DISK", "GET", path); status != "MISS" || !bytes.Equal(a.Body, body) {
		t.Fatalf("after the cut: %s, %d bytes", status, len(a.Body))
	}
}
