package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestCacheKeysCommand(t *testing.T) {
	f, addr := startFakeAdmin(t)
	all := slices.Clone(f.zones["thumbnails"])
	for _, c := range []struct {
		args  []string
		want  []string
		pages int
	}{
		{args: []string{"--zone", "thumbnails"}, want: all, pages: 3},
		{args: []string{"--zone", "thumbnails", "--limit", "1500"}, want: all[:1500], pages: 2},
		{args: []string{"--zone", "thumbnails", "--prefix", "/webclient/render_thumbnail/24"}, want: all[2400:2500], pages: 3},
		{args: []string{"--zone", "api", "--prefix", "/api/"}, want: []string{"/api/v0/m/projects/", "/api/v0/m/screens/"}, pages: 1},
	} {
		f.requests = nil
		var out bytes.Buffer
		status, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, append(c.args, "--address", addr)...), &out)
		if err != nil || status != 0 {
			t.Fatalf("%v: status %d, error %v", c.args, status, err)
		}
		if got := strings.Join(c.want, "\n") + "\n"; out.String() != got {
			t.Errorf("%v: %d lines out, want %d", c.args, strings.Count(out.String(), "\n"), len(c.want))
		}
		if len(f.requests) != c.pages {
			t.Errorf("%v: requests %v, want %d pages", c.args, f.requests, c.pages)
		}
	}
	var out bytes.Buffer
	_, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "nope", "--address", addr), &out)
	if err == nil || err.Error() != `listing keys: unknown zone "nope" (HTTP 400)` {
		t.Errorf("unknown zone: error %v", err)
	}
}

func TestCacheKeysStopsOnARepeatedPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":["/a"],"next":"/a"}`))
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	_, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "z", "--address", srv.Listener.Addr().String()), &out)
	if err == nil || !strings.Contains(err.Error(), "same page again") {
		t.Fatalf("error %v", err)
	}
	if out.String() != "/a\n/a\n" {
		t.Errorf("output %q", out.String())
	}
}

// TestKeysThatAreNotText stores an entry under a key with a byte that is
// not UTF-8, lists it with cache-keys and purges it with the printed key
// through the real admin API: the entry goes, and a purge of a key that
// matches nothing reports 0.
func TestKeysThatAreNotText(t *testing.T) {
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		fmt.Fprintf(w, "v%d", n)
	})
	addr, ports := startProxy(t, "zone default 16MiB", `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy `+be.Addr()+`
}
`, "PUBLIC")

	// A raw request: a client library would escape the byte.
	rawGet := func() string {
		t.Helper()
		conn, err := net.Dial("tcp", ports["PUBLIC"])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(conn, "GET /img\xff1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		return res.Header.Get("X-Cache-Status")
	}
	if got := rawGet(); got != "MISS" {
		t.Fatalf("first request: %s", got)
	}
	if got := rawGet(); got != "HIT" {
		t.Fatalf("second request: %s", got)
	}

	var out bytes.Buffer
	if _, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "default", "--address", addr), &out); err != nil {
		t.Fatal(err)
	}
	printed := strings.TrimSuffix(out.String(), "\n")
	if printed != `"/img\xff1"` {
		t.Fatalf("cache-keys printed %q", printed)
	}
	out.Reset()
	if _, err := runCacheKeys(context.Background(), parseFlags(t, cacheKeysCommand, "--zone", "default", "--prefix", `"/img\xff"`, "--address", addr), &out); err != nil || out.String() != printed+"\n" {
		t.Fatalf("cache-keys with a quoted prefix printed %q, %v", out.String(), err)
	}

	purge := func(key string) string {
		t.Helper()
		var out bytes.Buffer
		if _, err := runPurge(context.Background(), parseFlags(t, purgeCommand, "--key", key, "--address", addr), &out); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got := purge("/img\uFFFD1"); got != "purged 0 entries from every zone" {
		t.Errorf("purging the key as JSON mangles it: %q", got)
	}
	if got := purge(printed); got != "purged 1 entries from every zone" {
		t.Errorf("purging the printed key: %q", got)
	}
	if got := rawGet(); got != "MISS" {
		t.Errorf("after the purge: %s", got)
	}
}
