package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestSlowHeaderConnectionsClosed: Caddyfile.example bounds the time a
// client may take to send its request header, and the idle time of a
// keep-alive connection, on every server; and a connection that sends
// half a header and stalls is closed once the header timeout (short here)
// passes, through the edge_cache listener wrapper as in production.
func TestSlowHeaderConnectionsClosed(t *testing.T) {
	text, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(text, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					ReadHeaderTimeout caddy.Duration `json:"read_header_timeout"`
					IdleTimeout       caddy.Duration `json:"idle_timeout"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		t.Fatal(err)
	}
	if len(parsed.Apps.HTTP.Servers) == 0 {
		t.Fatal("no servers in Caddyfile.example")
	}
	for name, srv := range parsed.Apps.HTTP.Servers {
		if h := time.Duration(srv.ReadHeaderTimeout); h <= 0 || h > time.Minute {
			t.Errorf("Caddyfile.example server %s: read_header timeout %v, want one of at most 1m", name, h)
		}
		if i := time.Duration(srv.IdleTimeout); i <= 0 || i > 5*time.Minute {
			t.Errorf("Caddyfile.example server %s: idle timeout %v, want one of at most 5m", name, i)
		}
	}

	const readHeader = 300 * time.Millisecond
	cf := strings.Replace(globalOptions("zone default 16MiB"), "\tadmin off\n", fmt.Sprintf(`	admin off
	servers {
		listener_wrappers {
			edge_cache
		}
		timeouts {
			read_header %s
		}
	}
`, readHeader), 1) + `
http://127.0.0.1:$PUBLIC {
	edge_cache
	respond "ok"
}
`
	s := startCaddy(t, cf, nil, "PUBLIC")
	// The server's header timer starts when it accepts the connection:
	// timed from before the dial, so the lower bound below holds however
	// late this goroutine runs after it.
	start := time.Now()
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.ports["PUBLIC"]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
		t.Fatal(err)
	}
	// The server either closes at once or answers 408 and closes: either
	// way the read ends, well before this deadline.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	held := time.Since(start)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("a slow-header connection still open after %v (read_header %v)", held, readHeader)
	}
	if held < readHeader {
		t.Fatalf("closed after %v, before the header timeout of %v", held, readHeader)
	}
}
