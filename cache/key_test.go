package cache

import (
	"strings"
	"testing"
)

func TestStripQuery(t *testing.T) {
	strip := []string{"_"}
	tests := []struct{ in, want string }{
		{"/api/v0/m/images/?_=1712345678901", "/api/v0/m/images/"},
		{"/a?_=1&b=2&c=3", "/a?b=2&c=3"},
		{"/a?b=2&_=1&c=3", "/a?b=2&c=3"},
		{"/a?c=3&b=2&_=1", "/a?c=3&b=2"},
		{"/a?_=1&_=2&z=0&a=1", "/a?z=0&a=1"},
		{"/a?b=1&_", "/a?b=1"},
		{"/a?_=", "/a"},
		{"/a?__=1&_x=2&x_=3", "/a?__=1&_x=2&x_=3"},
		{"/a?%5F=1", "/a?%5F=1"},
		{"/a", "/a"},
		{"/a?", "/a?"},
		{"/a?b=1&&c=2", "/a?b=1&&c=2"}, // nothing stripped: left exactly as sent
		{"/a?b=1&&_=2&c=3", "/a?b=1&c=3"},
		{"/a?b=x_=1", "/a?b=x_=1"},
	}
	for _, tt := range tests {
		if got := StripQuery(tt.in, strip); got != tt.want {
			t.Errorf("StripQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := StripQuery("/a?_=1&b=2&cb=3", []string{"_", "cb"}); got != "/a?b=2" {
		t.Errorf("two params: got %q", got)
	}
	if got := StripQuery("/a?_=1", nil); got != "/a?_=1" {
		t.Errorf("no params: got %q", got)
	}
}

func TestStripQueryNoAllocWhenNothingStripped(t *testing.T) {
	uri := "/webgateway/render_image/123/0/0/?c=1|100:200$FF0000&m=g"
	allocs := testing.AllocsPerRun(100, func() { _ = StripQuery(uri, []string{"_"}) })
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

func FuzzStripQuery(f *testing.F) {
	f.Add("/a?_=1&b=2", "cb")
	f.Add("/a?b=1&&_=2&c", "c")
	f.Add("?_", "_")
	f.Add("/x?=&=&_=?_", "")
	f.Fuzz(func(t *testing.T, uri, extra string) {
		params := []string{"_"}
		if extra != "" && !strings.ContainsAny(extra, "&=") {
			params = append(params, extra)
		}
		got := StripQuery(uri, params)

		q := strings.IndexByte(uri, '?')
		if q < 0 {
			if got != uri {
				t.Fatalf("no query: %q became %q", uri, got)
			}
			return
		}
		if !strings.HasPrefix(got, uri[:q]) {
			t.Fatalf("path changed: %q became %q", uri, got)
		}
		// The kept parts are the original ones, in order, minus the stripped.
		var want []string
		stripped := false
		for part := range strings.SplitSeq(uri[q+1:], "&") {
			name, _, _ := strings.Cut(part, "=")
			isStripped := false
			for _, p := range params {
				if name == p {
					isStripped = true
				}
			}
			if isStripped {
				stripped = true
				continue
			}
			want = append(want, part)
		}
		if !stripped {
			if got != uri {
				t.Fatalf("nothing to strip, yet %q became %q", uri, got)
			}
			return
		}
		rest := strings.TrimPrefix(got[q:], "?")
		var kept []string
		if rest != "" {
			kept = strings.Split(rest, "&")
		}
		for _, part := range kept {
			name, _, _ := strings.Cut(part, "=")
			for _, p := range params {
				if name == p {
					t.Fatalf("%q: result %q still has param %q", uri, got, p)
				}
			}
		}
		var nonEmpty []string
		for _, p := range want {
			if p != "" {
				nonEmpty = append(nonEmpty, p)
			}
		}
		if strings.Join(kept, "&") != strings.Join(nonEmpty, "&") {
			t.Fatalf("%q: kept %q, want %q", uri, kept, nonEmpty)
		}
	})
}

// jQuery appends its `_` last: the key is then a prefix of the URI.
func TestStripQueryNoAllocWhenTrailingStripped(t *testing.T) {
	uri := "/webgateway/render_image/123/0/0/?c=1|100:200$FF0000&m=g&_=1712345678"
	allocs := testing.AllocsPerRun(100, func() { _ = StripQuery(uri, []string{"_"}) })
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}
