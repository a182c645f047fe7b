package cache

import (
	"github.com/edgecache/edgecache/cache/disk"

	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/cache/tagindex"
)

func mustPathRule(t *testing.T, pattern string, templates ...string) PathTagRule {
	t.Helper()
	r, err := NewPathTagRule(pattern, templates)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTagRules(t *testing.T) {
	rules := &TagRules{
		Path: []PathTagRule{
			mustPathRule(t, `^/webgateway/render_(?:image|thumbnail)/(\d+)/`, "image:$1"),
			mustPathRule(t, `^/webclient/api/(?P<kind>dataset|plate)s?/(?P<id>\d+)/`, "${kind}:${id}", "$$x"),
			mustPathRule(t, `^/opt/(\d+)?/`, "o:$1"),
		},
		Query: []QueryTagRule{{Param: "id", Prefix: "image:"},
			{Param: "id", Prefix: "dataset:", Path: regexp.MustCompile(`^/api/images/$`)}},
		Header: []string{"Surrogate-Key"},
	}
	for _, tc := range []struct {
		path, query string
		hdr         http.Header
		want        []string
	}{
		{"/webgateway/render_image/42/0/0/", "", nil, []string{"image:42"}},
		{"/webgateway/render_thumbnail/7/", "id=7", nil, []string{"image:7"}},
		{"/webgateway/get_thumbnails/", "id=1&id=2&id=&id=a%20b", nil, []string{"image:1", "image:2"}},
		{"/webgateway/get_thumbnails/", "id=3,4,&id=1", nil, []string{"image:1", "image:3", "image:4"}},
		{"/webclient/api/dataset/9/", "", nil, []string{"$x", "dataset:9"}},
		{"/api/images/", "id=5", nil, []string{"dataset:5", "image:5"}},
		{"/opt//", "", nil, nil}, // an empty capture gives no tag
		{"/other", "", http.Header{"Surrogate-Key": {"a b  c", "a"}}, []string{"a", "b", "c"}},
	} {
		got := rules.Tags(tc.path, tc.query, tc.hdr)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Tags(%q, %q) = %q, want %q", tc.path, tc.query, got, tc.want)
		}
	}
	if got := rules.KeyTags("/webgateway/render_image/5/?id=6"); !slices.Equal(got, []string{"image:5", "image:6"}) {
		t.Errorf("KeyTags = %q", got)
	}
	if got := rules.KeyTags("http://host/x"); got != nil {
		t.Errorf("KeyTags of a non-URI key = %q", got)
	}
}

func TestPathTagRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern  string
		template string
		want     string
	}{
		{`^/(\d+`, "image:$1", "bad regexp"},
		{`^/(\d+)/`, "image:$2", "no capture 2"},
		{`^/(?P<id>\d+)/`, "image:${idx}", "no capture idx"},
		{`^/(\d+)/`, "image:$x", "must name a capture"},
		{`^/(\d+)/`, "image: $1", "one word"},
	} {
		_, err := NewPathTagRule(tc.pattern, []string{tc.template})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPathTagRule(%q, %q) = %v, want an error saying %q", tc.pattern, tc.template, err, tc.want)
		}
	}
}

func taggedMeta(key string, size int64, tags ...string) Meta {
	m := testMeta(key, size)
	m.Tags = tags
	return m
}

func storeTagged(t *testing.T, z *Zone, key string, tags ...string) {
	t.Helper()
	body := []byte("body of " + key)
	w := z.NewEntryWriter(taggedMeta(key, int64(len(body)), tags...), z.Mark())
	w.Write(body)
	if _, ok := w.Commit(); !ok {
		t.Fatalf("store %s refused", key)
	}
}

