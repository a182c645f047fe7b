package cache

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestPolicyDecide(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	unix := func(d time.Duration) string { return "@" + strconv.FormatInt(now.Add(d).Unix(), 10) }

	ok200 := []ValidRule{{Statuses: []int{200}, For: time.Hour}}
	withAny := []ValidRule{{Statuses: []int{200}, For: time.Hour}, {For: time.Minute}}
	anyFirst := []ValidRule{{For: time.Minute}, {Statuses: []int{200, 404}, For: time.Hour}}

	tests := []struct {
		name   string
		valid  []ValidRule
		ignore int
		status int
		header map[string]string
		store  bool
		for_   time.Duration // validity when stored
	}{
		{name: "valid rule", valid: ok200, status: 200, store: true, for_: time.Hour},
		{name: "status no rule covers", valid: ok200, status: 404},
		{name: "no rules at all", status: 200},
		{name: "any covers other status", valid: withAny, status: 404, store: true, for_: time.Minute},
		{name: "status line beats any", valid: withAny, status: 200, store: true, for_: time.Hour},
		{name: "status line beats any listed first", valid: anyFirst, status: 404, store: true, for_: time.Hour},

		{name: "cc private", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "private"}},
		{name: "cc no-store", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "no-store"}},
		{name: "cc no-cache", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "public, no-cache"}},
		{name: "cc max-age=0", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "max-age=0"}},
		{name: "cc private ignored", valid: ok200, ignore: IgnoreCacheControl, status: 200, header: map[string]string{"Cache-Control": "private, no-store"}, store: true, for_: time.Hour},
		{name: "cc max-age=0 ignored", valid: ok200, ignore: IgnoreCacheControl, status: 200, header: map[string]string{"Cache-Control": "max-age=0"}, store: true, for_: time.Hour},
		{name: "cc max-age sets validity", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "public, max-age=60"}, store: true, for_: time.Minute},
		{name: "cc max-age case-insensitive", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "Max-Age=60"}, store: true, for_: time.Minute},
		{name: "cc s-maxage beats max-age", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "max-age=60, s-maxage=30"}, store: true, for_: 30 * time.Second},
		{name: "cc max-age gives a status no rule covers a validity", valid: ok200, status: 404, header: map[string]string{"Cache-Control": "max-age=60"}, store: true, for_: time.Minute},
		{name: "cc max-age ignored", valid: ok200, ignore: IgnoreCacheControl, status: 200, header: map[string]string{"Cache-Control": "max-age=60"}, store: true, for_: time.Hour},

		{name: "set-cookie", valid: ok200, status: 200, header: map[string]string{"Set-Cookie": "a=b"}},
		{name: "set-cookie beats x-accel-expires", valid: ok200, status: 200, header: map[string]string{"Set-Cookie": "a=b", "X-Accel-Expires": "60"}},
		{name: "set-cookie ignored", valid: ok200, ignore: IgnoreSetCookie, status: 200, header: map[string]string{"Set-Cookie": "a=b"}, store: true, for_: time.Hour},

		{name: "vary star", valid: ok200, status: 200, header: map[string]string{"Vary": "*"}},
		{name: "vary star ignored", valid: ok200, ignore: IgnoreVary, status: 200, header: map[string]string{"Vary": "*"}, store: true, for_: time.Hour},
		{name: "vary a header", valid: ok200, status: 200, header: map[string]string{"Vary": "Accept-Encoding"}, store: true, for_: time.Hour},

		{name: "x-accel-expires 0", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "0"}},
		{name: "x-accel-expires 0 ignored", valid: ok200, ignore: IgnoreXAccelExpires, status: 200, header: map[string]string{"X-Accel-Expires": "0"}, store: true, for_: time.Hour},
		{name: "x-accel-expires seconds", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "120"}, store: true, for_: 2 * time.Minute},
		{name: "x-accel-expires beats cc max-age", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "120", "Cache-Control": "max-age=60"}, store: true, for_: 2 * time.Minute},
		{name: "x-accel-expires beats expires", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "120", "Expires": at(2 * time.Hour)}, store: true, for_: 2 * time.Minute},
		{name: "x-accel-expires @time", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": unix(5 * time.Minute)}, store: true, for_: 5 * time.Minute},
		{name: "x-accel-expires @past", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": unix(-time.Minute)}},
		{name: "x-accel-expires seconds ignored", valid: ok200, ignore: IgnoreXAccelExpires, status: 200, header: map[string]string{"X-Accel-Expires": "120"}, store: true, for_: time.Hour},
		{name: "x-accel-expires malformed falls through", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "soon"}, store: true, for_: time.Hour},
		{name: "x-accel-expires cc no-store still honoured", valid: ok200, status: 200, header: map[string]string{"X-Accel-Expires": "120", "Cache-Control": "no-store"}},

		{name: "expires sets validity", valid: ok200, status: 200, header: map[string]string{"Expires": at(2 * time.Hour)}, store: true, for_: 2 * time.Hour},
		{name: "expires past", valid: ok200, status: 200, header: map[string]string{"Expires": at(-time.Hour)}},
		{name: "expires malformed", valid: ok200, status: 200, header: map[string]string{"Expires": "0"}},
		{name: "expires ignored", valid: ok200, ignore: IgnoreExpires, status: 200, header: map[string]string{"Expires": at(-time.Hour)}, store: true, for_: time.Hour},
		{name: "cc max-age beats expires", valid: ok200, status: 200, header: map[string]string{"Cache-Control": "max-age=60", "Expires": at(2 * time.Hour)}, store: true, for_: time.Minute},
		{name: "cc ignored leaves expires", valid: ok200, ignore: IgnoreCacheControl, status: 200, header: map[string]string{"Cache-Control": "max-age=60", "Expires": at(2 * time.Hour)}, store: true, for_: 2 * time.Hour},

		{name: "everything ignored", valid: ok200, ignore: IgnoreCacheControl | IgnoreExpires | IgnoreSetCookie | IgnoreVary | IgnoreXAccelExpires, status: 200,
			header: map[string]string{"Cache-Control": "private", "Expires": "0", "Set-Cookie": "s=1", "Vary": "*", "X-Accel-Expires": "0"}, store: true, for_: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := make(http.Header)
			for k, v := range tt.header {
				h.Set(k, v)
			}
			p := Policy{Valid: tt.valid, Ignore: tt.ignore}
			d := p.Decide(tt.status, h, now)
			if d.Store != tt.store {
				t.Fatalf("Store = %v (reason %q), want %v", d.Store, d.Reason, tt.store)
			}
			if !tt.store {
				if d.Reason == "" {
					t.Errorf("not stored but no reason given")
				}
				return
			}
			if got := d.ValidUntil.Sub(now); got != tt.for_ {
				t.Errorf("valid for %v, want %v", got, tt.for_)
			}
		})
	}
}

