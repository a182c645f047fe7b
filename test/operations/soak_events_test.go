package operations_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// window is a time during which some answers are expected: the maintenance
// page while the flag exists, backend errors while backends restart.
type window struct{ from, to time.Time } // to is zero while it lasts

// windows is a list of them, open and closed from one goroutine and read
// from the clients'.
type windows struct {
	mu    sync.Mutex
	list  []window
	slack time.Duration // how long after a window its effects may last
}

func (ws *windows) open() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.list = append(ws.list, window{from: time.Now()})
}

func (ws *windows) close() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.list[len(ws.list)-1].to = time.Now()
}

// overlaps reports whether a request from start to end overlapped a
// window, its slack included.
func (ws *windows) overlaps(start, end time.Time) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for i := len(ws.list) - 1; i >= 0; i-- {
		w := ws.list[i]
		if w.from.After(end) {
			continue
		}
		if w.to.IsZero() || !w.to.Add(ws.slack).Before(start) {
			return true
		}
	}
	return false
}

// floors are the oldest versions a request may be answered with: once a
// purge of a path has returned, no answer older than the version raised
// before it.
type floors struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *floors) get(path string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[path]
}

func (f *floors) raise(paths []string, versions []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range paths {
		f.m[p] = max(f.m[p], versions[i])
	}
}

// soakEvents are what happens to the proxy besides the clients' requests:
// refreshes through the cache buster, purges through the admin API,
// maintenance toggles and backend restarts, each in its own goroutine at
// its own pace until stop.
type soakEvents struct {
	origin  *soakOrigin
	set     *soakURLs
	floors  *floors
	client  *http.Client
	public  string // http://127.0.0.1:port of the public site
	refresh string // and of the cache buster
	admin   string // 127.0.0.1:port
	flag    string // the maintenance flag file
	nodes   []*soakNode
	mainten windows
	// allDown are the times every read-only node was down: backend errors
	// are expected then, and only then (with one node down, the other
	// answers).
	allDown windows

	refreshes, purges, purgedEntries, toggles, nodeRestarts, allDownRestarts atomic.Int64

	failMu   sync.Mutex
	failures []string // at most 20
	failed   atomic.Int64

	done chan struct{}
	wg   sync.WaitGroup
}

func (e *soakEvents) fail(format string, args ...any) {
	e.failed.Add(1)
	e.failMu.Lock()
	defer e.failMu.Unlock()
	if len(e.failures) < 20 {
		e.failures = append(e.failures, fmt.Sprintf(format, args...))
	}
}

// every runs do every period until stop.
func (e *soakEvents) every(period time.Duration, do func(i int)) {
	e.wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-e.done:
				return
			case <-t.C:
			}
			do(i)
		}
	})
}

// start runs the four kinds of events; stop ends them, leaving the
// backends up and maintenance off.
func (e *soakEvents) start() {
	e.done = make(chan struct{})
	e.every(100*time.Millisecond, func(int) { e.refreshOne() })
	e.every(700*time.Millisecond, func(i int) { e.purge(i%2 == 0) })
	e.every(10*time.Second, func(int) { e.maintenance() })
	e.every(6*time.Second, func(i int) { e.restart(i%4 == 0) })
}

func (e *soakEvents) stop() {
	close(e.done)
	e.wg.Wait()
}

// wait returns false, at once, once stop was called.
func (e *soakEvents) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.done:
		return false
	case <-t.C:
		return true
	}
}

// refreshOne raises a path's version and asks the cache buster for it,
// as an operator refreshing a URL: the answer is the new version, fetched
// from the read-write node, and overwrites the entry.
func (e *soakEvents) refreshOne() {
	path := e.set.pick(rand.N(1 << 30))
	v := e.origin.bump([]string{path})[0]
	r, err := getWith(e.client, e.refresh+path)
	e.refreshes.Add(1)
	size, _, _ := soakSize(path)
	switch {
	case err != nil:
		e.fail("refresh %s: %v", path, err)
	case r.status != http.StatusOK || r.cache != "BYPASS":
		e.fail("refresh %s: %d %s, want 200 BYPASS", path, r.status, r.cache)
	case len(r.body) != size || !bytes.HasPrefix(r.body, []byte(path+" v")):
		e.fail("refresh %s: wrong body (%d bytes) %.40q", path, len(r.body), r.body)
	default:
		var got int64
		fmt.Sscanf(string(r.body[len(path)+2:]), "%d", &got)
		if got < v || !soakHas(r.body, path, got, 0) {
			e.fail("refresh %s: answered v%d, want v%d or later, with its body", path, got, v)
		}
	}
}

// purge removes one key, or a group of keys by prefix, from its zone
// through the admin API, after raising their versions.
func (e *soakEvents) purge(byKey bool) {
	path := e.set.pick(rand.N(1 << 30))
	zone, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	req := purgeBody{Zone: zone, Key: path}
	paths := []string{path}
	if !byKey {
		req = purgeBody{Zone: zone, Prefix: path[:strings.LastIndexByte(path, '/')+1]}
		paths = e.set.under(req.Prefix)
	}
	versions := e.origin.bump(paths)
	n, err := purgeAPI(e.client, e.admin, req)
	if err != nil {
		e.fail("purge: %v", err)
		return
	}
	e.floors.raise(paths, versions)
	e.purges.Add(1)
	e.purgedEntries.Add(int64(n))
}

// maintenance creates the flag file for 4 s. No request sent from 2 s
// after it is created (the handler looks for it once a second) until it is
// removed may reach the read-only nodes.
func (e *soakEvents) maintenance() {
	e.mainten.open()
	if err := os.WriteFile(e.flag, nil, 0o644); err != nil {
		e.fail("maintenance flag: %v", err)
	}
	e.toggles.Add(1)
	if e.wait(2 * time.Second) {
		e.origin.strict.open()
		e.wait(2 * time.Second)
		e.origin.strict.close()
		// A request sent before the window closed must still meet the
		// flag at the proxy, however long its way there takes (a loaded
		// machine took over 20 ms, and the flag's removal is seen at once).
		e.wait(500 * time.Millisecond)
	}
	if err := os.Remove(e.flag); err != nil {
		e.fail("maintenance flag: %v", err)
	}
	e.mainten.close()
}

// restart stops a read-only node for 1 s (gracefully), or every node at
// once for 2 s (as a crash, connections cut), and starts them again.
func (e *soakEvents) restart(all bool) {
	nodes := []*soakNode{e.nodes[rand.N(len(e.nodes))]}
	down := time.Second
	if all {
		nodes, down = e.nodes, 2*time.Second
		e.allDownRestarts.Add(1)
		e.allDown.open()
		defer e.allDown.close()
	}
	for _, n := range nodes {
		n.stop(!all)
		e.nodeRestarts.Add(1)
	}
	e.wait(down)
	for _, n := range nodes {
		if err := n.start(); err != nil {
			e.fail("%v", err)
		}
	}
}
