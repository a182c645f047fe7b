package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestKeyTextRoundTrip(t *testing.T) {
	for _, key := range []string{"/a", "/a b", `/a\b`, "/a\xffb", "/é", `"/q"`, "/tab\there", "/nl\n", ""} {
		text := keyText(key)
		if strings.ContainsAny(text, "\n\t") || !strings.HasPrefix(text, `"`) && text != key {
			t.Errorf("keyText(%q) = %q", key, text)
		}
		if back, err := parseKeyText(text); err != nil || back != key {
			t.Errorf("parseKeyText(%q) = %q, %v; want %q", text, back, err, key)
		}
	}
	if keyText("/webgateway/render_image/1/0/0/?c=1|0:255$FF0000") != "/webgateway/render_image/1/0/0/?c=1|0:255$FF0000" {
		t.Error("a plain key is not printed as it is")
	}
	if _, err := parseKeyText(`"/unterminated`); err == nil {
		t.Error("a broken quoted key was accepted")
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
	admin := testkit.FreePort(t)
	cf := strings.Replace(globalOptions("zone default 16MiB"), "admin off", "admin 127.0.0.1:"+strconv.Itoa(admin), 1) + `
http://127.0.0.1:$PUBLIC {
	edge_cache {
		valid 200 1h
	}
	reverse_proxy $BACKEND
}
`
	s := startCaddy(t, cf, be, "PUBLIC")
	addr := "127.0.0.1:" + strconv.Itoa(admin)

	// A raw request: a client library would escape the byte.
	rawGet := func() string {
		t.Helper()
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.ports["PUBLIC"]))
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
