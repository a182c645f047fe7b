package caddymodule

import (
	"io"
	"net/http"
	"sync"
)

// hideWriter removes the hide_headers names from a response as its header
// is written, as nginx's proxy_hide_header does: whatever the method,
// whether the response comes from the backend or from the cache, stored or
// not, and on 1xx informational responses too. It is the outermost writer
// of the handler, so nothing the handler or the backend sets escapes it.
type hideWriter struct {
	http.ResponseWriter
	names       []string // canonical header names
	wroteHeader bool
}

// hideWriters recycles the wrappers: with hide_headers set, every request
// through the handler, hits included, would otherwise allocate one.
var hideWriters = sync.Pool{New: func() any { return new(hideWriter) }}

func newHideWriter(w http.ResponseWriter, names []string) *hideWriter {
	hw := hideWriters.Get().(*hideWriter)
	hw.ResponseWriter, hw.names, hw.wroteHeader = w, names, false
	return hw
}

// release returns the wrapper to the pool once the handler has returned:
// nothing writes to a response after its handler is done.
func (hw *hideWriter) release() {
	hw.ResponseWriter, hw.names = nil, nil
	hideWriters.Put(hw)
}

func (hw *hideWriter) hide() {
	hdr := hw.ResponseWriter.Header()
	for _, name := range hw.names {
		delete(hdr, name)
	}
}

// WriteHeader hides the headers from every status line written, 1xx ones
// included (the header map of an informational response is the same map
// the final response starts from).
func (hw *hideWriter) WriteHeader(code int) {
	if hw.wroteHeader {
		return
	}
	hw.hide()
	if code >= 200 || code == http.StatusSwitchingProtocols {
		hw.wroteHeader = true
	}
	hw.ResponseWriter.WriteHeader(code)
}

func (hw *hideWriter) Write(p []byte) (int, error) {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	return hw.ResponseWriter.Write(p)
}

// ReadFrom keeps the connection's sendfile path for disk hits.
func (hw *hideWriter) ReadFrom(r io.Reader) (int64, error) {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	return io.Copy(hw.ResponseWriter, r)
}

// Flush sends the header (hidden first) and what is buffered.
func (hw *hideWriter) Flush() { _ = hw.FlushError() }

// FlushError is Flush for http.ResponseController.
func (hw *hideWriter) FlushError() error {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(hw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (hijacking for
// websockets, deadlines).
func (hw *hideWriter) Unwrap() http.ResponseWriter { return hw.ResponseWriter }

// Interface guards
var (
	_ http.Flusher                              = (*hideWriter)(nil)
	_ io.ReaderFrom                             = (*hideWriter)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*hideWriter)(nil)
)
