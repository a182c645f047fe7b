package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/testkit"
)

func TestTagsCaddyfileErrors(t *testing.T) {
	site := func(rules string) string {
		return `{
	edge_cache {
		zone default 1MiB
	}
}
:8080 {
	edge_cache {
		valid 200 1h
		tags {
			path ^/ok/(\d+)/ image:$1
			` + rules + `
		}
	}
	reverse_proxy 127.0.0.1:9
}
`
	}
	tests := []struct{ name, rules, marker, msg string }{
		{"bad regexp", `path ^/(\d+ image:$1`, `^/(\d+ `, "bad regexp"},
		{"missing capture", `path ^/x/(\d+)/ image:$2`, "image:$2", "no capture 2"},
		{"missing named capture", `path ^/x/(?P<id>\d+)/ image:${ID}`, "${ID}", "no capture ID"},
		{"path without template", `path ^/x/`, "path ^/x/", "at least one tag template"},
		{"query without prefix", `query id`, "query id", "a parameter, a tag prefix"},
		{"query bad path", `query id image: ^/(x`, "^/(x", "bad regexp"},
		{"header with two names", `header A B`, "header A B", "one response header"},
		{"bad header name", `header A:B`, "header A:B", "not a header name"},
		{"unknown rule", `cookie id image:`, "cookie", `unrecognized rule "cookie"`},
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := site(tt.rules)
			_, _, err := adapter.Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("no error for\n%s", src)
			}
			line := fmt.Sprintf("Caddyfile:%d", lineOf(t, src, tt.marker))
			if !strings.Contains(err.Error(), line) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want one mentioning %q at %s", err, tt.msg, line)
			}
		})
	}
}

// A JSON config is checked at provision as the Caddyfile is at adapt.
func TestTagsJSONChecked(t *testing.T) {
	h := &Handler{Tags: &TagsConfig{Path: []PathTagConfig{{Regexp: `^/(\d+)`, Tags: []string{"image:$3"}}}}}
	if _, err := h.Tags.Compile(); err == nil || !strings.Contains(err.Error(), "no capture 3") {
		t.Errorf("compile = %v, want an error naming the missing capture", err)
	}
}

const tagsSite = `
:$SITE {
	edge_cache {
		valid 200 1h
		%s
		tags {
			path ^/img/(\d+)/ image:$1
			query id image:
			header Surrogate-Key
		}
	}
	reverse_proxy $BACKEND
}
`

// tagsBackend answers with a Surrogate-Key header on /sk/ and counts the
// requests; fail makes it answer 503.
func tagsBackend(t *testing.T, fail *atomic.Bool) *testkit.Backend {
	return testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if fail != nil && fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/sk/") {
			w.Header().Set("Surrogate-Key", "image:1 dataset:9")
		}
		io.WriteString(w, fmt.Sprintf("%s #%d", r.URL.RequestURI(), n))
	})
}

func TestTagsPurge(t *testing.T) {
	be := tagsBackend(t, nil)
	s := startCaddy(t, globalOptions("\t\tzone default 64MiB")+fmt.Sprintf(tagsSite, ""), be, "SITE")
	first := []string{"/img/1/a", "/img/1/b", "/thumbs/?id=1&id=2", "/sk/x"}
	second := []string{"/img/2/a", "/thumbs/?id=2&id=3", "/other"}
	for _, p := range append(append([]string{}, first...), second...) {
		r := s.get(t, s.url("SITE", p))
		if r.cacheStatus() != "MISS" || r.Header.Get("Surrogate-Key") != "" {
			t.Fatalf("%s: %s, Surrogate-Key %q: want a MISS without the backend's tag header", p, r.cacheStatus(), r.Header.Get("Surrogate-Key"))
		}
		if r := s.get(t, s.url("SITE", p)); r.cacheStatus() != "HIT" || r.Header.Get("Surrogate-Key") != "" {
			t.Fatalf("%s: %s, Surrogate-Key %q: want a HIT without the tag header", p, r.cacheStatus(), r.Header.Get("Surrogate-Key"))
		}
	}
	zone := activeApp(t).Zone("default")
	keys, err := zone.Tagged("dataset:9")
	if err != nil || len(keys) != 1 || keys[0] != "/sk/x" {
		t.Errorf("Tagged(dataset:9) = %q, %v", keys, err)
	}
	n, err := zone.PurgeTag("image:1")
	if err != nil || n != len(first) {
		t.Fatalf("PurgeTag(image:1) = %d, %v; want %d", n, err, len(first))
	}
	for _, p := range first {
		if r := s.get(t, s.url("SITE", p)); r.cacheStatus() != "MISS" {
			t.Errorf("%s after the purge of its tag: %s, want MISS", p, r.cacheStatus())
		}
	}
	for _, p := range second {
		if r := s.get(t, s.url("SITE", p)); r.cacheStatus() != "HIT" {
			t.Errorf("%s after another tag's purge: %s, want HIT", p, r.cacheStatus())
		}
	}
}

