package main

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Body sizes of the two benchmark URLs.
const (
	size10k = 10 << 10
	size1m  = 1 << 20
)

// bodyOf returns n bytes of printable text without spaces or braces, so that
// the same bytes can be a Caddyfile literal for `respond` (no placeholders).
func bodyOf(n int) []byte {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}

// origin is the backend behind nginx and edgecache, in this process. Like
// OMERO.web it marks every answer uncacheable (Cache-Control: no-cache, a
// session Set-Cookie, Vary: Cookie), which both proxies are told to ignore.
//
//	/10k, /fill/10k/<n>  10 KiB
//	/1m, /fill/1m/<n>    1 MiB
//	/slow/<name>         10 KiB after slowDelay; counted per path (stampede)
type origin struct {
	addr      string
	srv       *http.Server
	body10k   []byte
	body1m    []byte
	slowDelay time.Duration

	requests atomic.Int64 // every request, to see that cache hits never reach here

	mu   sync.Mutex
	slow map[string]*slowStat
	// hot counts the requests for /hot/<n> (10 KiB, the tags part).
	hot atomic.Int64
}

// slowStat records the backend side of one stampede: how many requests
// reached the origin for the path and when each answer was written.
type slowStat struct {
	count int
	done  []time.Time
}

func startOrigin(slowDelay time.Duration) (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{
		addr:      ln.Addr().String(),
		body10k:   bodyOf(size10k),
		body1m:    bodyOf(size1m),
		slowDelay: slowDelay,
		slow:      map[string]*slowStat{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/10k", o.serve(o.body10k))
	mux.HandleFunc("/fill/10k/", o.serve(o.body10k))
	mux.HandleFunc("/1m", o.serve(o.body1m))
	mux.HandleFunc("/fill/1m/", o.serve(o.body1m))
	mux.HandleFunc("/slow/", o.serveSlow)
	mux.HandleFunc("/hot/", func(w http.ResponseWriter, r *http.Request) {
		o.hot.Add(1)
		o.writeBody(w, strconv.Itoa(len(o.body10k)), o.body10k)
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go o.srv.Serve(ln)
	return o, nil
}

func (o *origin) close() { o.srv.Close() }

func (o *origin) serve(body []byte) http.HandlerFunc {
	length := strconv.Itoa(len(body))
	return func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.writeBody(w, length, body)
	}
}

func (o *origin) writeBody(w http.ResponseWriter, length string, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Length"] = []string{length}
	h["Cache-Control"] = []string{"no-cache"}
	h["Vary"] = []string{"Cookie"}
	h["Set-Cookie"] = []string{"sessionid=bench-origin-session; HttpOnly; Path=/; SameSite=Lax"}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (o *origin) serveSlow(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	o.mu.Lock()
	st := o.slow[r.URL.Path]
	if st == nil {
		st = &slowStat{}
		o.slow[r.URL.Path] = st
	}
	st.count++
	o.mu.Unlock()

	select {
	case <-time.After(o.slowDelay):
	case <-r.Context().Done():
		return
	}
	o.writeBody(w, strconv.Itoa(len(o.body10k)), o.body10k)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	now := time.Now()
	o.mu.Lock()
	st.done = append(st.done, now)
	o.mu.Unlock()
}

// slowStats returns a copy of what the origin saw for a /slow/ path.
func (o *origin) slowStats(path string) slowStat {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.slow[path]
	if st == nil {
		return slowStat{}
	}
	return slowStat{count: st.count, done: append([]time.Time(nil), st.done...)}
}
