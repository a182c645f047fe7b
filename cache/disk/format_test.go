package disk

import (
	"encoding/binary"
	"net/http"
	"reflect"
	"runtime"
	"testing"
	"time"
)

func TestHeaderRoundTrip(t *testing.T) {
	m := testMeta("https://idr.example/webclient/render_thumbnail/1234/", 0)
	m.Header["Set-Cookie"] = []string{}
	m.StoredAt = time.Time{} // zero times survive
	b, err := encodeHeader(&m, 12345)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(append(b, "body bytes after the header"...))
	if err != nil {
		t.Fatal(err)
	}
	if h.HeaderLen != len(b) || h.BodySize != 12345 || h.BlockSize != bodyBlockSize {
		t.Fatalf("header fields: %+v", h)
	}
	m.BodySize = 12345
	m.ValidUntil = time.Unix(0, m.ValidUntil.UnixNano())
	if !h.StoredAt.IsZero() || !h.ValidUntil.Equal(m.ValidUntil) {
		t.Fatalf("times: %v %v", h.StoredAt, h.ValidUntil)
	}
	h.ValidUntil, m.ValidUntil = time.Time{}, time.Time{}
	if !reflect.DeepEqual(h.Meta, m) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", h.Meta, m)
	}

	big := testMeta("k", 0)
	big.Header = http.Header{"X-Big": {string(make([]byte, maxEntryHeader))}}
	if _, err := encodeHeader(&big, 0); err == nil {
		t.Fatal("a header over the limit was encoded")
	}
}

// hostileHeader returns a header whose checksum is valid but whose counts
// and lengths claim far more than the bytes present.
func hostileHeader(tail []byte) []byte {
	m := Meta{Key: "k"}
	b, _ := encodeHeader(&m, 0)
	b = b[:fixedHeaderLen]
	b = append(b, tail...)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	patchHeader(b, 0)
	return b
}

func TestDecodeHeaderHostileLengths(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<62)
	cases := map[string][]byte{
		"key length":   append(huge, 'k'),
		"header count": append([]byte{1, 'k'}, huge...),
		"value count":  append(append([]byte{1, 'k', 1, 1, 'N'}, huge...), 0),
		"value length": append(append([]byte{1, 'k', 1, 1, 'N', 1}, huge...), 'v'),
		"bad varint":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, tail := range cases {
		b := hostileHeader(tail)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeHeader(b)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: hostile header accepted", name)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
			t.Errorf("%s: decoding allocated %d bytes", name, alloc)
		}
	}
	// A header length field larger than the limit is refused before reading.
	b := hostileHeader(nil)
	binary.LittleEndian.PutUint32(b[8:], 1<<31)
	if _, err := headerLength(b); err == nil {
		t.Error("header length over the limit accepted")
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, m := range []Meta{testMeta("k", 0), testMeta("https://idr.example/a?b=c", 10), {Key: "x"}} {
		b, _ := encodeHeader(&m, 10)
		f.Add(b)
		f.Add(append(b, "body"...))
	}
	f.Add(hostileHeader(binary.AppendUvarint([]byte{1, 'k'}, 1<<40)))
	f.Add([]byte(entryMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzer mostly breaks the checksum; also try each input with
		// a valid one so the decoder proper is exercised.
		inputs := [][]byte{data}
		if n, err := headerLength(data); err == nil && n <= len(data) {
			fixed := append([]byte(nil), data...)
			binary.LittleEndian.PutUint32(fixed[12:], headerChecksum(fixed[:n]))
			inputs = append(inputs, fixed)
		}
		for _, in := range inputs {
			h, err := decodeHeader(in)
			if err != nil {
				continue
			}
			if h.HeaderLen > len(in) || h.BodySize < 0 {
				t.Fatalf("accepted an impossible header: len %d of %d, body %d", h.HeaderLen, len(in), h.BodySize)
			}
			for _, vals := range h.Header {
				if len(vals) != cap(vals) {
					t.Fatal("values not clipped")
				}
			}
			// What decodes re-encodes to a header that decodes the same.
			b, err := encodeHeader(&h.Meta, h.BodySize)
			if err != nil {
				t.Fatalf("re-encoding a decoded header: %v", err)
			}
			h2, err := decodeHeader(b)
			if err != nil {
				t.Fatalf("decoding a re-encoded header: %v", err)
			}
			if !reflect.DeepEqual(h.Meta, h2.Meta) && !(len(h.Header) == 0 && len(h2.Header) == 0) {
				t.Fatalf("re-encoding changed the header:\n%#v\n%#v", h.Meta, h2.Meta)
			}
		}
	})
}

// RFC 9111 §4.2.3 needs the age on arrival and §5.2.2.4 the no-cache mark
// after a restart: both survive the disk.
func TestHeaderAgeAndNoCache(t *testing.T) {
	m := testMeta("k", 0)
	m.InitialAge, m.NoCache, m.Variant = 90*time.Second, true, "Accept:x\n"
	m.Date = "Sun, 01 Jun 2025 12:00:00 GMT"
	b, err := encodeHeader(&m, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.InitialAge != m.InitialAge || !h.NoCache || h.Variant != m.Variant || h.Date != m.Date {
		t.Fatalf("decoded age %v no-cache %v variant %q", h.InitialAge, h.NoCache, h.Variant)
	}
}

// Tags and the soft purge mark travel in the header; a header without
// them (written before tags existed) decodes as it did.
func TestHeaderTagsAndSoftPurged(t *testing.T) {
	m := testMeta("/webgateway/render_image/1/", 0)
	m.Tags = []string{"dataset:3", "image:1"}
	m.SoftPurged = true
	b, err := encodeHeader(&m, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Tags, m.Tags) || !h.SoftPurged {
		t.Errorf("decoded tags %q, soft-purged %v", h.Tags, h.SoftPurged)
	}
	m.Tags, m.SoftPurged = nil, false
	plain, _ := encodeHeader(&m, 0)
	if h, err := decodeHeader(plain); err != nil || h.Tags != nil || h.SoftPurged {
		t.Errorf("untagged: %v, %q, %v", err, h.Tags, h.SoftPurged)
	}
	// A tag count beyond the bytes is refused, not allocated.
	bad := append([]byte(nil), plain...)
	bad = binary.AppendUvarint(bad, 1<<40)
	binary.LittleEndian.PutUint16(bad[6:], binary.LittleEndian.Uint16(bad[6:])|flagTags)
	binary.LittleEndian.PutUint32(bad[8:], uint32(len(bad)))
	patchHeader(bad, 0)
	if _, err := decodeHeader(bad); err == nil {
		t.Error("a hostile tag count decoded")
	}
}
