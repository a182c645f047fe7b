package production_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// imageURLs are the cached URL classes of Caddyfile.example that name
// image id, as OMERO.web's url patterns shape them, each tagged image:<id>
// by the example's tags block; batch is an id in the batch thumbnail URL
// besides id (so that it names no other image of the test).
func imageURLs(id, batch int) []string {
	var uris []string
	for _, f := range []string{
		"/webgateway/render_image/%d/0/0/",
		"/webgateway/render_image_region/%d/0/0/?region=0,0,64,64",
		"/webgateway/render_split_channel/%d/0/0/",
		"/webgateway/render_birds_eye_view/%d/",
		"/webgateway/render_thumbnail/%d/",
		"/webclient/render_image/%d/0/0/",
		"/webclient/render_thumbnail/%d/",
		"/webgateway/get_thumbnail/%d/",
		"/webclient/get_thumbnail/%d/",
		"/webclient/img_detail/%d/",
		"/webclient/metadata_details/image/%d/",
		"/webclient/metadata_acquisition/image/%d/",
		"/api/v0/m/images/%d/",
		"/iviewer/image_data/%d/",
	} {
		uris = append(uris, fmt.Sprintf(f, id))
	}
	return append(uris, fmt.Sprintf("/webgateway/get_thumbnails/?id=%d&id=%d", id, batch))
}

// edgecache runs a subcommand of the binary and returns its output; it
// fails the test unless the command succeeds.
func edgecache(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("edgecache %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// count reads the number before word in a command's output ("purged 15
// entries").
func count(t *testing.T, out, word string) int {
	t.Helper()
	m := regexp.MustCompile(`(\d+) ` + word).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no count of %q in %q", word, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func expectStatus(t *testing.T, e *edge, uris []string, want ...string) {
	t.Helper()
	for _, uri := range uris {
		r := e.get(t, e.Public, uri)
		got := r.Header.Get("X-Cache-Status")
		if r.Status != 200 || !strings.Contains(" "+strings.Join(want, " ")+" ", " "+got+" ") {
			t.Errorf("GET %s: %d %s, want 200 %s", uri, r.Status, got, strings.Join(want, " or "))
		}
	}
}

// pathOf is the path part of a URI, as the stand-ins count their hits.
func pathOf(uri string) string {
	u, _ := url.Parse(uri)
	return u.Path
}

// One purge by tag reaches every cached URL of an image, in every zone,
// the batch thumbnail naming it included, and nothing of another image; a
// soft purge serves the old answers while one background request per entry
// refreshes them; after a restart a purge by tag finds the entries on disk.
func TestPurgeByTag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEdge(t, edgeConfig{Dir: dir})
	first, second := imageURLs(11, 21), imageURLs(12, 22)
	for _, uri := range append(append([]string{}, first...), second...) {
		expectStatus(t, e, []string{uri}, "MISS")
		expectStatus(t, e, []string{uri}, "HIT")
	}
	keys := edgecache(t, "cache-keys", "--address", e.Admin, "--tag", "image:11")
	for _, uri := range first {
		if !strings.Contains(keys, uri+"\n") {
			t.Errorf("cache-keys --tag image:11 does not list %s:\n%s", uri, keys)
		}
	}

	out := edgecache(t, "purge", "--address", e.Admin, "--tag", "image:11")
	t.Log(out)
	if n := count(t, out, "entr"); n != len(first) {
		t.Errorf("purge --tag image:11 purged %d entries, want %d: %s", n, len(first), out)
	}
	expectStatus(t, e, second, "HIT")
	expectStatus(t, e, first, "MISS")

	// A soft purge: the old answers are served while one background
	// request per entry refreshes them, then the new ones are hits.
	hits := make(map[string]int)
	for _, uri := range second {
		hits[pathOf(uri)] = e.Cluster.Hits(pathOf(uri))
	}
	out = edgecache(t, "purge", "--address", e.Admin, "--tag", "image:12", "--soft")
	t.Log(out)
	if n := count(t, out, "entr"); n != len(second) || !strings.Contains(out, "marked") {
		t.Errorf("purge --tag image:12 --soft marked %d entries, want %d: %s", n, len(second), out)
	}
	expectStatus(t, e, second, "STALE", "UPDATING")
	testkit.Eventually(t, 20*time.Second, func() string {
		for _, uri := range second {
			if n := e.Cluster.Hits(pathOf(uri)) - hits[pathOf(uri)]; n != 1 {
				return fmt.Sprintf("%s: %d backend requests since the soft purge, want 1", uri, n)
			}
			if r := e.get(t, e.Public, uri); r.Header.Get("X-Cache-Status") != "HIT" {
				return fmt.Sprintf("%s: %s", uri, r.Header.Get("X-Cache-Status"))
			}
		}
		return ""
	})
	for _, uri := range second {
		if n := e.Cluster.Hits(pathOf(uri)) - hits[pathOf(uri)]; n != 1 {
			t.Errorf("%s: %d backend requests after the soft purge, want 1", uri, n)
		}
	}

	// After a restart, the tags are read back from the entry files.
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	e = newEdge(t, edgeConfig{Dir: dir})
	var purged int
	testkit.Eventually(t, 20*time.Second, func() string {
		cmd := exec.Command(binary, "purge", "--address", e.Admin, "--tag", "image:12")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Sprintf("purge --tag after a restart: %v: %s", err, out) // the index still loading
		}
		purged = count(t, string(out), "entr")
		return ""
	})
	if purged != len(second) {
		t.Errorf("purge --tag image:12 after a restart purged %d entries, want %d", purged, len(second))
	}
	expectStatus(t, e, first, "HIT")
	expectStatus(t, e, second, "MISS")
}

