package fleet

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
)

func testMeta(key string) cache.Meta {
	now := time.Unix(1_800_000_000, 123456789)
	return cache.Meta{
		Key: key, Status: 200,
		Header:   http.Header{"Content-Type": {"image/jpeg"}, "Etag": {`"v1"`}, "Content-Length": {"5"}},
		StoredAt: now, InitialAge: 3 * time.Second, Date: now.UTC().Format(http.TimeFormat),
		ValidUntil: now.Add(time.Hour), NoCache: true,
		StaleWhileRevalidate: time.Minute, StaleIfError: 2 * time.Minute,
		Variant: "en", VaryNames: []string{"Accept-Language"},
	}
}

func TestValueRoundTrip(t *testing.T) {
	k := keys{"p:"}
	rk := k.entry("z", "/a?b")
	m := testMeta("/a?b")
	v, err := encodeValue(rk, m, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := decodeValue(rk, "/a?b", v)
	if err != nil {
		t.Fatal(err)
	}
	m.BodySize = 5
	if !e.StoredAt.Equal(m.StoredAt) || !e.ValidUntil.Equal(m.ValidUntil) {
		t.Errorf("times %v %v, want %v %v", e.StoredAt, e.ValidUntil, m.StoredAt, m.ValidUntil)
	}
	e.StoredAt, e.ValidUntil = m.StoredAt, m.ValidUntil
	if string(e.Body) != "hello" || e.Key != m.Key || e.Status != 200 || e.InitialAge != m.InitialAge ||
		e.Date != m.Date || !e.NoCache || e.StaleWhileRevalidate != time.Minute || e.StaleIfError != 2*time.Minute ||
		e.BodySize != 5 || e.Variant != "en" || len(e.VaryNames) != 1 || e.Header.Get("Etag") != `"v1"` {
		t.Errorf("decoded %+v", e.Meta)
	}
	for k, vs := range e.Header {
		if cap(vs) != len(vs) {
			t.Errorf("header %s not clipped", k)
		}
	}
}

// Every damaged byte, another key, another prefix: a miss, never an entry.
func TestValueCorrupt(t *testing.T) {
	k := keys{"p:"}
	rk := k.entry("z", "/a")
	v, _ := encodeValue(rk, testMeta("/a"), bytes.Repeat([]byte("x"), 100))
	for i := range v {
		bad := bytes.Clone(v)
		bad[i] ^= 0x20
		if _, err := decodeValue(rk, "/a", bad); err == nil {
			t.Fatalf("byte %d flipped: decoded", i)
		}
	}
	for _, n := range []int{0, 3, 8, len(v) - 1} {
		if _, err := decodeValue(rk, "/a", v[:n]); err == nil {
			t.Errorf("cut to %d bytes: decoded", n)
		}
	}
	if _, err := decodeValue(keys{"q:"}.entry("z", "/a"), "/a", v); err == nil {
		t.Error("a value of prefix p: verified under prefix q:")
	}
	if _, err := decodeValue(k.entry("z", "/b"), "/b", v); err == nil {
		t.Error("a value of /a verified under /b")
	}
	if _, err := decodeValue(k.entry("y", "/a"), "/a", v); err == nil {
		t.Error("a value of zone z verified under zone y")
	}
}

func TestTTL(t *testing.T) {
	now := time.Now()
	e := &cache.Entry{Meta: cache.Meta{ValidUntil: now.Add(time.Hour), StaleIfError: time.Hour}}
	if got := TTL(e, now, 10*time.Minute); got != 2*time.Hour {
		t.Errorf("validity and stale-if-error: %v, want 2h", got)
	}
	if got := TTL(e, now, 180*24*time.Hour); got != 180*24*time.Hour {
		t.Errorf("inactive longer: %v", got)
	}
	expired := &cache.Entry{Meta: cache.Meta{ValidUntil: now.Add(-time.Hour)}}
	if got := TTL(expired, now, 0); got != time.Second {
		t.Errorf("expired without inactive: %v, want the 1s floor", got)
	}
}

func FuzzDecodeValue(f *testing.F) {
	k := keys{"p:"}
	rk := k.entry("z", "/a")
	v, _ := encodeValue(rk, testMeta("/a"), []byte("body"))
	// What follows the checksum, which the fuzzer then gets right, so
	// that the length and metadata decoding is reached.
	f.Add(v[8:])
	f.Add([]byte("\x02{}"))
	f.Fuzz(func(t *testing.T, rest []byte) {
		for _, b := range [][]byte{rest, withChecksum(rk, rest)} {
			e, err := decodeValue(rk, "/a", b)
			if err == nil && (e.Key != "/a" || int64(len(e.Body)) != e.BodySize) {
				t.Fatalf("decoded an inconsistent entry: %+v", e.Meta)
			}
		}
	})
}

func withChecksum(redisKey string, rest []byte) []byte {
	v := append([]byte(valueMagic), 0, 0, 0, 0)
	v = append(v, rest...)
	binary.BigEndian.PutUint32(v[len(valueMagic):], checksum(redisKey, rest))
	return v
}