func TestSoftPurgeFlow(t *testing.T) {
	t.Run("use_stale updating", func(t *testing.T) {
		be := tagsBackend(t, nil)
		s := startCaddy(t, globalOptions("\t\tzone default 64MiB")+fmt.Sprintf(tagsSite, "use_stale updating"), be, "SITE")
		paths := []string{"/img/1/a", "/img/1/b"}
		for _, p := range paths {
			s.get(t, s.url("SITE", p))
		}
		if n, err := activeApp(t).Zone("default").SoftPurgeTag("image:1"); err != nil || n != 2 {
			t.Fatalf("SoftPurgeTag = %d, %v; want 2", n, err)
		}
		for _, p := range paths {
			r := s.get(t, s.url("SITE", p))
			if st := r.cacheStatus(); st != "STALE" && st != "UPDATING" {
				t.Errorf("%s after a soft purge: %s, want STALE or UPDATING", p, st)
			}
			if !strings.HasSuffix(r.Body, "#"+fmt.Sprint(indexOf(paths, p)+1)) {
				t.Errorf("%s: body %q, want the stored one", p, r.Body)
			}
		}
		// One background request per entry, then hits of the new version.
		testkit.Eventually(t, 10*time.Second, func() string {
			if n := be.Requests(); n != 4 {
				return fmt.Sprintf("%d backend requests, want 4", n)
			}
			for _, p := range paths {
				if r := s.get(t, s.url("SITE", p)); r.cacheStatus() != "HIT" {
					return p + ": " + r.cacheStatus()
				}
			}
			return ""
		})
		if n := be.Requests(); n != 4 {
			t.Errorf("%d backend requests, want 4: one per soft-purged entry", n)
		}
	})
	t.Run("use_stale error", func(t *testing.T) {
		var fail atomic.Bool
		be := tagsBackend(t, &fail)
		s := startCaddy(t, globalOptions("\t\tzone default 64MiB")+fmt.Sprintf(tagsSite, "use_stale error http_503"), be, "SITE")
		s.get(t, s.url("SITE", "/img/1/a"))
		untilStored(t, activeApp(t).Zone("default"), "/img/1/a")
		activeApp(t).Zone("default").SoftPurge("/img/1/a")
		fail.Store(true)
		r := s.get(t, s.url("SITE", "/img/1/a"))
		expect(t, "soft-purged, backend failing", r, 200, "STALE", "/img/1/a #1")
		fail.Store(false)
		r = s.get(t, s.url("SITE", "/img/1/a"))
		expect(t, "soft-purged, backend back", r, 200, "EXPIRED", "/img/1/a #3")
		r = s.get(t, s.url("SITE", "/img/1/a"))
		expect(t, "refreshed", r, 200, "HIT", "/img/1/a #3")
	})
	t.Run("no use_stale", func(t *testing.T) {
		be := tagsBackend(t, nil)
		s := startCaddy(t, globalOptions("\t\tzone default 64MiB")+fmt.Sprintf(tagsSite, ""), be, "SITE")
		s.get(t, s.url("SITE", "/img/1/a"))
		untilStored(t, activeApp(t).Zone("default"), "/img/1/a")
		if n, _ := activeApp(t).Zone("default").SoftPurgePrefix("/img/"); n != 1 {
			t.Fatalf("SoftPurgePrefix marked %d, want 1", n)
		}
		expect(t, "soft-purged", s.get(t, s.url("SITE", "/img/1/a")), 200, "EXPIRED", "/img/1/a #2")
		expect(t, "refreshed", s.get(t, s.url("SITE", "/img/1/a")), 200, "HIT", "/img/1/a #2")
	})
}

// untilStored waits for a MISS's fill to commit key: the client has the
// whole body a moment before the zone has the entry.
func untilStored(t *testing.T, zone *cache.Zone, key string) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, testkit.Holds(key+" stored", func() bool {
		_, ok := zone.Get(key)
		return ok
	}))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
