package caddymodule

import (
	"context"
	"crypto/tls"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper lets edge_cache send a plain HTTP/1.1 hit in one system
// call. Go's net/http flushes its 4 KiB connection buffer (headers and the
// start of the body) and then writes the rest of the body: two writes per
// response of more than about 4 KiB, where nginx makes one writev. On a
// loopback benchmark of 10 KiB hits that second write costs about a sixth
// of the throughput.
//
// With this wrapper, the edge_cache handler marks a connection before it
// writes a hit's body; if the next write is net/http's full 4 KiB buffer,
// it is held (copied) and sent together with the next one in a single
// writev. A memory hit's body of more than one of Caddy's write chunks
// (write_max_chunk, 64 KiB) then goes out whole, as fast as the socket
// takes it, with write_idle kept per chunk (see wholeWrite), and a
// verified disk body with sendfile. Nothing else changes: other handlers'
// writes, TLS connections, HTTP/2 and hijacked connections pass straight
// through.
//
// It is configured in the servers' listener wrappers:
//
//	{
//		servers {
//			listener_wrappers {
//				edge_cache
//			}
//		}
//	}
type ListenerWrapper struct{}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.edge_cache",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// WrapListener wraps ln so that its connections can coalesce a hit's
// writes.
func (ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return coalescingListener{ln}
}

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens. Syntax:
//
//	edge_cache
func (*ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper's name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("edge_cache listener wrapper takes no options, got %q", d.Val())
	}
	return nil
}

type coalescingListener struct{ net.Listener }

// pendingConns finds a wrapped connection from the one net/http serves,
// which other wrappers may have wrapped again: both report the same
// *net.TCPAddr (one per connection) as their remote address. An entry
// lives from Accept until the server's ConnContext takes it, or until the
// connection closes on a server without an edge_cache handler.
var pendingConns sync.Map // *net.TCPAddr → *coalescingConn

func (l coalescingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return conn, err
	}
	// A TLS connection is served by net/http only as a *tls.Conn, and its
	// writes are records, not the response's bytes: it is left alone.
	addr, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok || addr == nil {
		return conn, nil
	}
	if _, isTLS := conn.(interface{ ConnectionState() tls.ConnectionState }); isTLS {
		return conn, nil
	}
	c := &coalescingConn{Conn: conn, addr: addr}
	if sc, ok := conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	pendingConns.Store(addr, c)
	return c, nil
}

// registerConnContext makes srv put each wrapped connection in its
// connection's context, for the handler to find; once per server, however
// many edge_cache handlers it has.
func (a *App) registerConnContext(srv *caddyhttp.Server) {
	if a.connContextServers[srv] {
		return
	}
	if a.connContextServers == nil {
		a.connContextServers = make(map[*caddyhttp.Server]bool)
	}
	a.connContextServers[srv] = true
	srv.RegisterConnContext(func(ctx context.Context, c net.Conn) context.Context {
		if addr, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			if cc, ok := pendingConns.LoadAndDelete(addr); ok {
				return context.WithValue(ctx, coalescingConnKey{}, cc)
			}
		}
		return ctx
	})
}

type coalescingConnKey struct{}

// heldWriteSize is the only write size held: net/http's connection buffer
// (4 KiB) flushed because it is full. bufio flushes a full buffer only in
// the middle of a write with more bytes to come, so a held write is always
// followed by another before the response ends. Should net/http's buffer
// size change, nothing is held any more: slower, never stuck.
const heldWriteSize = 4 << 10

var heldWrites = sync.Pool{New: func() any { b := make([]byte, 0, heldWriteSize); return &b }}

// coalescingConn holds at most one write, when asked to, and sends it with
// the next one.
type coalescingConn struct {
	net.Conn
	addr *net.TCPAddr
	raw  syscall.RawConn // the socket, for whole writes and sendfile; nil if not one

	mu        sync.Mutex
	holdBelow int     // hold the next write if it is shorter than this
	held      *[]byte // the write held, from heldWrites
	// whole, while its idle is set, makes writes go out whole
	// (writeWhole); writeDeadline is the last write deadline set.
	whole         wholeWrite
	writeDeadline time.Time
	ww            *wholeWriter // writeWhole's, once it has written
}

// A hit's body goes out whole. Caddy's idle-timeout writer hands a body to
// the connection in chunks of write_max_chunk (64 KiB), each a write with
// a deadline of its own, so that write_idle bounds the time between
// progressing writes rather than the whole body; each chunk is a system
// call and a wake-up of the client, which doubles the CPU of a 1 MiB hit.
// For a hit's body, the handler lifts the chunking
// (IdleTimeoutWriter.Override) and the connection keeps the same bound
// itself: it writes as much as the socket takes at once, and moves the
// deadline forward by write_idle each time the socket has taken another
// write_max_chunk bytes, never past the ceiling in force (the write
// timeout, or a deadline set before the write that is earlier than
// write_idle's). A client must still take each chunk within write_idle.
type wholeWrite struct {
	idle    time.Duration
	chunk   int64     // write_max_chunk
	ceiling time.Time // zero: none
}

// deadline is the write deadline after progress at now.
func (w wholeWrite) deadline(now time.Time) time.Time {
	d := now.Add(w.idle)
	if !w.ceiling.IsZero() && d.After(w.ceiling) {
		return w.ceiling
	}
	return d
}

// Test hooks, read atomically: the connections of a server being stopped
// may still run. testHookWholeProgress is called each time a whole write
// moved its deadline forward; testHookWholeStart and testHookWholeDone as
// each whole write starts, and with its outcome.
var (
	testHookWholeProgress atomic.Pointer[func()]
	testHookWholeStart    atomic.Pointer[func()]
	testHookWholeDone     atomic.Pointer[func(error)]
)