func TestPurgeTagMemory(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	storeTagged(t, z, "/render_image/1/", "image:1")
	storeTagged(t, z, "/thumb/1/", "image:1")
	storeTagged(t, z, "/thumbs/?id=1&id=2", "image:1", "image:2")
	storeTagged(t, z, "/render_image/2/", "image:2")
	storeTagged(t, z, "/untagged/")
	keys, err := z.Tagged("image:1")
	if err != nil || !slices.Equal(keys, []string{"/render_image/1/", "/thumb/1/", "/thumbs/?id=1&id=2"}) {
		t.Fatalf("Tagged(image:1) = %q, %v", keys, err)
	}
	n, err := z.PurgeTag("image:1")
	if err != nil || n != 3 {
		t.Fatalf("PurgeTag = %d, %v; want 3", n, err)
	}
	for _, k := range []string{"/render_image/1/", "/thumb/1/", "/thumbs/?id=1&id=2"} {
		if _, ok := z.Get(k); ok {
			t.Errorf("%s survived the purge of its tag", k)
		}
	}
	for _, k := range []string{"/render_image/2/", "/untagged/"} {
		if _, ok := z.Get(k); !ok {
			t.Errorf("%s went with another tag's purge", k)
		}
	}
	// The batch was image:2's too: the count is of what is still there.
	if n, _ := z.PurgeTag("image:2"); n != 1 {
		t.Errorf("PurgeTag(image:2) = %d, want 1", n)
	}
	if n, _ := z.PurgeTag("image:1"); n != 0 {
		t.Errorf("PurgeTag again = %d, want 0", n)
	}
	// A key stored again without the tag is not the tag's any more.
	storeTagged(t, z, "/a", "t")
	storeTagged(t, z, "/a", "u")
	if n, _ := z.PurgeTag("t"); n != 0 {
		t.Errorf("PurgeTag of a tag the key lost = %d, want 0", n)
	}
	if _, ok := z.Get("/a"); !ok {
		t.Error("the purge of a tag the entry no longer carries removed it")
	}
}

func TestSoftPurgeTag(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	storeTagged(t, z, "/1", "image:1")
	storeTagged(t, z, "/2", "image:2")
	n, err := z.SoftPurgeTag("image:1")
	now := z.clock.Now()
	if err != nil || n != 1 {
		t.Fatalf("SoftPurgeTag = %d, %v; want 1", n, err)
	}
	e, ok := z.Get("/1")
	if !ok {
		t.Fatal("a soft purge removed the entry")
	}
	if e.Fresh(now) || !e.SoftPurged || string(e.Body) != "body of /1" {
		t.Errorf("after a soft purge: fresh %v, soft-purged %v, body %q", e.Fresh(now), e.SoftPurged, e.Body)
	}
	if e, _ := z.Get("/2"); !e.Fresh(now) {
		t.Error("another tag's entry expired")
	}
	// Still the tag's, and counted as marked again.
	if n, _ := z.SoftPurgeTag("image:1"); n != 1 {
		t.Errorf("second soft purge marked %d, want 1", n)
	}
	if got := z.Stats.SoftPurged.Load(); got != 2 {
		t.Errorf("SoftPurged = %d, want 2", got)
	}
	// A store begun before the soft purge is refused: it may carry the
	// state before the change.
	mark := z.Mark()
	z.SoftPurge("/2")
	w := z.NewEntryWriter(taggedMeta("/2", 1, "image:2"), mark)
	w.Write([]byte("x"))
	if _, ok := w.Commit(); ok {
		t.Error("a store begun before the soft purge was kept")
	}
	if n, _ := z.SoftPurgePrefix("/"); n != 2 {
		t.Errorf("SoftPurgePrefix = %d, want 2", n)
	}
}