func TestPolicyStaleDirectives(t *testing.T) {
	now := time.Now()
	h := http.Header{"Cache-Control": {"max-age=10, stale-while-revalidate=30, stale-if-error=600"}}
	d := (&Policy{}).Decide(200, h, now)
	if !d.Store || d.StaleWhileRevalidate != 30*time.Second || d.StaleIfError != 10*time.Minute {
		t.Fatalf("got %+v", d)
	}
	d = (&Policy{Valid: []ValidRule{{For: time.Minute}}, Ignore: IgnoreCacheControl}).Decide(200, h, now)
	if !d.Store || d.StaleWhileRevalidate != 0 || d.StaleIfError != 0 {
		t.Fatalf("ignored Cache-Control still gave stale times: %+v", d)
	}
}

func TestIgnoreFlag(t *testing.T) {
	for _, name := range []string{"Cache-Control", "cache-control", "Expires", "Set-Cookie", "Vary", "X-Accel-Expires", "x-accel-expires"} {
		if _, ok := IgnoreFlag(name); !ok {
			t.Errorf("IgnoreFlag(%q) not ok", name)
		}
	}
	for _, name := range []string{"Foo", "", "Content-Type", "X-Accel-Buffering"} {
		if _, ok := IgnoreFlag(name); ok {
			t.Errorf("IgnoreFlag(%q) ok, want refused", name)
		}
	}
}
