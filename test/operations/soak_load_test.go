package operations_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soakZone is a class of URLs, stored in its own zone.
type soakZone struct {
	name             string
	urls             int // how many
	minSize, maxSize int
	weight           int // share of the requests, in percent
}

// soakURLs is the URL set of the soak, larger than the zones: requests
// go to a hot tenth of each zone's URLs 70 % of the time, to any of them
// otherwise, so that there are hits, misses and evictions.
type soakURLs struct {
	zones []soakZone
	paths [][]string // by zone, in order
}

func newSoakURLs(zones []soakZone) *soakURLs {
	s := &soakURLs{zones: zones}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, z := range zones {
		var paths []string
		for n := range z.urls {
			size := z.minSize + rnd.IntN(z.maxSize-z.minSize+1)
			paths = append(paths, soakPath(z.name, n/20, n, size, n%10 == 3))
		}
		s.paths = append(s.paths, paths)
	}
	return s
}

// pick chooses a path from a random number r.
func (s *soakURLs) pick(r int) string {
	w := r % 100
	r /= 100
	zi := 0
	for ; zi < len(s.zones)-1 && w >= s.zones[zi].weight; zi++ {
		w -= s.zones[zi].weight
	}
	paths := s.paths[zi]
	if r%10 < 7 {
		return paths[(r/10)%max(1, len(paths)/10)]
	}
	return paths[(r/10)%len(paths)]
}

// under lists the paths that start with prefix.
func (s *soakURLs) under(prefix string) []string {
	var out []string
	for _, paths := range s.paths {
		for _, p := range paths {
			if strings.HasPrefix(p, prefix) {
				out = append(out, p)
			}
		}
	}
	return out
}

// total is the size of every body of the set, by zone.
func (s *soakURLs) total(zone int) int64 {
	var n int64
	for _, p := range s.paths[zone] {
		size, _, _ := soakSize(p)
		n += int64(size)
	}
	return n
}

// What the clients ask for.
const (
	askGet = iota
	askRange
	askHead
	numAsks
)

var askNames = [numAsks]string{"GET", "Range", "HEAD"}

// Kinds of answers, as counted.
const (
	answerRight       = "right"                                // the status and the bytes the origin's version allows
	answerMaintenance = "maintenance page (503)"               // while the flag exists
	answerBackendDown = "backend error (5xx), every node down" // while every read-only node is down
	answerCut         = "transport error or cut body, every node down"
	answerUnexpected  = "unexpected status or error"
	answerWrongBody   = "wrong body"
)

// soakTally counts the clients' answers.
type soakTally struct {
	mu       sync.Mutex
	byKind   map[string]int64
	byStatus map[string]int64 // "GET 200 HIT"
	first    map[string][]string
	requests atomic.Int64
}

func newSoakTally() *soakTally {
	return &soakTally{byKind: map[string]int64{}, byStatus: map[string]int64{}, first: map[string][]string{}}
}

func (t *soakTally) add(kind, status, detail string) {
	t.requests.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKind[kind]++
	t.byStatus[status]++
	if detail != "" && len(t.first[kind]) < 10 {
		t.first[kind] = append(t.first[kind], detail)
	}
}

func (t *soakTally) kind(k string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKind[k]
}

// report lists the counts, largest first.
func (t *soakTally) report() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, m := range []map[string]int64{t.byKind, t.byStatus} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return int(m[b] - m[a]) })
		for _, k := range keys {
			fmt.Fprintf(&b, "  %-48s %d\n", k, m[k])
		}
		b.WriteString("\n")
	}
	for k, details := range t.first {
		if k == answerRight {
			continue
		}
		fmt.Fprintf(&b, "  first of %q:\n", k)
		for _, d := range details {
			fmt.Fprintf(&b, "    %s\n", d)
		}
	}
	return b.String()
}

// soakClient asks the public site for paths of the set, one request after
// another, and judges each answer.
type soakClient struct {
	client *http.Client
	site   string
	set    *soakURLs
	origin *soakOrigin
	floors *floors
	events *soakEvents
	tally  *soakTally
	rnd    *rand.Rand
}

func (c *soakClient) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		c.one()
	}
}

