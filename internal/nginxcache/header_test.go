package nginxcache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"testing"
)

// The files in testdata were written by nginx 1.22.1 (Debian's nginx-light)
// for GET /x?a=1 with proxy_cache_key $request_uri, the upstream answering
// "Vary: Accept-Language": vary-fr.v5 for a request with
// "Accept-Language: fr", vary-none.v5 for one without it.
func TestDecodeRealNginxFiles(t *testing.T) {
	for _, tc := range []struct {
		file     string
		lang     string
		fileName string // the file's name in nginx's folder
	}{
		{"testdata/vary-fr.v5", "fr", "064f0eaa2ab039f0c2244b607b434847"},
		{"testdata/vary-none.v5", "", "2a492ac3973430e9d9c007a898b52e64"},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if e.Version != 5 || e.Key != "/x?a=1" || e.Status != 200 || e.ETag != `"abc"` || e.Vary != "Accept-Language" {
			t.Errorf("%s: decoded %+v", tc.file, e)
		}
		if e.LastModified != -1 || e.Date == 0 || e.ValidSec != e.Date+86400 {
			t.Errorf("%s: times: last modified %d, date %d, valid %d", tc.file, e.LastModified, e.Date, e.ValidSec)
		}
		if got := string(b[e.BodyStart:]); got != "hello world\n" {
			t.Errorf("%s: body %q", tc.file, got)
		}
		if e.Header.Get("Content-Type") != "text/plain" || e.Header.Get("Set-Cookie") != "a=b" || e.Header.Get("Etag") != `"abc"` {
			t.Errorf("%s: header %v", tc.file, e.Header)
		}
		req := http.Header{}
		if tc.lang != "" {
			req.Set("Accept-Language", tc.lang)
		}
		if got := VariantHash(e.Key, e.Vary, req); got != e.Variant {
			t.Errorf("%s: variant hash %x, nginx wrote %x", tc.file, got, e.Variant)
		}
		if !e.IsVariant() {
			t.Errorf("%s: not a variant", tc.file)
		}
		// The primary file is named after the key, the secondary one
		// after its variant.
		name := hex.EncodeToString(e.Variant[:])
		if k := KeyHash(e.Key); tc.lang == "fr" {
			name = hex.EncodeToString(k[:])
		}
		if name != tc.fileName {
			t.Errorf("%s: file name %s, want %s", tc.file, name, tc.fileName)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/vary-none.v5")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Decode(good)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"half header", good[:200], ErrTruncated},
		{"cut in the key", good[:e.HeaderStart-3], ErrTruncated},
		{"cut in the stored header", good[:e.BodyStart-5], ErrTruncated},
		{"version 4", mutate(func(b []byte) []byte { b[0] = 4; return b }), ErrUnknownVersion},
		{"big-endian version", mutate(func(b []byte) []byte { b[0], b[7] = 0, 5; return b }), ErrUnknownVersion},
		{"key changed", mutate(func(b []byte) []byte { b[e.HeaderStart-2] = 'X'; return b }), ErrBadHeader},
		{"body_start past the file", mutate(func(b []byte) []byte { b[56], b[57] = 0xff, 0xff; return b }), ErrTruncated},
		{"body_start before header_start", mutate(func(b []byte) []byte { b[56], b[57] = 10, 0; return b }), ErrBadHeader},
		{"not HTTP", mutate(func(b []byte) []byte { copy(b[e.HeaderStart:], "Status: 2"); return b }), ErrBadHeader},
		{"etag length", mutate(func(b []byte) []byte { b[58] = 200; return b }), ErrBadHeader},
	} {
		_, err := Decode(tc.b)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	raw := []byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n")
	in := &Entry{ValidSec: 1800000000, ValidMsec: 250, UpdatingSec: 7, ErrorSec: 9, LastModified: 1704067200,
		Date: 1700000000, ETag: `W/"x"`, Key: "httpidr.example.org/webclient/?_=1"}
	b, err := Encode(in, raw, []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Key != in.Key || out.Status != 404 || out.ValidSec != in.ValidSec || out.ValidMsec != 250 ||
		out.UpdatingSec != 7 || out.ErrorSec != 9 || out.Date != in.Date || out.ETag != in.ETag || out.IsVariant() {
		t.Errorf("round trip: %+v", out)
	}
	if string(b[out.BodyStart:]) != "gone" || out.Header.Get("Last-Modified") == "" {
		t.Errorf("body %q, header %v", b[out.BodyStart:], out.Header)
	}
	if got := out.Validity().UnixMilli(); got != 1800000000250 {
		t.Errorf("validity %d", got)
	}
	if got := FileName(KeyHash("/x?a=1"), []int{1, 2}); got != "7/84/064f0eaa2ab039f0c2244b607b434847" {
		t.Errorf("file name %s", got)
	}
}

// FuzzDecode feeds the decoder damaged nginx files: it must never panic,
// never read past its input, and what it accepts must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/vary-fr.v5", "testdata/vary-none.v5"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if b, err := Encode(&Entry{Key: "/k", ValidSec: 1}, []byte("HTTP/1.0 200 OK\n\n"), []byte("x")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if e != nil {
				t.Fatal("an entry with an error")
			}
			return
		}
		if e.BodyStart > len(b) || e.HeaderStart > e.BodyStart || e.Status < 100 || e.Header == nil {
			t.Fatalf("inconsistent entry %+v for %d bytes", e, len(b))
		}
		if e.Version != 3 && e.Version != 5 {
			t.Fatalf("version %d accepted", e.Version)
		}
	})
}
