package omerodemo

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestURLShapes(t *testing.T) {
	s := New("ro-1", Options{Version: "v7"})
	cases := []struct {
		path, contentType string
		cookie            bool
	}{
		{"/webgateway/render_image/12/0/0/", "image/png", true},
		{"/webgateway/render_image/12/", "image/png", true},
		{"/webclient/render_image/12/3/4/", "image/png", true},
		{"/webgateway/render_thumbnail/12/", "image/png", true},
		{"/webgateway/render_thumbnail/12/64/", "image/png", true},
		{"/webclient/render_thumbnail/12/", "image/png", true},
		{"/webclient/get_thumbnail/12/", "image/png", true},
		{"/webclient/get_thumbnail/12/64/", "image/png", true},
		{"/webgateway/get_thumbnails/?id=12&id=13", "application/json", true},
		{"/webclient/get_thumbnails/64/?id=12", "application/json", true},
		{"/webclient/metadata_details/12/", "text/html; charset=utf-8", true},
		{"/webclient/metadata_details/image/12/", "text/html; charset=utf-8", true},
		{"/webclient/img_detail/12/", "text/html; charset=utf-8", true},
		{"/api/", "application/json", true},
		{"/api/v0/", "application/json", true},
		{"/api/v0/m/images/12/", "application/json", true},
		{"/static/webgateway/css/ome.body.css", "text/css; charset=utf-8", false},
		{"/static/webgateway/img/icon.png", "image/png", false},
		{"/static/webclient/javascript/ome.js", "text/javascript; charset=utf-8", false},
		{"/webclient/", "text/html; charset=utf-8", true},
		{"/webclient/login/", "text/html; charset=utf-8", true},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp := get(t, s, c.path)
			b := body(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, b)
			}
			if got := resp.Header.Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type %q, want %q", got, c.contentType)
			}
			if got := resp.Header.Get(HeaderNode); got != "ro-1" {
				t.Errorf("%s %q", HeaderNode, got)
			}
			if !strings.Contains(b, "ro-1") || !strings.Contains(b, "v7") {
				t.Errorf("body does not name node and version: %.200q", b)
			}
			hasCookie := len(resp.Cookies()) > 0
			if hasCookie != c.cookie {
				t.Errorf("Set-Cookie present %v, want %v", hasCookie, c.cookie)
			}
			// Django's session middleware adds Vary: Cookie and the cookie;
			// only never_cache views (the login) add Cache-Control.
			wantCC := ""
			if strings.Contains(c.path, "login") {
				wantCC = NeverCache
			}
			if cc := resp.Header.Get("Cache-Control"); cc != wantCC {
				t.Errorf("Cache-Control %q, want %q", cc, wantCC)
			}
			if _, ok := resp.Header["Expires"]; ok != (wantCC != "") {
				t.Errorf("Expires %q present %v, want %v", resp.Header.Get("Expires"), ok, wantCC != "")
			}
			if c.cookie {
				if v := resp.Header.Get("Vary"); v != "Cookie" {
					t.Errorf("Vary %q", v)
				}
				if resp.Cookies()[0].Name != SessionCookie {
					t.Errorf("cookie %q", resp.Cookies()[0].Name)
				}
			}
			if c.contentType == "image/png" {
				if _, err := png.Decode(strings.NewReader(b)); err != nil {
					t.Errorf("not a valid PNG: %v", err)
				}
			}
		})
	}
}