func TestTagIndexBytes(t *testing.T) {
	z := newTestZone(t, 256<<20, 0)
	const images, perImage = 1000, 10
	for i := range images {
		for j := range perImage {
			storeTagged(t, z, fmt.Sprintf("/img/%d/%d", i, j), fmt.Sprintf("image:%d", i))
		}
	}
	bytes, tags, refs := z.TagIndexBytes()
	if tags != images || refs != images*perImage {
		t.Fatalf("index holds %d tags and %d references, want %d and %d", tags, refs, images, images*perImage)
	}
	tagBytes := int64(0)
	for i := range images {
		tagBytes += int64(len(fmt.Sprintf("image:%d", i))) + tagindex.SlotBytes
	}
	perRef := float64(bytes-tagBytes) / float64(refs)
	t.Logf("tag index: %d bytes, %.1f B per reference beyond the tag", bytes, perRef)
	if perRef > 17 {
		t.Errorf("%.1f B per reference", perRef)
	}
	for i := range images {
		if _, err := z.PurgeTag(fmt.Sprintf("image:%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if bytes, tags, refs := z.TagIndexBytes(); bytes != 0 || tags != 0 || refs != 0 {
		t.Errorf("after purging every tag: %d bytes, %d tags, %d references", bytes, tags, refs)
	}
}

// An entry that carries several of the purged tags counts once.
func TestPurgeTagsCountOnce(t *testing.T) {
	z := newTestZone(t, 64<<20, 0)
	storeTagged(t, z, "/both", "a", "b")
	storeTagged(t, z, "/a", "a")
	if n, err := z.SoftPurgeTags([]string{"a", "b"}); err != nil || n != 2 {
		t.Errorf("SoftPurgeTags(a, b) = %d, %v; want 2", n, err)
	}
	if n, err := z.PurgeTags([]string{"a", "b", "c"}); err != nil || n != 2 {
		t.Errorf("PurgeTags(a, b, c) = %d, %v; want 2", n, err)
	}
}

// On disk: a purge by tag finds entries too large for memory, and after
// a restart (the store reopened) the entries the loader read back; a
// soft purge rewrites the entry file expired.
func TestPurgeTagDisk(t *testing.T) {
	dir := t.TempDir()
	d := openStore(t, dir, disk.Options{})
	z, err := NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, MemoryEntryMax: 8, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, d)
	for i := range 3 {
		storeTagged(t, z, fmt.Sprintf("/img/1/%d", i), "image:1")
		storeTagged(t, z, fmt.Sprintf("/img/2/%d", i), "image:2")
	}
	if n, err := z.SoftPurgeTag("image:2"); err != nil || n != 3 {
		t.Fatalf("SoftPurgeTag on disk = %d, %v; want 3", n, err)
	}
	if e, ok := z.Get("/img/2/0"); !ok || e.Fresh(z.clock.Now()) || !e.SoftPurged {
		t.Fatalf("after a soft purge on disk: found %v, %+v", ok, e)
	}
	z.Close()
	d.Close()

	d = openStore(t, dir, disk.Options{})
	z, err = NewZone(ZoneConfig{Name: "t", MemorySize: 16 << 20, MemoryEntryMax: 8, Disk: d})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	waitLoaded(t, d)
	if b, _, _ := z.TagIndexBytes(); b == 0 {
		t.Error("the tag index is empty after the restart")
	}
	if e, ok := z.Get("/img/2/1"); !ok || e.Fresh(z.clock.Now()) || !e.SoftPurged {
		t.Errorf("the soft purge did not survive the restart: %v %+v", ok, e)
	}
	keys, err := z.Tagged("image:1")
	if err != nil || len(keys) != 3 {
		t.Errorf("Tagged(image:1) after a restart = %q, %v", keys, err)
	}
	if n, err := z.PurgeTag("image:1"); err != nil || n != 3 {
		t.Errorf("PurgeTag(image:1) after a restart = %d, %v; want 3", n, err)
	}
	if _, ok := z.Get("/img/1/0"); ok {
		t.Error("a purged entry is still on disk")
	}
	if n, _ := z.PurgeTag("image:2"); n != 3 {
		t.Errorf("PurgeTag(image:2) = %d, want 3", n)
	}
}