// one sends a request and counts its answer.
func (c *soakClient) one() {
	path := c.set.pick(c.rnd.IntN(1 << 30))
	size, _, _ := soakSize(path)
	ask := askGet
	switch r := c.rnd.IntN(100); {
	case r < 20:
		ask = askRange
	case r < 35:
		ask = askHead
	}
	method := http.MethodGet
	if ask == askHead {
		method = http.MethodHead
	}
	req, _ := http.NewRequest(method, c.site+path, nil)
	first, last := 0, size-1
	if ask == askRange {
		switch r := c.rnd.IntN(20); {
		case r == 0: // unsatisfiable: 416
			first = size
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", size))
		case r < 4: // a suffix
			n := 1 + c.rnd.IntN(size)
			first = size - n
			req.Header.Set("Range", fmt.Sprintf("bytes=-%d", n))
		default:
			first = c.rnd.IntN(size)
			last = first + c.rnd.IntN(min(size-first, 64<<10))
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
		}
	}

	floor := c.floors.get(path) // before the request: purges returned by now
	start := time.Now()
	req.Header.Set(sentHeader, strconv.FormatInt(start.UnixNano(), 10))
	resp, err := c.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	end := time.Now()
	newest := c.origin.version(path)
	label := fmt.Sprintf("%s %s [%s%s]", askNames[ask], path, start.Format("15:04:05.000"), c.during(start, end))
	if err != nil {
		kind := answerUnexpected
		if c.events.allDown.overlaps(start, end) {
			kind = answerCut
		}
		c.tally.add(kind, askNames[ask]+" error", fmt.Sprintf("%s: %v", label, err))
		return
	}
	cacheStatus := resp.Header.Get("X-Cache-Status")
	status := fmt.Sprintf("%s %d %s", askNames[ask], resp.StatusCode, cacheStatus)
	label += fmt.Sprintf(" (%d %s, %s)", resp.StatusCode, cacheStatus, req.Header.Get("Range"))

	// Answers other than the object's.
	switch {
	case resp.Header.Get("Set-Cookie") != "":
		c.tally.add(answerUnexpected, status, label+": a Set-Cookie reached the client")
		return
	case resp.StatusCode == http.StatusServiceUnavailable && (ask == askHead || bytes.Contains(body, []byte("soak maintenance page"))):
		kind := answerUnexpected
		if c.events.mainten.overlaps(start, end) {
			kind = answerMaintenance
		} else if c.events.allDown.overlaps(start, end) {
			kind = answerBackendDown // no upstream available: Caddy's 503
		}
		c.tally.add(kind, status, label)
		return
	case resp.StatusCode >= 500:
		kind := answerUnexpected
		if c.events.allDown.overlaps(start, end) {
			kind = answerBackendDown
		}
		c.tally.add(kind, status, fmt.Sprintf("%s: %.60q", label, body))
		return
	}

	want := http.StatusOK
	switch {
	case ask == askRange && first >= size:
		want = http.StatusRequestedRangeNotSatisfiable
	case ask == askRange:
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		c.tally.add(answerUnexpected, status, fmt.Sprintf("%s: want %d", label, want))
		return
	}
	switch want {
	case http.StatusRequestedRangeNotSatisfiable:
		if got := resp.Header.Get("Content-Range"); got != fmt.Sprintf("bytes */%d", size) {
			c.tally.add(answerUnexpected, status, label+": Content-Range "+got)
			return
		}
	case http.StatusPartialContent:
		if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", first, last, size); got != want {
			c.tally.add(answerUnexpected, status, fmt.Sprintf("%s: Content-Range %q, want %q", label, got, want))
			return
		}
		if v := c.version(path, body, first, floor, newest); v < 0 {
			c.tally.add(answerWrongBody, status, fmt.Sprintf("%s: %d bytes from %d, no version in v%d..v%d has them", label, len(body), first, floor, newest))
			return
		}
	default:
		if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(size) {
			c.tally.add(answerUnexpected, status, fmt.Sprintf("%s: Content-Length %s, want %d", label, got, size))
			return
		}
		if ask == askHead {
			break
		}
		if len(body) != size {
			c.tally.add(answerWrongBody, status, fmt.Sprintf("%s: %d bytes, want %d", label, len(body), size))
			return
		}
		if v := c.version(path, body, 0, floor, newest); v < 0 {
			c.tally.add(answerWrongBody, status, fmt.Sprintf("%s: body %.40q, want a version in v%d..v%d", label, body, floor, newest))
			return
		}
	}
	c.tally.add(answerRight, status, "")
}

// during says what overlapped a request, for the report.
func (c *soakClient) during(start, end time.Time) string {
	var s string
	if c.events.mainten.overlaps(start, end) {
		s += ", during maintenance"
	}
	if c.events.allDown.overlaps(start, end) {
		s += ", every node down"
	}
	return s
}

// version returns the version, from floor to newest, whose body has b at
// offset off, or -1.
func (c *soakClient) version(path string, b []byte, off int, floor, newest int64) int64 {
	for v := newest; v >= floor; v-- {
		if soakHas(b, path, v, off) {
			return v
		}
	}
	return -1
}
