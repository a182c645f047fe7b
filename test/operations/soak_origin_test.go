package operations_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soakOrigin is the OMERO stand-in of the soak. Every body names its path
// and a version, and the rest is generated from both: a body of another URL,
// of a version the cache may no longer serve, or bytes out of place are
// told apart. A version is raised before each refresh and purge of a path.
type soakOrigin struct {
	mu       sync.Mutex
	versions map[string]int64 // by path; absent is 0

	// strict are the times during which maintenance has been on for long
	// enough that no request sent then may reach the read-only nodes (see
	// soakEvents.maintenance); those that do are counted in
	// duringMaintenance. Requests sent earlier may: they passed the
	// maintenance handler before it saw the flag.
	strict            windows
	duringMaintenance atomic.Int64
	firstDuring       atomic.Pointer[string]
	requests          atomic.Int64
}

func newSoakOrigin() *soakOrigin { return &soakOrigin{versions: make(map[string]int64)} }

// sentHeader carries when the client sent a request (Unix ns), through
// the proxy to the origin.
const sentHeader = "X-Soak-Sent"

// version is path's current version.
func (o *soakOrigin) version(path string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.versions[path]
}

// bump raises the version of each path and returns the new ones.
func (o *soakOrigin) bump(paths []string) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	vs := make([]int64, len(paths))
	for i, p := range paths {
		o.versions[p]++
		vs[i] = o.versions[p]
	}
	return vs
}

// soakPath is /<zone>/<group>/<n>-<size>, with an "s" after the size for
// an answer fresh for 2 s only (Cache-Control: max-age=2), so that entries
// expire, are updated in the background and revalidated.
func soakPath(zone string, group, n, size int, short bool) string {
	p := fmt.Sprintf("/%s/%d/%d-%d", zone, group, n, size)
	if short {
		p += "s"
	}
	return p
}

// soakSize reads the size and the short lifetime out of a soakPath.
func soakSize(path string) (size int, short bool, ok bool) {
	i := strings.LastIndexByte(path, '-')
	if i < 0 {
		return 0, false, false
	}
	s := path[i+1:]
	s, short = strings.CutSuffix(s, "s")
	size, err := strconv.Atoi(s)
	return size, short, err == nil && size >= soakHeadLen(path)
}

// soakHead is the start of every body: its path and version, of a fixed
// length whatever the version, so that a path's size never changes.
func soakHead(path string, version int64) string { return fmt.Sprintf("%s v%08d\n", path, version) }

func soakHeadLen(path string) int { return len(path) + 11 }

// soakFiller is what bodies are cut from after their head: 1 MiB of
// pseudo-random bytes, each body starting at a place of its own.
var soakFiller = content("soak filler", 0, 1<<20)

// soakSegments calls each with the successive parts of path's body of that
// version from offset off on, n bytes in all: the head's, then slices of
// soakFiller from a place given by the path and version, so that a body of
// another path or version, or bytes out of place, differ. Bodies are made
// and checked with copy and bytes.Equal, quick even under the race
// detector, and a range is checked without making the whole body.
func soakSegments(path string, version int64, off, n int, each func(part []byte) bool) bool {
	head := soakHead(path, version)
	if off < len(head) {
		part := []byte(head[off:min(len(head), off+n)])
		if !each(part) {
			return false
		}
		off, n = off+len(part), n-len(part)
	}
	h := fnv.New64a()
	h.Write([]byte(head))
	shift := int(h.Sum64() % uint64(len(soakFiller)))
	for n > 0 {
		i := (off + shift) % len(soakFiller)
		part := soakFiller[i:min(len(soakFiller), i+n)]
		if !each(part) {
			return false
		}
		off, n = off+len(part), n-len(part)
	}
	return true
}

// soakBytes writes into b the bytes of path's body of that version from
// offset off on.
func soakBytes(b []byte, path string, version int64, off int) {
	soakSegments(path, version, off, len(b), func(part []byte) bool {
		b = b[copy(b, part):]
		return true
	})
}

// soakHas reports whether b is the part of path's body of that version at
// offset off.
func soakHas(b []byte, path string, version int64, off int) bool {
	return soakSegments(path, version, off, len(b), func(part []byte) bool {
		ok := bytes.Equal(b[:len(part)], part)
		b = b[len(part):]
		return ok
	})
}

func soakETag(path string, version int64) string {
	h := fnv.New64a()
	h.Write([]byte(path))
	return fmt.Sprintf(`"%x-%d"`, h.Sum64(), version)
}

// handler answers as OMERO.web does for an image: the body with its
// length, a validator, a session cookie, and no Cache-Control unless the
// path asks for a short lifetime. readOnly marks the public pool's nodes,
// which maintenance must keep every request from.
func (o *soakOrigin) handler(readOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		if sent, err := strconv.ParseInt(r.Header.Get(sentHeader), 10, 64); readOnly && err == nil {
			if at := time.Unix(0, sent); o.strict.overlaps(at, at) && o.duringMaintenance.Add(1) == 1 {
				first := fmt.Sprintf("%s %s sent %s, received %s", r.Method, r.RequestURI, at.Format(time.StampMilli), time.Now().Format(time.StampMilli))
				o.firstDuring.Store(&first)
			}
		}
		size, short, ok := soakSize(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		v := o.version(r.URL.Path)
		h := w.Header()
		h.Set("Set-Cookie", "sessionid=soak"+strconv.FormatInt(o.requests.Load(), 10)+"; Path=/")
		h.Set("ETag", soakETag(r.URL.Path, v))
		if short {
			h.Set("Cache-Control", "max-age=2")
		}
		if r.Header.Get("If-None-Match") == soakETag(r.URL.Path, v) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(size))
		if r.Method == http.MethodHead {
			return
		}
		body := make([]byte, size)
		soakBytes(body, r.URL.Path, v, 0)
		if size > 256<<10 {
			// A large image takes a while: fills are in flight when purges,
			// refreshes and restarts come.
			for off := 0; off < size; off += 128 << 10 {
				if _, err := w.Write(body[off:min(off+128<<10, size)]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Millisecond)
			}
			return
		}
		w.Write(body)
	})
}

// soakNode is one origin server on a fixed address, stopped and started
// again as a backend restarts.
type soakNode struct {
	addr    string
	handler http.Handler

	mu  sync.Mutex
	srv *http.Server
}

// start listens again on the node's address. A restart may find the port
// briefly held; it tries for a few seconds.
func (n *soakNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return nil
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", n.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if err != nil {
		return fmt.Errorf("restarting the origin on %s: %w", n.addr, err)
	}
	n.srv = &http.Server{Handler: n.handler}
	go n.srv.Serve(ln)
	return nil
}

// stop ends the node: at once (its connections cut mid-response, as a
// crash), or gracefully (answers under way finish, within 2 s).
func (n *soakNode) stop(graceful bool) {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			return
		}
	}
	srv.Close()
}
