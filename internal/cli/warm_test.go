package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func writeURLList(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "urls.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWarmCommandExitCodes(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/broken" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)

	good := writeURLList(t, "# two thumbnails\n/a\n\nhttps://idr.example/b?x=1\n")
	bad := writeURLList(t, "/a\n/broken\n")
	empty := writeURLList(t, "# nothing yet\n")

	for _, c := range []struct {
		name      string
		list      string
		args      []string
		cancelled bool
		status    int
		stderr    []string
		requests  int64
	}{
		{name: "all done", list: good, status: warmExitDone, requests: 2,
			stderr: []string{"warmed 2 URLs", "0 of 2 remain"}},
		{name: "some failed", list: bad, args: []string{"--retries", "1"}, status: warmExitFailed, requests: 3,
			stderr: []string{"1 failed:", "line 2 /broken: HTTP 503", "urls.txt.warm-failed", "state kept in"}},
		{name: "interrupted", list: good, cancelled: true, status: warmExitInterrupted, requests: 0,
			stderr: []string{"warmed 0 URLs", "2 of 2 remain", "state kept in"}},
		{name: "empty list", list: empty, status: warmExitDone, stderr: []string{"no URL in"}},
		{name: "missing list", list: good + ".missing", status: warmExitCannotRun},
		{name: "bad timeout", list: good, args: []string{"--timeout", "soon"}, status: warmExitCannotRun},
		{name: "bad concurrency", list: good, args: []string{"--concurrency", "0"}, status: warmExitCannotRun},
		{name: "bad via", list: good, args: []string{"--via", "127.0.0.1:9000"}, status: warmExitCannotRun},
	} {
		t.Run(c.name, func(t *testing.T) {
			hits.Store(0)
			args := append([]string{"--from", c.list, "--via", srv.URL, "--restart", "--timeout", "1d"}, c.args...)
			ctx, cancel := context.WithCancel(context.Background())
			if c.cancelled {
				cancel()
			}
			defer cancel()
			var stderr bytes.Buffer
			status, err := runWarm(ctx, parseFlags(t, warmCommand, args...), &stderr, false)
			if status != c.status {
				t.Errorf("status %d (error %v), want %d; stderr:\n%s", status, err, c.status, stderr.String())
			}
			if (err != nil) != (c.status != warmExitDone) {
				t.Errorf("error %v with status %d", err, status)
			}
			for _, want := range c.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if n := hits.Load(); n != c.requests {
				t.Errorf("%d requests, want %d", n, c.requests)
			}
		})
	}
}
