package maintenance

import (
	"context"
	"io"
	"maps"
	"net/http"
	"sync/atomic"
)

// Gate is what a maintenance handler with serve_cached puts in
// the request context during maintenance, for the edge_cache handler
// further down the route. The contract:
//
//   - edge_cache looks the gate up with GateFrom(r.Context()).
//     With no gate, it works as usual.
//   - With a gate, edge_cache calls Claim() before writing anything, then
//     either serves the entry it has in its cache (fresh or stale), or, for
//     any request it would send to a backend (miss, bypass, refresh,
//     revalidation), calls ServePage instead and does not contact the
//     backend.
//   - A request that nothing claims has its response discarded and gets
//     the maintenance page from the maintenance handler.
type Gate struct {
	m       *Handler
	claimed atomic.Bool
}

type gateKey struct{}

// openGates counts the requests under way that carry a gate.
var openGates atomic.Int64

// GateFrom returns the request's maintenance gate, or nil when
// maintenance is off or the maintenance handler does not serve cached
// responses.
func GateFrom(ctx context.Context) *Gate {
	if openGates.Load() == 0 {
		// No request in the process carries a gate: spare every other
		// request a walk up its context chain.
		return nil
	}
	g, _ := ctx.Value(gateKey{}).(*Gate)
	return g
}

// Claim tells the maintenance handler that the caller answers this request
// itself, so its response must reach the client.
func (g *Gate) Claim() { g.claimed.Store(true) }

// ServePage claims the request and writes the maintenance page to w.
func (g *Gate) ServePage(w http.ResponseWriter, r *http.Request) error {
	g.Claim()
	return g.m.servePage(w, r)
}

// gateWriter is the response writer next gets during maintenance with
// serve_cached. Until the first write it collects headers in a copy; at the
// first WriteHeader, Write or Flush it decides: if the gate was claimed the
// copy becomes the real headers and everything passes through, otherwise
// the response (headers included) is discarded.
type gateWriter struct {
	rw     http.ResponseWriter
	gate   *Gate
	header http.Header
	state  gateState
}

type gateState uint8

const (
	gateUndecided gateState = iota
	gatePassing
	gateDiscarding
)

func newGateWriter(rw http.ResponseWriter, gate *Gate) *gateWriter {
	return &gateWriter{rw: rw, gate: gate, header: rw.Header().Clone()}
}

func (w *gateWriter) decide() {
	if w.state != gateUndecided {
		return
	}
	if !w.gate.claimed.Load() {
		w.state = gateDiscarding
		return
	}
	w.state = gatePassing
	hdr := w.rw.Header()
	clear(hdr)
	maps.Copy(hdr, w.header)
}

func (w *gateWriter) Header() http.Header {
	if w.state == gatePassing {
		return w.rw.Header()
	}
	return w.header
}

func (w *gateWriter) WriteHeader(status int) {
	w.decide()
	if w.state == gatePassing {
		w.rw.WriteHeader(status)
	}
}

func (w *gateWriter) Write(b []byte) (int, error) {
	w.decide()
	if w.state == gateDiscarding {
		return len(b), nil
	}
	return w.rw.Write(b)
}

// ReadFrom keeps sendfile for claimed responses served from disk.
func (w *gateWriter) ReadFrom(src io.Reader) (int64, error) {
	w.decide()
	if w.state == gateDiscarding {
		return io.Copy(io.Discard, src)
	}
	return io.Copy(w.rw, src)
}

// FlushError is found by http.ResponseController before Unwrap, so a flush
// of a discarded response never reaches the client.
func (w *gateWriter) FlushError() error {
	w.decide()
	if w.state == gateDiscarding {
		return nil
	}
	return http.NewResponseController(w.rw).Flush()
}

// Unwrap lets http.ResponseController reach the real writer for deadlines
// and full duplex.
func (w *gateWriter) Unwrap() http.ResponseWriter { return w.rw }

// Interface guards
var (
	_ http.ResponseWriter = (*gateWriter)(nil)
	_ io.ReaderFrom       = (*gateWriter)(nil)
)
