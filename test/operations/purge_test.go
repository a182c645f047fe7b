package operations_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// versioned is a backend whose bodies carry a version number, raised before
// each purge: an answer with an older version after the purge returned was
// served from an entry the purge should have removed.
type versioned struct {
	*testkit.Backend
	version  atomic.Int64
	inFlight atomic.Int64
}

// versionedBody is "<path> v<version>\n", padded with bytes of the path to
// the size ending the path (/a/big3-1048576), if any.
func versionedBody(path string, version int64) []byte {
	head := fmt.Sprintf("%s v%d\n", path, version)
	size := 0
	if i := strings.LastIndexByte(path, '-'); i >= 0 {
		size, _ = strconv.Atoi(path[i+1:])
	}
	if size <= len(head) {
		return []byte(head)
	}
	return append([]byte(head), objectBody(objectPath(filepath.Base(path), size-len(head)))...)
}

func newVersioned(tb testing.TB) *versioned {
	v := &versioned{}
	v.Backend = newBackend(tb, func(w http.ResponseWriter, r *http.Request) {
		v.inFlight.Add(1)
		defer v.inFlight.Add(-1)
		body := versionedBody(r.URL.Path, v.version.Load())
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	return v
}

// settle waits until a whole round of the readers went by without a
// backend request: every key is stored, no fill is under way, so no answer
// of an older version can be stored after the next purge.
func (v *versioned) settle(tb testing.TB, readers *hammering) {
	tb.Helper()
	testkit.Eventually(tb, 20*time.Second, func() string {
		before := v.Requests()
		readers.rounds(tb, 1)
		if v.Requests() != before || v.inFlight.Load() != 0 {
			return "the readers still reach the backend"
		}
		return ""
	})
}

var versionLine = regexp.MustCompile(`^(\S+) v(\d+)\n`)

// answer is one reader's answer, for checking against the purges.
type answer struct {
	url     string
	start   time.Time
	version int64
	cache   string
}

// purgeCase is one purge and the keys it must remove.
type purgeCase struct {
	name   string
	api    *purgeBody // through POST /edge_cache/purge
	cli    []string   // through edgecache purge
	purged func(url string) bool
	count  int // entries the purge reports
}

type purgeBody struct {
	Zone   string `json:"zone,omitempty"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// TestPurgeUnderLoad purges one key, a prefix, a zone and everything, each
// through the admin API and through the CLI, while readers hammer every key
// of a disk zone and of a memory zone: once a purge has returned, no request
// for a purged key is answered from an entry stored before it, and keys it
// does not cover are not fetched again.
func TestPurgeUnderLoad(t *testing.T) {
	b := newVersioned(t)
	dir := t.TempDir()
	admin, diskPort, hotPort, churnPort := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		zone disk {
			memory 8MiB
			path %s
			max_size 64MiB
			inactive 1h
		}
		zone hot 8MiB
		zone churn {
			memory 1MiB
			path %s
			inactive 1h
		}
	}
}
`, admin, filepath.Join(dir, "zone"), filepath.Join(dir, "churn")) +
		cachedSite(diskPort, "disk", b.Addr(), "") + cachedSite(hotPort, "hot", b.Addr(), "") + cachedSite(churnPort, "churn", b.Addr(), "")
	p := newProxy(t, dir, cfg, admin, diskPort, hotPort, churnPort)
	diskSite, hotSite := fmt.Sprintf("http://127.0.0.1:%d", diskPort), fmt.Sprintf("http://127.0.0.1:%d", hotPort)
	churnSite := fmt.Sprintf("http://127.0.0.1:%d", churnPort)

	var urls []string
	for i := range 4 {
		urls = append(urls, fmt.Sprintf("%s/a/%d", diskSite, i), fmt.Sprintf("%s/b/%d", diskSite, i), fmt.Sprintf("%s/c/%d", hotSite, i))
	}
	// On disk only (over the memory tier's 512 KiB limit), and in both tiers.
	urls = append(urls, diskSite+"/a/big-1048576", diskSite+"/b/big-1048576", diskSite+"/a/mid-200000")
	// More than a 1 MiB memory tier holds: read from disk and promoted to
	// memory over and over.
	for i := range 12 {
		urls = append(urls, fmt.Sprintf("%s/b/churn%d-60000", churnSite, i))
	}
	inZone := func(site string) func(string) bool {
		return func(url string) bool { return strings.HasPrefix(url, site+"/") }
	}
	underPrefix := func(site, prefix string) func(string) bool {
		return func(url string) bool { return strings.HasPrefix(url, site+prefix) }
	}
	count := func(match func(string) bool) int {
		n := 0
		for _, u := range urls {
			if match(u) {
				n++
			}
		}
		return n
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", admin)
	cases := []purgeCase{
		// Nothing stored under it, in any zone: nothing purged, nothing counted.
		{name: "missing key (CLI)", cli: []string{"--key", "/nonexistent"}, purged: func(string) bool { return false }},
		{name: "missing prefix (API)", api: &purgeBody{Prefix: "/nonexistent/"}, purged: func(string) bool { return false }},
		{name: "key (API)", api: &purgeBody{Zone: "disk", Key: "/a/1"}, purged: func(u string) bool { return u == diskSite+"/a/1" }, count: 1},
		{name: "key (CLI)", cli: []string{"--zone", "disk", "--key", "/a/big-1048576"}, purged: func(u string) bool { return u == diskSite+"/a/big-1048576" }, count: 1},
		{name: "prefix (API)", api: &purgeBody{Zone: "disk", Prefix: "/a/"}, purged: underPrefix(diskSite, "/a/")},
		{name: "prefix (CLI)", cli: []string{"--prefix", "/b/"}, purged: func(u string) bool {
			return underPrefix(diskSite, "/b/")(u) || underPrefix(churnSite, "/b/")(u)
		}},
		{name: "zone (API)", api: &purgeBody{Zone: "hot", All: true}, purged: inZone(hotSite)},
		{name: "zone (CLI)", cli: []string{"--zone", "disk", "--all"}, purged: inZone(diskSite)},
		{name: "all (API)", api: &purgeBody{All: true}, purged: func(string) bool { return true }},
		{name: "all (CLI)", cli: []string{"--all"}, purged: func(string) bool { return true }},
	}

	var mu sync.Mutex
	var answers []answer
	readers := hammer(p, urls, func(url string, start time.Time, r result, err error) string {
		if err != nil {
			return err.Error()
		}
		if r.status != http.StatusOK {
			return fmt.Sprintf("GET %s: status %d", url, r.status)
		}
		m := versionLine.FindSubmatch(r.body)
		if m == nil {
			return fmt.Sprintf("GET %s (%s): unexpected body %.60q", url, r.cache, r.body)
		}
		version, _ := strconv.ParseInt(string(m[2]), 10, 64)
		if path := string(m[1]); !strings.HasSuffix(url, path) || !bytes.Equal(r.body, versionedBody(path, version)) {
			return fmt.Sprintf("GET %s (%s): wrong body for %s v%d (%d bytes)", url, r.cache, path, version, len(r.body))
		}
		mu.Lock()
		answers = append(answers, answer{url: url, start: start, version: version, cache: r.cache})
		mu.Unlock()
		return ""
	})
	defer readers.stop()

	settle := func() { b.settle(t, readers) }
	settle()

	for _, c := range cases {
		fetchedBefore := make(map[string]int)
		for _, u := range urls {
			fetchedBefore[u] = b.RequestsFor(urlPath(u))
		}
		version := b.version.Add(1)
		mu.Lock()
		answers = answers[:0]
		mu.Unlock()

		purged := doPurge(t, adminAddr, c)
		returned := time.Now()
		want := c.count
		if want == 0 {
			want = count(c.purged)
		}
		if purged != want {
			t.Errorf("purge %s reported %d entries, want %d", c.name, purged, want)
		}
		readers.rounds(t, 2)
		settle()

		mu.Lock()
		stale := map[string]answer{}
		for _, a := range answers {
			if a.start.After(returned) && c.purged(a.url) && a.version < version {
				stale[a.url] = a
			}
		}
		mu.Unlock()
		for url, a := range stale {
			t.Errorf("after purge %s returned: GET %s answered v%d (%s), stored before the purge (now v%d)", c.name, url, a.version, a.cache, version)
		}
		for _, u := range urls {
			refetched := b.RequestsFor(urlPath(u)) - fetchedBefore[u]
			switch {
			case c.purged(u) && refetched == 0:
				t.Errorf("after purge %s: %s was not fetched again", c.name, u)
			case !c.purged(u) && refetched != 0:
				t.Errorf("purge %s: %s, not covered, was fetched %d times again", c.name, u, refetched)
			}
		}
		for _, f := range readers.takeFailures() {
			t.Errorf("during purge %s: %s", c.name, f)
		}
		if t.Failed() {
			return
		}
	}
}

func urlPath(url string) string {
	return "/" + strings.SplitN(strings.TrimPrefix(url, "http://"), "/", 2)[1]
}

// doPurge runs a purge case and returns the number of entries purged.
func doPurge(t *testing.T, adminAddr string, c purgeCase) int {
	t.Helper()
	if c.api != nil {
		n, err := purgeAPI(http.DefaultClient, adminAddr, *c.api)
		if err != nil {
			t.Fatalf("purge %s: %v", c.name, err)
		}
		return n
	}
	code, out, errOut := command(t, context.Background(), append([]string{"purge", "--address", adminAddr}, c.cli...)...)
	if code != 0 {
		t.Fatalf("edgecache purge %s: exit %d: %s%s", strings.Join(c.cli, " "), code, out, errOut)
	}
	var n int
	if _, err := fmt.Sscanf(out, "purged %d entries", &n); err != nil {
		t.Fatalf("edgecache purge %s: output %q: %v", strings.Join(c.cli, " "), out, err)
	}
	return n
}

// purgeAPI purges through POST /edge_cache/purge and returns the number of
// entries purged.
func purgeAPI(client *http.Client, adminAddr string, req purgeBody) (int, error) {
	body, _ := json.Marshal(req)
	resp, err := client.Post("http://"+adminAddr+"/edge_cache/purge", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Purged int    `json:"purged"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s, %+v, %v", body, resp.Status, out, err)
	}
	return out.Purged, nil
}

// TestPurgeWhilePromoting purges, again and again, a zone whose memory tier
// is too small for its entries, so that readers keep reading entries from
// disk and promoting them to memory: a promotion under way when a purge
// runs must not put the purged entry back in memory.
func TestPurgeWhilePromoting(t *testing.T) {
	b := newVersioned(t)
	dir := t.TempDir()
	admin, port := testkit.FreePort(t), testkit.FreePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		zone churn {
			memory 1MiB
			path %s
			inactive 1h
		}
	}
}
`, admin, filepath.Join(dir, "churn")) + cachedSite(port, "churn", b.Addr(), "")
	p := newProxy(t, dir, cfg, admin, port)
	site := fmt.Sprintf("http://127.0.0.1:%d", port)
	var urls []string
	for i := range 40 {
		urls = append(urls, fmt.Sprintf("%s/k%d-60000", site, i))
	}
	// The last purge: when it returned, and the version it requires since.
	type purgeDone struct {
		returned time.Time
		version  int64
	}
	var last atomic.Pointer[purgeDone]
	last.Store(&purgeDone{})
	readers := hammer(p, urls, func(url string, start time.Time, r result, err error) string {
		if err != nil {
			return err.Error()
		}
		m := versionLine.FindSubmatch(r.body)
		if r.status != http.StatusOK || m == nil {
			return fmt.Sprintf("GET %s: status %d, body %.60q", url, r.status, r.body)
		}
		v, _ := strconv.ParseInt(string(m[2]), 10, 64)
		if l := last.Load(); start.After(l.returned) && v < l.version {
			return fmt.Sprintf("GET %s answered v%d (%s) after the purge for v%d returned", url, v, r.cache, l.version)
		}
		return ""
	})
	defer readers.stop()
	adminAddr := fmt.Sprintf("127.0.0.1:%d", admin)
	for i := range 20 {
		b.settle(t, readers)
		v := b.version.Add(1)
		doPurge(t, adminAddr, purgeCase{name: "zone churn", api: &purgeBody{Zone: "churn", All: true}})
		last.Store(&purgeDone{returned: time.Now(), version: v})
		readers.rounds(t, 1)
		if f := readers.takeFailures(); len(f) > 0 {
			t.Fatalf("purge %d: %d stale answers, first: %s", i, len(f), f[0])
		}
	}
}

// TestPurgeDuringDiskRevalidation: a purge of another key while a disk-only
// entry is revalidated refuses to store the revalidated entry (any purge in
// the zone since the request began does), but the client still gets the
// whole body it confirmed, from the file it was read from.
func TestPurgeDuringDiskRevalidation(t *testing.T) {
	const size = 1 << 20
	body := content("/big", 0, size)
	asked, release := make(chan struct{}, 1), make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v0"`)
		if r.Header.Get("If-None-Match") == `"v0"` {
			asked <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	})
	dir := t.TempDir()
	admin, port := testkit.FreePort(t), testkit.FreePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	edge_cache {
		zone disk {
			memory 8MiB
			memory_entry_max 64KiB
			path %s
		}
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	edge_cache {
		zone disk
		valid 200 1s
		revalidate on
	}
	reverse_proxy %s
}
`, admin, filepath.Join(dir, "zone"), port, b.Addr())
	p := newProxy(t, dir, cfg, admin, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/big", port)

	if r := p.mustGet(t, url); r.cache != "MISS" || !bytes.Equal(r.body, body) {
		t.Fatalf("the fill: %s, %d bytes", r.cache, len(r.body))
	}
	// The proxy's clock is the wall clock: the entry expires a second after
	// it was stored.
	expires := time.Now().Add(time.Second)
	testkit.Eventually(t, 5*time.Second, testkit.Holds("the entry to expire", func() bool { return time.Now().After(expires) }))

	type got struct {
		r   result
		err error
	}
	done := make(chan got, 1)
	go func() {
		r, err := p.get(url)
		done <- got{r, err}
	}()
	select {
	case <-asked:
	case g := <-done:
		t.Fatalf("answered without revalidating: %d %s, %d bytes, %v", g.r.status, g.r.cache, len(g.r.body), g.err)
	}
	code, out, errOut := command(t, context.Background(), "purge", "--address", fmt.Sprintf("127.0.0.1:%d", admin), "--key", "/other")
	close(release)
	if code != 0 {
		t.Fatalf("edgecache purge --key /other: exit %d: %s%s", code, out, errOut)
	}
	g := <-done
	if g.err != nil {
		t.Fatal(g.err)
	}
	if g.r.status != http.StatusOK || g.r.cache != "REVALIDATED" || !bytes.Equal(g.r.body, body) {
		t.Fatalf("the revalidation: %d %s, %d bytes; want 200 REVALIDATED, the whole %d bytes", g.r.status, g.r.cache, len(g.r.body), size)
	}
}
