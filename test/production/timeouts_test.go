package production_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// exampleReadHeader is Caddyfile.example's `timeouts { read_header }`.
const exampleReadHeader = 10 * time.Second

// TestSlowHeaderSocketClosed holds a connection to each listener of
// Caddyfile.example that sends half a request header and stalls: each is
// closed once read_header has passed, not before, and not much later.
func TestSlowHeaderSocketClosed(t *testing.T) {
	t.Parallel()
	e := sharedEdge(t)
	var wg sync.WaitGroup
	for name, addr := range map[string]string{"public": e.Public, "cache buster": e.Refresh, "long timeout": e.Long} {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, "GET /webclient/ HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			// The server answers 408 and closes, or closes at once: the read
			// ends either way.
			conn.SetReadDeadline(start.Add(exampleReadHeader + 10*time.Second))
			_, err = io.Copy(io.Discard, conn)
			held := time.Since(start)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				t.Errorf("%s: a slow-header connection still open after %v (read_header %v)", name, held.Round(time.Millisecond), exampleReadHeader)
			} else if held < exampleReadHeader-time.Second {
				t.Errorf("%s: closed after %v, before read_header's %v", name, held.Round(time.Millisecond), exampleReadHeader)
			}
		})
	}
	wg.Wait()
}
