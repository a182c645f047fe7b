package fleet

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// A purge by tag removes from Redis the values stored with the tag, and
// nothing else, reading the tag's set (which expires with its entries),
// never the keyspace; its event reaches the others with the tag.
func TestPurgeTagRedis(t *testing.T) {
	r := testkit.StartRedis(t)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "b"}, nil)
	_, recB := follow(t, b, nil)
	ctx := context.Background()
	tagged := func(key string, tags ...string) {
		e := entry(key, []byte("body of "+key))
		e.Tags = tags
		store(t, a, "z", key, e)
	}
	tagged("/i/1/a", "image:1")
	tagged("/i/1/b", "image:1")
	tagged("/thumbs?id=1&id=2", "image:1", "image:2")
	tagged("/i/2/a", "image:2")
	if ttl, _ := r.CLI("PTTL", a.keys.tag("z", "image:1")); ttl == "-1" || ttl == "-2" {
		t.Errorf("the tag's set has no expiry: PTTL %s", ttl)
	}
	n, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgeTag, Key: "image:1"}, nil)
	if err != nil || n != 3 {
		t.Fatalf("Purge(image:1) = %d, %v; want 3", n, err)
	}
	for _, k := range []string{"/i/1/a", "/i/1/b", "/thumbs?id=1&id=2"} {
		if _, ok := a.Get(ctx, "z", k, nil); ok {
			t.Errorf("%s is still in Redis", k)
		}
	}
	if _, ok := a.Get(ctx, "z", "/i/2/a", nil); !ok {
		t.Error("/i/2/a went with another tag")
	}
	if n, _ := r.CLI("EXISTS", a.keys.tag("z", "image:1")); n != "0" {
		t.Errorf("the purged tag's set is left: EXISTS %s", n)
	}
	// A soft purge keeps the value, expired.
	n, err = a.Purge(ctx, Event{Zone: "z", Kind: KindPurgeTag, Key: "image:2", Soft: true}, nil)
	if err != nil || n != 1 {
		t.Fatalf("soft Purge(image:2) = %d, %v; want 1 (the batch went with image:1)", n, err)
	}
	e, ok := a.Get(ctx, "z", "/i/2/a", nil)
	if !ok || e.Fresh(time.Now()) || !e.SoftPurged || string(e.Body) != "body of /i/2/a" {
		t.Errorf("after a soft purge: found %v, %+v", ok, e)
	}
	if ttl, _ := r.CLI("PTTL", a.keys.entry("z", "/i/2/a")); ttl == "-1" || ttl == "-2" {
		t.Errorf("the soft-purged value lost its expiry: PTTL %s", ttl)
	}
	recB.waitSeen(t, 5*time.Second, "purge_tag z image:1", "purge_tag z image:2 soft")
}

// Soft purges by key and by prefix mark the values and keep them.
func TestSoftPurgeRedis(t *testing.T) {
	r := testkit.StartRedis(t)
	a := openFleet(t, Config{Addrs: []string{r.Addr}, Node: "a"}, nil)
	ctx := context.Background()
	for i := range 3 {
		store(t, a, "z", "/p/"+strconv.Itoa(i), entry("/p/"+strconv.Itoa(i), []byte("x")))
	}
	if n, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgeKey, Key: "/p/0", Soft: true}, nil); err != nil || n != 1 {
		t.Fatalf("soft purge of a key = %d, %v", n, err)
	}
	if n, err := a.Purge(ctx, Event{Zone: "z", Kind: KindPurgePrefix, Key: "/p/", Soft: true}, nil); err != nil || n != 3 {
		t.Fatalf("soft purge of a prefix = %d, %v; want 3", n, err)
	}
	for i := range 3 {
		if e, ok := a.Get(ctx, "z", "/p/"+strconv.Itoa(i), nil); !ok || e.Fresh(time.Now()) {
			t.Errorf("/p/%d: found %v, fresh after a soft purge", i, ok)
		}
	}
}