// refresh --tag sends every cached URL of the tag through the cache
// buster: one backend request each, then the public listener serves the
// new version as a HIT; the other image's URLs are left alone.
func TestRefreshByTag(t *testing.T) {
	t.Parallel()
	e := newEdge(t, edgeConfig{})
	first, second := imageURLs(31, 41), imageURLs(32, 42)
	before := make(map[string]string)
	for _, uri := range append(append([]string{}, first...), second...) {
		before[uri] = e.get(t, e.Public, uri).Body
	}
	e.Cluster.SetVersion("refreshed")
	hits := make(map[string]int)
	for _, uri := range append(append([]string{}, first...), second...) {
		hits[uri] = e.Cluster.Hits(pathOf(uri))
	}
	list := t.TempDir() + "/refresh.urls"
	cmd := exec.Command(binary, "refresh", "--address", e.Admin, "--tag", "image:31", "--via", "http://"+e.Refresh,
		"--concurrency", "4", "--rate", "100", "--list", list, "--no-progress")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("refresh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("refreshing %d cached entries", len(first))) {
		t.Errorf("refresh output: %s", out)
	}
	for _, uri := range first {
		if n := e.Cluster.Hits(pathOf(uri)) - hits[uri]; n != 1 {
			t.Errorf("%s: %d backend requests by the refresh, want 1", uri, n)
		}
		r := e.get(t, e.Public, uri)
		if r.Header.Get("X-Cache-Status") != "HIT" {
			t.Errorf("%s after the refresh: %s, want HIT", uri, r.Header.Get("X-Cache-Status"))
		}
	}
	if r := e.get(t, e.Public, first[0]); r.Body == before[first[0]] {
		t.Errorf("%s: the old version is still served after the refresh", first[0])
	}
	for _, uri := range second[:len(second)-1] { // the batch shares its path with the first's
		if n := e.Cluster.Hits(pathOf(uri)) - hits[uri]; n != 0 {
			t.Errorf("%s of another image: %d backend requests by the refresh", uri, n)
		}
	}
	if _, err := os.Stat(list); !os.IsNotExist(err) {
		t.Errorf("the list of a complete refresh is kept: %v", err)
	}
}