// writeWholes makes c write whole (writeWhole) until endWholeWrites; false,
// and nothing changed, when c cannot (not a socket, or not on Linux).
func (c *coalescingConn) writeWholes(idle time.Duration, chunk int, ceiling time.Time) bool {
	if !wholeWritesSupported || c.raw == nil || idle <= 0 || chunk <= 0 {
		return false
	}
	c.mu.Lock()
	c.whole = wholeWrite{idle: idle, chunk: int64(chunk), ceiling: ceiling}
	c.mu.Unlock()
	return true
}

func (c *coalescingConn) endWholeWrites() {
	c.mu.Lock()
	c.whole = wholeWrite{}
	c.mu.Unlock()
}

// wholeFor is the whole write for a write starting at now, or none: the
// deadline set for it (by Caddy's idle-timeout writer) is earlier than
// write_idle's when a ceiling is in force, and then stays the ceiling.
// Called with mu held.
func (c *coalescingConn) wholeFor(now time.Time) wholeWrite {
	w := c.whole
	if w.idle <= 0 {
		return w
	}
	if d := c.writeDeadline; !d.IsZero() && d.Before(now.Add(w.idle-wholeCeilingMargin)) &&
		(w.ceiling.IsZero() || d.Before(w.ceiling)) {
		w.ceiling = d
	}
	return w
}

// wholeCeilingMargin: a deadline set this much earlier than write_idle's
// from now is a ceiling, not write_idle's own deadline set a moment ago.
const wholeCeilingMargin = 100 * time.Millisecond

// SetWriteDeadline records the deadline for whole writes (wholeFor).
func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// testHookCoalesced, if set, is called for each write sent together with
// a held one.
var testHookCoalesced func()

// holdNextWrite asks c to hold its next write if it is net/http's full
// buffer and shorter than n bytes (the body about to be written): the
// rest of the response is then on its way, and both go out in one writev.
func (c *coalescingConn) holdNextWrite(n int) {
	c.mu.Lock()
	c.holdBelow = n
	c.mu.Unlock()
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	held := c.held
	var whole wholeWrite
	if c.whole.idle > 0 {
		whole = c.wholeFor(time.Now())
	}
	if held == nil {
		below := c.holdBelow
		c.holdBelow = 0
		if len(p) == heldWriteSize && len(p) < below {
			held = heldWrites.Get().(*[]byte)
			*held = append((*held)[:0], p...)
			c.held = held
			c.mu.Unlock()
			return len(p), nil
		}
		c.mu.Unlock()
		if whole.idle > 0 {
			n, err := c.writeWhole(nil, p, whole)
			return int(n), err
		}
		return c.Conn.Write(p)
	}
	c.held = nil
	c.mu.Unlock()
	if testHookCoalesced != nil {
		testHookCoalesced()
	}

	heldLen := len(*held)
	var n int64
	var err error
	if whole.idle > 0 {
		n, err = c.writeWhole(*held, p, whole)
	} else {
		buffers := net.Buffers{*held, p}
		n, err = buffers.WriteTo(c.Conn)
	}
	heldWrites.Put(held)
	// The held bytes were reported written already.
	return int(max(n-int64(heldLen), 0)), err
}

// flush sends a held write on its own. Another write always follows a
// held one, so this is only a safety net: net/http ends every response by
// resetting the read deadline, and a cut response is followed by Close.
func (c *coalescingConn) flush() error {
	c.mu.Lock()
	held := c.held
	c.held, c.holdBelow = nil, 0
	c.mu.Unlock()
	if held == nil {
		return nil
	}
	_, err := c.Conn.Write(*held)
	heldWrites.Put(held)
	return err
}

func (c *coalescingConn) SetReadDeadline(t time.Time) error {
	if err := c.flush(); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *coalescingConn) SetDeadline(t time.Time) error {
	if err := c.flush(); err != nil {
		return err
	}
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *coalescingConn) Close() error {
	pendingConns.Delete(c.addr)
	_ = c.flush()
	return c.Conn.Close()
}

// CloseWrite keeps net/http's graceful close (FIN, not RST) of TCP
// connections.
func (c *coalescingConn) CloseWrite() error {
	if err := c.flush(); err != nil {
		return err
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps sendfile for file_server and the like: net/http uses the
// connection's ReadFrom when it has one. A disk hit's body that needs no
// verification goes out with sendfile too (disk.BodyReader.SendTo), from
// the zone's shared open file at the body's offset.
func (c *coalescingConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	// Caddy's idle timeout writer hands the body over in chunks, each an
	// io.LimitedReader.
	src, limit := r, int64(math.MaxInt64)
	lr, limited := r.(*io.LimitedReader)
	if limited {
		src, limit = lr.R, lr.N
	}
	if s, ok := src.(sender); ok && c.raw != nil {
		c.mu.Lock()
		whole := c.wholeFor(time.Now())
		c.mu.Unlock()
		if n, handled, err := s.SendTo(c.raw, limit, c.sendProgress(whole)); handled {
			if hook := testHookSendfile.Load(); hook != nil {
				(*hook)(n)
			}
			if limited {
				lr.N -= n
			}
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// testHookSendfile, if set, is called with the bytes of each sendfile
// loop.
var testHookSendfile atomic.Pointer[func(sent int64)]

// sender is a body that can send itself to a socket (disk.BodyReader),
// calling progress, if not nil, between its system calls.
type sender interface {
	SendTo(dst syscall.RawConn, n int64, progress func(sent int64) error) (written int64, handled bool, err error)
}

// NetConn returns the wrapped connection, as crypto/tls's Conn does.
func (c *coalescingConn) NetConn() net.Conn { return c.Conn }

// Interface guards
var (
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
	_ io.ReaderFrom         = (*coalescingConn)(nil)
)