func TestNotServed(t *testing.T) {
	s := New("ro-1", Options{})
	for _, p := range []string{"/about/", "/about/index.html", "/webgateway/render_image/abc/", "/webgateway/render_image/0/", "/static/x.txt", "/nothing"} {
		if resp := get(t, s, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	resp := get(t, s, "/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/webclient/" {
		t.Errorf("/: status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestVersionChangesBodies(t *testing.T) {
	s := New("ro-1", Options{})
	for _, p := range []string{"/webgateway/render_thumbnail/5/", "/api/v0/m/images/5/", "/static/a.css"} {
		before := body(t, get(t, s, p))
		if again := body(t, get(t, s, p)); again != before {
			t.Errorf("%s: body differs without a version change", p)
		}
		s.SetVersion("2")
		after := body(t, get(t, s, p))
		s.SetVersion("1")
		if after == before {
			t.Errorf("%s: body unchanged after SetVersion", p)
		}
	}
}

func TestImagesDiffer(t *testing.T) {
	s := New("ro-1", Options{})
	a := body(t, get(t, s, "/webgateway/render_image/1/0/0/"))
	b := body(t, get(t, s, "/webgateway/render_image/2/0/0/"))
	c := body(t, get(t, s, "/webgateway/render_image/1/1/0/"))
	if a == b || a == c {
		t.Error("different images or planes have the same body")
	}
}

func TestHits(t *testing.T) {
	s := New("ro-1", Options{})
	get(t, s, "/api/v0/")
	get(t, s, "/api/v0/?_=123")
	get(t, s, "/webclient/get_thumbnail/3/")
	if n := s.Hits("/api/v0/"); n != 2 {
		t.Errorf("Hits(/api/v0/) = %d, want 2", n)
	}
	if n := s.Hits("/webclient/get_thumbnail/3/"); n != 1 {
		t.Errorf("Hits(thumbnail) = %d, want 1", n)
	}
	if n := s.Total(); n != 3 {
		t.Errorf("Total = %d, want 3", n)
	}
	s.ResetHits()
	if s.Total() != 0 || s.Hits("/api/v0/") != 0 {
		t.Error("ResetHits left counts")
	}
}

func TestDelay(t *testing.T) {
	s := New("ro-1", Options{Delay: 150 * time.Millisecond})
	start := time.Now()
	get(t, s, "/webgateway/render_thumbnail/1/")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("render answered after %v, before the 150ms delay", d)
	}
	start = time.Now()
	get(t, s, "/api/v0/", HeaderDelay, "100ms")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("%s: answered after %v", HeaderDelay, d)
	}
	if resp := get(t, s, "/api/v0/", HeaderDelay, "soon"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad delay: status %d", resp.StatusCode)
	}
}

func TestDelayStopsWhenClientLeaves(t *testing.T) {
	s := New("ro-1", Options{Delay: time.Hour})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c := &http.Client{Timeout: 100 * time.Millisecond}
	if _, err := c.Get(ts.URL + "/webgateway/render_thumbnail/1/"); err == nil {
		t.Fatal("request with a one-hour delay answered")
	}
	// ts.Close (cleanup) blocks until handlers return: the test ends only
	// if the handler noticed the client went away.
}

func TestStatusControl(t *testing.T) {
	s := New("ro-1", Options{})
	resp := get(t, s, "/webgateway/render_thumbnail/1/", HeaderStatus, "502")
	if resp.StatusCode != 502 {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if resp.Header.Get(HeaderNode) != "ro-1" {
		t.Error("no node header on a forced status")
	}
	if resp := get(t, s, "/api/v0/", HeaderStatus, "99"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad status: got %d", resp.StatusCode)
	}
}

func TestSessionCookie(t *testing.T) {
	s := New("ro-1", Options{})
	first := get(t, s, "/api/v0/").Cookies()
	second := get(t, s, "/api/v0/").Cookies()
	if len(first) != 1 || len(second) != 1 || first[0].Value == second[0].Value {
		t.Fatalf("requests without cookie should get distinct new sessions: %v %v", first, second)
	}
	again := get(t, s, "/api/v0/", "Cookie", "sessionid="+first[0].Value).Cookies()
	if len(again) != 1 || again[0].Value != first[0].Value {
		t.Errorf("known session not kept: %v", again)
	}
}

func TestLogin(t *testing.T) {
	s := New("rw", Options{})
	form := url.Values{"username": {"alice"}, "password": {"secret"}}
	r := httptest.NewRequest(http.MethodPost, "/webclient/login/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	resp := w.Result()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/webclient/" {
		t.Fatalf("login: status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != SessionCookie {
		t.Fatalf("login cookies %v", cookies)
	}
	private := body(t, get(t, s, "/webclient/metadata_details/4/", "Cookie", "sessionid="+cookies[0].Value))
	if !strings.Contains(private, "Logged in as alice") {
		t.Errorf("logged-in page does not name the user: %q", private)
	}
	public := body(t, get(t, s, "/webclient/metadata_details/4/"))
	if strings.Contains(public, "alice") || !strings.Contains(public, "public user") {
		t.Errorf("anonymous page: %q", public)
	}

	r = httptest.NewRequest(http.MethodPost, "/webclient/login/", strings.NewReader("username=bob"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("login without password: status %d", w.Code)
	}
}

func TestAPIJSON(t *testing.T) {
	s := New("ro-2", Options{Version: "3"})
	var v struct {
		Data struct {
			ID   int64  `json:"@id"`
			Name string `json:"Name"`
		} `json:"data"`
		Meta struct{ Node, Version string } `json:"meta"`
	}
	if err := json.NewDecoder(get(t, s, "/api/v0/m/images/42/").Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Data.ID != 42 || v.Meta.Node != "ro-2" || v.Meta.Version != "3" {
		t.Errorf("decoded %+v", v)
	}
}

func TestPNGText(t *testing.T) {
	b, err := renderPNG(8, "seed", "hello from node x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !bytes.Contains(b, []byte("tEXtComment\x00hello from node x")) {
		t.Error("text chunk missing")
	}
}

// The batch thumbnail endpoint answers a data URI per requested id.
func TestThumbnailsBatch(t *testing.T) {
	s := New("ro-1", Options{})
	var got map[string]any
	if err := json.Unmarshal([]byte(body(t, get(t, s, "/webgateway/get_thumbnails/?id=3&id=4&id=x"))), &got); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"3", "4"} {
		if v, _ := got[id].(string); !strings.HasPrefix(v, "data:image/png;base64,") {
			t.Errorf("id %s: %.40q, want a PNG data URI", id, v)
		}
	}
	if _, ok := got["x"]; ok {
		t.Error("a bad id got a thumbnail")
	}
}

// The JSON API's login: a POST starts a session (its cookie comes back,
// with never_cache headers); a GET is refused with 405.
func TestAPILogin(t *testing.T) {
	s := New("ro-1", Options{})
	resp := get(t, s, "/api/v0/login/")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Cache-Control") != NeverCache {
		t.Errorf("GET: status %d, Cache-Control %q; want 405, %q", resp.StatusCode, resp.Header.Get("Cache-Control"), NeverCache)
	}
	r := httptest.NewRequest(http.MethodPost, "/api/v0/login/", strings.NewReader(url.Values{"username": {"ann"}, "password": {"x"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	resp = w.Result()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 || resp.Header.Get("Cache-Control") != NeverCache {
		t.Fatalf("POST: status %d, cookies %v, Cache-Control %q", resp.StatusCode, resp.Cookies(), resp.Header.Get("Cache-Control"))
	}
	page := body(t, get(t, s, "/webclient/", "Cookie", SessionCookie+"="+resp.Cookies()[0].Value))
	if !strings.Contains(page, "Logged in as ann") {
		t.Errorf("the API session does not log in the web client: %q", page)
	}
}

// A test can give one answer the Cache-Control a cache_control view would.
func TestCacheControlHeader(t *testing.T) {
	s := New("ro-1", Options{})
	if cc := get(t, s, "/api/v0/", HeaderCacheControl, "max-age=60").Header.Get("Cache-Control"); cc != "max-age=60" {
		t.Errorf("Cache-Control %q, want max-age=60", cc)
	}
}