// A zone whose key is not the request URI cannot be refreshed through the
// cache buster: refresh says so and stops.
func TestRefreshNeedsURLKeys(t *testing.T) {
	t.Parallel()
	config := strings.Replace(backendCaddyfile, "zone api\n\t\t\tvalid 200 1h",
		"zone api\n\t\t\tvalid 200 1h\n\t\t\tkey {http.request.host}{http.request.uri}", 1)
	if config == backendCaddyfile {
		t.Fatal("the key line was not added")
	}
	e, _ := newEdgeFor(t, config, versioned)
	if r := e.get(t, e.Public, "/api/x/"); r.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("GET /api/x/: %s", r.Header.Get("X-Cache-Status"))
	}
	cmd := exec.Command(binary, "refresh", "--address", e.Admin, "--zone", "api", "--prefix", "", "--via", "http://"+e.Refresh,
		"--list", t.TempDir()+"/l.urls")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "is not a URL") {
		t.Errorf("refresh of a zone keyed by host and URI: %v\n%s", err, out)
	}
}

// The edge_cache_purge handler on the real binary: 401 without the token
// or with another, the key purged with it (PURGE <uri>), and a purge by
// tag as POST.
func TestPurgeEndpoint(t *testing.T) {
	t.Parallel()
	purgeAddr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	config := strings.Replace(backendCaddyfile, "\t\tedge_cache {\n\t\t\tvalid 200 1h\n\t\t}",
		"\t\tedge_cache {\n\t\t\tvalid 200 1h\n\t\t\tignore_headers Set-Cookie\n\t\t\ttags {\n\t\t\t\tpath ^/img/(\\d+)/ image:$1\n\t\t\t}\n\t\t}", 1) + `
http://{$PURGE_ADDR} {
	bind 127.0.0.1
	edge_cache_purge {
		token {env.PURGE_TOKEN}
	}
}
`
	if !strings.Contains(config, "tags {") {
		t.Fatal("the tags block was not added")
	}
	be := testkit.NewBackend(t, versioned)
	dir := t.TempDir()
	caddyfile := dir + "/Caddyfile"
	if err := os.WriteFile(caddyfile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEdge(t, edgeConfig{Dir: dir, Caddyfile: caddyfile, Env: map[string]string{
		"OMERO_READONLY": be.Addr(), "PURGE_ADDR": purgeAddr, "PURGE_TOKEN": "t0ken"}})
	for _, uri := range []string{"/img/1/a", "/img/1/b", "/img/2/a"} {
		expectStatus(t, e, []string{uri}, "MISS")
		expectStatus(t, e, []string{uri}, "HIT")
	}
	send := func(method, uri, body, auth string) response {
		t.Helper()
		header := []string{}
		if auth != "" {
			header = append(header, "Authorization", auth)
		}
		return e.request(t, method, purgeAddr, uri, body, header...)
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		if r := send("PURGE", "/img/1/a", "", auth); r.Status != 401 {
			t.Errorf("PURGE with Authorization %q: %d %s, want 401", auth, r.Status, r.Body)
		}
	}
	expectStatus(t, e, []string{"/img/1/a"}, "HIT")
	if r := send("PURGE", "/img/1/a", "", "Bearer t0ken"); r.Status != 200 || !strings.Contains(r.Body, `"purged":1`) {
		t.Errorf("PURGE with the token: %d %s", r.Status, r.Body)
	}
	expectStatus(t, e, []string{"/img/1/a"}, "MISS")
	if r := send("POST", "/", `{"tags":["image:1"]}`, "Bearer t0ken"); r.Status != 200 || !strings.Contains(r.Body, `"purged":2`) {
		t.Errorf("POST tags with the token: %d %s", r.Status, r.Body)
	}
	expectStatus(t, e, []string{"/img/1/b"}, "MISS")
	expectStatus(t, e, []string{"/img/2/a"}, "HIT")
}
