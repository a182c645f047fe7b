package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/edgecache/edgecache/internal/adminapi"
)

const purgeSite = `
:$SITE {
	edge_cache {
		valid 200 1h
		tags {
			path ^/img/(\d+)/ image:$1
		}
	}
	reverse_proxy $BACKEND
}
:$PURGE {
	edge_cache_purge {
		token {env.TEST_PURGE_TOKEN}
	}
}
`

func (s *site) send(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestPurgeHandler(t *testing.T) {
	t.Setenv("TEST_PURGE_TOKEN", "s3cret")
	be := tagsBackend(t, nil)
	s := startCaddy(t, globalOptions("\t\tzone default 64MiB")+purgeSite, be, "SITE", "PURGE")
	for _, p := range []string{"/img/1/a", "/img/1/b", "/img/2/a"} {
		s.get(t, s.url("SITE", p))
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "Basic s3cret", "s3cret"} {
		code, body := s.send(t, "PURGE", s.url("PURGE", "/img/1/a"), "", "Authorization", auth)
		if code != http.StatusUnauthorized {
			t.Errorf("PURGE with Authorization %q: %d %s, want 401", auth, code, body)
		}
	}
	if r := s.get(t, s.url("SITE", "/img/1/a")); r.cacheStatus() != "HIT" {
		t.Fatalf("an unauthorized PURGE purged: %s", r.cacheStatus())
	}
	code, body := s.send(t, "PURGE", s.url("PURGE", "/img/1/a"), "", "Authorization", "Bearer s3cret")
	var resp adminapi.PurgeResponse
	if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || resp.Purged != 1 {
		t.Errorf("PURGE /img/1/a: %d %s, want 200 purged 1", code, body)
	}
	if r := s.get(t, s.url("SITE", "/img/1/a")); r.cacheStatus() != "MISS" {
		t.Errorf("after PURGE: %s, want MISS", r.cacheStatus())
	}
	// POST takes the admin API's purge body.
	code, body = s.send(t, http.MethodPost, s.url("PURGE", "/"), `{"tags": ["image:1"], "soft": true}`, "Authorization", "bearer s3cret")
	resp = adminapi.PurgeResponse{}
	if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil || resp.Marked == nil || *resp.Marked != 2 {
		t.Errorf("POST soft tags: %d %s, want 200 marked 2", code, body)
	}
	code, body = s.send(t, http.MethodPost, s.url("PURGE", "/"), `{"tags": ["image:2"]}`, "Authorization", "Bearer s3cret")
	if code != 200 || !strings.Contains(body, `"purged":1`) {
		t.Errorf("POST tags: %d %s, want purged 1", code, body)
	}
	code, body = s.send(t, http.MethodPost, s.url("PURGE", "/"), `{"key": "/a", "tags": ["x"]}`, "Authorization", "Bearer s3cret")
	if code != http.StatusBadRequest || !strings.Contains(body, "exactly one") {
		t.Errorf("POST key and tags: %d %s, want 400", code, body)
	}
	code, _ = s.send(t, http.MethodGet, s.url("PURGE", "/"), "", "Authorization", "Bearer s3cret")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", code)
	}
	// The status page says what each purge was and who made it; the
	// refused ones are not there.
	var got []string
	for _, ev := range activeApp(t).Zone("default").Activity().Events() {
		got = append(got, fmt.Sprintf("%s %s %d %s", ev.Kind, ev.Target, ev.Count, ev.By))
	}
	want := []string{"purge tag image:2 1 purge endpoint", "soft purge tag image:1 2 purge endpoint", "purge key /img/1/a 1 purge endpoint"}
	if !slices.Equal(got, want) {
		t.Errorf("recorded purges:\n%q\nwant\n%q", got, want)
	}
}

// A config without a token fails at load: from the Caddyfile with its
// line, and from JSON (or an empty variable) when provisioned.
func TestPurgeHandlerNeedsToken(t *testing.T) {
	src := "{\n\tadmin off\n}\n:8080 {\n\tedge_cache_purge\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:"+strconv.Itoa(lineOf(t, src, "=edge_cache_purge"))) || !strings.Contains(err.Error(), "token is required") {
		t.Errorf("no token: %v, want an error at Caddyfile:5", err)
	}
	t.Setenv("TEST_PURGE_EMPTY", "")
	p := &PurgeHandler{Token: "{env.TEST_PURGE_EMPTY}"}
	if err := p.Provision(caddy.Context{}); err == nil || !strings.Contains(err.Error(), "token is required") {
		t.Errorf("an empty token: %v", err)
	}
	p = &PurgeHandler{Token: "x"}
	if err := p.Provision(caddy.Context{}); err != nil {
		t.Error(err)
	}
}
