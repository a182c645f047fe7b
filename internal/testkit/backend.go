package testkit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Backend is a test origin on 127.0.0.1 that records every request it is
// sent, before handling it. It stops when the test ends.
type Backend struct {
	*httptest.Server

	mu     sync.Mutex
	seen   []Request
	byPath map[string]int
	byURI  map[string]int
}

// Request is what a Backend was sent.
type Request struct {
	Method string
	URI    string // as sent: path and query
	Host   string
	Header http.Header
	At     time.Time
}

// NewBackend starts a Backend answering with handle; n is the request's
// number at this backend, from 1. A nil handle answers 200 "body of <URI>".
func NewBackend(tb testing.TB, handle func(w http.ResponseWriter, r *http.Request, n int64)) *Backend {
	tb.Helper()
	if handle == nil {
		handle = func(w http.ResponseWriter, r *http.Request, _ int64) { fmt.Fprintf(w, "body of %s", r.RequestURI) }
	}
	b := &Backend{byPath: make(map[string]int), byURI: make(map[string]int)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, Request{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), At: time.Now()})
		b.byPath[r.URL.Path]++
		b.byURI[r.RequestURI]++
		n := int64(len(b.seen))
		b.mu.Unlock()
		handle(w, r, n)
	}))
	tb.Cleanup(b.Close)
	return b
}

// Addr is the backend's host:port, as reverse_proxy takes it.
func (b *Backend) Addr() string { return strings.TrimPrefix(b.URL, "http://") }

// Requests returns how many requests the backend was sent.
func (b *Backend) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// RequestsFor returns how many requests were sent for path (the query
// aside).
func (b *Backend) RequestsFor(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byPath[path]
}

// RequestsForURI returns how many requests were sent for uri, path and
// query.
func (b *Backend) RequestsForURI(uri string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byURI[uri]
}

// Seen returns the requests sent so far, in order.
func (b *Backend) Seen() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.seen...)
}
