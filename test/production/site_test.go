package production_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Public responses carry Access-Control-Allow-Origin: *, whether or not
// the request names an origin, and whether it is a MISS or a HIT.
func TestCORSOnAPI(t *testing.T) {
	e := sharedEdge(t)
	for _, origin := range []string{"", "https://example.org"} {
		for range 2 { // MISS, then HIT
			var r response
			if origin == "" {
				r = e.get(t, e.Public, "/api/v0/")
			} else {
				r = e.get(t, e.Public, "/api/v0/", "Origin", origin)
			}
			if r.Status != http.StatusOK {
				t.Fatalf("GET /api/v0/ (Origin %q): status %d", origin, r.Status)
			}
			if got := r.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
				t.Errorf("GET /api/v0/ (Origin %q, %s): Access-Control-Allow-Origin %q, want exactly *",
					origin, r.Header.Get("X-Cache-Status"), got)
			}
		}
	}
}

// The public, cache-buster, long-timeout and admin ports listen, and with
// EDGECACHE_PRIVATE_BIND left to its default the private ones listen on
// loopback only. Read from the kernel's socket table for the process.
func TestListeners(t *testing.T) {
	e := sharedEdge(t)
	listening, err := tcpListeners(e.process.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("listening: %v", listening)
	for _, want := range []struct{ name, addr string }{
		{"public", e.Public},
		{"cache buster", e.Refresh},
		{"long timeout", e.Long},
		{"admin", e.Admin},
	} {
		ap := netip.MustParseAddrPort(want.addr)
		addrs := listening[ap.Port()]
		if len(addrs) == 0 {
			t.Errorf("%s port %d: the process does not listen on it", want.name, ap.Port())
			continue
		}
		for _, a := range addrs {
			if a != ap.Addr() {
				t.Errorf("%s port %d: listens on %s, want %s only", want.name, ap.Port(), a, ap.Addr())
			}
		}
	}
	// Nothing else listens beyond loopback (EDGECACHE_PUBLIC_BIND is
	// 127.0.0.1 here).
	for p, addrs := range listening {
		for _, a := range addrs {
			if !a.IsLoopback() {
				t.Errorf("the process listens on %s", netip.AddrPortFrom(a, p))
			}
		}
	}
}

// tcpListeners returns the local addresses of the listening TCP sockets of
// process pid, by port: the socket inodes of its file descriptors, looked
// up in /proc/net/tcp and tcp6.
func tcpListeners(pid int) (map[uint16][]netip.Addr, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool)
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	out := make(map[uint16][]netip.Addr)
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			const listen = "0A"
			if len(f) < 10 || f[3] != listen || !inodes[f[9]] {
				continue
			}
			addr, port, err := parseProcAddr(f[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", table, f[1], err)
			}
			out[port] = append(out[port], addr)
		}
	}
	return out, nil
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP as 32-bit
// words in host byte order (little-endian on the machines this runs on),
// in hex, then the port in hex.
func parseProcAddr(s string) (netip.Addr, uint16, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("no port")
	}
	ip, err := hex.DecodeString(ipHex)
	if err != nil || (len(ip) != 4 && len(ip) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("bad address")
	}
	for w := 0; w < len(ip); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = ip[w+3], ip[w+2], ip[w+1], ip[w]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap(), uint16(port), nil
}

// `edgecache validate` accepts Caddyfile.example (and refuses a broken
// copy, so that the check means something).
func TestValidateCaddyfileExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	validate := func(caddyfile string) (string, error) {
		cmd := exec.Command(binary, "validate", "--config", caddyfile, "--adapter", "caddyfile")
		cmd.Dir = dir
		cmd.Env = processEnv(map[string]string{
			"EDGECACHE_CACHE_DIR": filepath.Join(dir, "cache"),
			"XDG_DATA_HOME":       filepath.Join(dir, "data"),
			"XDG_CONFIG_HOME":     filepath.Join(dir, "config"),
		})
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	example := filepath.Join(repoRoot, "Caddyfile.example")
	if out, err := validate(example); err != nil {
		t.Fatalf("edgecache validate %s: %v\n%s", example, err, out)
	}

	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "Caddyfile.broken")
	if err := os.WriteFile(broken, []byte(strings.Replace(string(text), "import omero_cache 1d", "import omero_cache one-day", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(broken); err == nil {
		t.Errorf("edgecache validate accepted a Caddyfile with `import omero_cache one-day` (valid 200 one-day):\n%s", out)
	}
}

// The headers OMERO.web expects from its proxy reach the backend: Host,
// X-Real-IP, X-Forwarded-For and the scheme in X-Forwarded-Proto-Omero-Web.
func TestHeadersToBackend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	received := make(map[string]http.Header) // by X-Test-Request
	recorder := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		mu.Lock()
		received[r.Header.Get(headerTestID)] = h
		mu.Unlock()
		w.Write([]byte("recorded\n"))
	}))
	t.Cleanup(recorder.Close)
	e := newEdge(t, edgeConfig{Env: map[string]string{
		"OMERO_READONLY":  strings.TrimPrefix(recorder.URL, "http://"),
		"OMERO_READWRITE": strings.TrimPrefix(recorder.URL, "http://"),
	}})
	const client = "127.0.0.9"
	for _, addr := range []string{e.Public, e.Long} {
		r := e.getFrom(t, client, addr, "/webclient/")
		if r.Status != http.StatusOK || r.Body != "recorded\n" {
			t.Fatalf("GET via %s: status %d, body %q", addr, r.Status, r.Body)
		}
		mu.Lock()
		h := received[r.ID]
		mu.Unlock()
		if h == nil {
			t.Fatalf("GET via %s: the backend did not receive it", addr)
		}
		for name, want := range map[string]string{
			"Host":                        "127.0.0.1", // without the port, as nginx's $host
			"X-Real-Ip":                   client,
			"X-Forwarded-For":             client,
			"X-Forwarded-Proto-Omero-Web": "http",
		} {
			if h.Get(name) != want {
				t.Errorf("via %s: the backend got %s %q, want %q", addr, name, h.Get(name), want)
			}
		}
	}
}

// `edgecache validate` and `adapt` refuse a bad Caddyfile with the reason
// (an unknown zone; a bad duration, with its line) and accept a good one.
func TestValidateAndAdaptErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := func(caddyfile string, args ...string) (string, error) {
		config := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(config, []byte(caddyfile), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, append(args, "--config", config, "--adapter", "caddyfile")...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache thumbnails
	reverse_proxy 127.0.0.1:9
}
`, "validate")
	if err == nil || !strings.Contains(out, `zone \"thumbnails\" is not defined`) && !strings.Contains(out, `zone "thumbnails" is not defined`) {
		t.Errorf("validate with an unknown zone: %v\n%s", err, out)
	}
	out, err = run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache {
		zone images
		valid 200 forever
	}
	reverse_proxy 127.0.0.1:9
}
`, "adapt")
	if err == nil || !strings.Contains(out, "Caddyfile:9") || !strings.Contains(out, "bad duration") {
		t.Errorf("adapt with a bad duration: %v\n%s", err, out)
	}
	if out, err := run(`{
	edge_cache {
		zone images 1MiB
	}
}
http://127.0.0.1:1 {
	edge_cache images
	reverse_proxy 127.0.0.1:9
}
`, "validate"); err != nil {
		t.Errorf("validate a good config: %v\n%s", err, out)
	}
}
