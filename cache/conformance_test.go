package cache

import (
	"net/http"
	"testing"
	"time"
)

// TestConformance is the standards-mode table: each row names the section
// of RFC 9111 (or 9110, 9213, 5861) whose rule it checks. Where a row sets
// ignore flags and valid rules, it checks that aggressive mode (nginx
// parity) does not move.
func TestConformance(t *testing.T) {
	// The backend answered at now; the request left `delay` before.
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	ok200 := []ValidRule{{Statuses: []int{200}, For: time.Hour}}
	aggressive := IgnoreCacheControl | IgnoreExpires | IgnoreSetCookie | IgnoreVary | IgnoreXAccelExpires
	production := IgnoreSetCookie | IgnoreVary | IgnoreExpires

	type row struct {
		rfc, name    string
		valid        []ValidRule
		ignore       int
		heuristicMax time.Duration
		status       int
		header       http.Header
		delay        time.Duration // response delay
		store        bool
		fresh        time.Duration // ValidUntil − now when stored
		noCache      bool
		age          time.Duration // InitialAge, when non-zero
	}
	rows := []row{
		// Age and the current age (§4.2.3).
		{rfc: "RFC 9111 §4.2.3", name: "Age counts against max-age", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Age": {"30"}}, store: true, fresh: 70 * time.Second, age: 30 * time.Second},
		{rfc: "RFC 9111 §4.2.3", name: "response delay counts", status: 200, delay: 5 * time.Second,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Age": {"30"}}, store: true, fresh: 65 * time.Second, age: 35 * time.Second},
		{rfc: "RFC 9111 §4.2.3", name: "Date does not count (clock skew, not age)", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Date": {date(-40 * time.Second)}, "Age": {"10"}}, store: true, fresh: 90 * time.Second, age: 10 * time.Second},
		{rfc: "RFC 9111 §4.2.3", name: "Date ahead of us gives no negative age", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Date": {date(time.Hour)}}, store: true, fresh: 100 * time.Second},
		{rfc: "RFC 9111 §4.2.3", name: "s-maxage compared with the age", status: 200,
			header: http.Header{"Cache-Control": {"max-age=1000, s-maxage=100"}, "Age": {"99"}}, store: true, fresh: time.Second, age: 99 * time.Second},
		{rfc: "RFC 9111 §4.2.3", name: "older than its lifetime on arrival", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Age": {"100"}}},
		{rfc: "RFC 9111 §5.1", name: "Age list: first member", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Age": {"20, 50"}}, store: true, fresh: 80 * time.Second, age: 20 * time.Second},
		{rfc: "RFC 9111 §5.1", name: "invalid Age ignored", status: 200,
			header: http.Header{"Cache-Control": {"max-age=100"}, "Age": {"-5"}}, store: true, fresh: 100 * time.Second},
		{rfc: "RFC 9111 §5.1", name: "aggressive: valid stays absolute despite Age", valid: ok200, ignore: aggressive, status: 200,
			header: http.Header{"Age": {"3000"}, "Cache-Control": {"max-age=100"}}, store: true, fresh: time.Hour, age: 3000 * time.Second},
		{rfc: "RFC 9111 §5.1", name: "production: valid stays absolute despite Age", valid: ok200, ignore: production, status: 200,
			header: http.Header{"Age": {"3000"}}, store: true, fresh: time.Hour, age: 3000 * time.Second},
		{rfc: "RFC 9111 §5.1", name: "X-Accel-Expires stays absolute despite Age", status: 200,
			header: http.Header{"Age": {"30"}, "X-Accel-Expires": {"60"}}, store: true, fresh: time.Minute, age: 30 * time.Second},

		// Expires (§5.3, §4.2.1).
		{rfc: "RFC 9111 §4.2.1", name: "Expires − Date, not Expires − now", status: 200,
			header: http.Header{"Date": {date(-10 * time.Minute)}, "Expires": {date(50 * time.Minute)}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9111 §4.2.1", name: "Expires − Date with a slow clock upstream", status: 200,
			header: http.Header{"Date": {date(-time.Hour)}, "Expires": {date(-30 * time.Minute)}}, store: true, fresh: 30 * time.Minute},
		{rfc: "RFC 9111 §4.2.1", name: "Expires before Date", status: 200,
			header: http.Header{"Date": {date(time.Hour)}, "Expires": {date(30 * time.Minute)}}},
		{rfc: "RFC 9111 §5.3", name: "Expires 0", valid: ok200, status: 200, header: http.Header{"Expires": {"0"}}},
		{rfc: "RFC 9111 §5.3", name: "Expires one-digit hour", valid: ok200, status: 200, header: http.Header{"Expires": {"Sun, 01 Jun 2025 3:00:00 GMT"}}},
		{rfc: "RFC 9111 §5.3", name: "Expires runs of spaces", valid: ok200, status: 200, header: http.Header{"Expires": {"Sun,  01 Jun 2025 13:00:00 GMT"}}},
		{rfc: "RFC 9111 §5.3", name: "Expires twice", valid: ok200, status: 200, header: http.Header{"Expires": {date(time.Hour), date(time.Hour)}}},
		{rfc: "RFC 9110 §5.6.7", name: "Expires gmt in lower case", status: 200, header: http.Header{"Expires": {"Sun, 01 Jun 2025 13:00:00 gmt"}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9110 §5.6.7", name: "Expires rfc850", status: 200, header: http.Header{"Expires": {"Sunday, 01-Jun-25 13:00:00 GMT"}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9110 §5.6.7", name: "Expires asctime", status: 200, header: http.Header{"Expires": {"Sun Jun  1 13:00:00 2025"}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9111 §5.3", name: "max-age beats an invalid Expires", status: 200,
			header: http.Header{"Cache-Control": {"max-age=60"}, "Expires": {"0"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §5.3", name: "aggressive: Expires ignored", valid: ok200, ignore: aggressive, status: 200,
			header: http.Header{"Expires": {"0"}}, store: true, fresh: time.Hour},

		// Several directives, overflow (§4.2.1, §1.2.2).
		{rfc: "RFC 9111 §4.2.1", name: "several max-age: the first", status: 200,
			header: http.Header{"Cache-Control": {"max-age=60, max-age=3600"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §4.2.1", name: "several max-age lines: the first", status: 200,
			header: http.Header{"Cache-Control": {"max-age=60", "max-age=3600"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §4.2.1", name: "invalid max-age is stale", valid: ok200, status: 200,
			header: http.Header{"Cache-Control": {"max-age=soon"}}},
		{rfc: "RFC 9111 §5.2", name: "quoted max-age accepted", status: 200,
			header: http.Header{"Cache-Control": {`max-age="60"`}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §1.2.2", name: "overflow capped at 2^31 s", status: 200,
			header: http.Header{"Cache-Control": {"max-age=99999999999999999999999"}}, store: true, fresh: maxDelta * time.Second},
		{rfc: "RFC 9111 §1.2.2", name: "overflowing Age capped at 2^31 s", status: 200,
			header: http.Header{"Cache-Control": {"max-age=99999999999"}, "Age": {"99999999999"}}},

		// Heuristic freshness (§4.2.2).
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: 10% of Date − Last-Modified", status: 200,
			header: http.Header{"Date": {date(0)}, "Last-Modified": {date(-10 * time.Hour)}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic capped by heuristic_max", status: 200,
			header: http.Header{"Last-Modified": {date(-1000 * time.Hour)}}, store: true, fresh: 24 * time.Hour},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic cap configured", heuristicMax: time.Minute, status: 200,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic off", heuristicMax: -1, status: 200,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}}},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic less the age", status: 200,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}, "Age": {"600"}}, store: true, fresh: 50 * time.Minute, age: 10 * time.Minute},
		{rfc: "RFC 9110 §15.1", name: "heuristic: 404 is heuristically cacheable", status: 404,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9110 §15.1", name: "heuristic: 302 is not", status: 302,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}}},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: public makes any status", status: 302,
			header: http.Header{"Cache-Control": {"public"}, "Last-Modified": {date(-10 * time.Hour)}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: a valid rule wins", valid: ok200, status: 200,
			header: http.Header{"Last-Modified": {date(-1000 * time.Hour)}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: not with an explicit lifetime", status: 200,
			header: http.Header{"Cache-Control": {"max-age=60"}, "Last-Modified": {date(-1000 * time.Hour)}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: not when Expires is ignored", ignore: production, status: 404,
			header: http.Header{"Last-Modified": {date(-10 * time.Hour)}}},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: Last-Modified in the future", status: 200,
			header: http.Header{"Last-Modified": {date(time.Hour)}}},
		{rfc: "RFC 9111 §4.2.2", name: "heuristic: invalid Last-Modified", status: 200,
			header: http.Header{"Last-Modified": {"yesterday"}}},

		// Directives (§5.2.2).
		{rfc: "RFC 9111 §5.2.2.4", name: "no-cache: stored, revalidated on every use", valid: ok200, status: 200,
			header: http.Header{"Cache-Control": {"no-cache"}, "Etag": {`"v1"`}}, store: true, noCache: true},
		{rfc: "RFC 9111 §5.2.2.4", name: "no-cache with max-age still revalidates", status: 200,
			header: http.Header{"Cache-Control": {"no-cache, max-age=600"}, "Last-Modified": {date(-time.Hour)}}, store: true, noCache: true},
		{rfc: "RFC 9111 §5.2.2.4", name: "qualified no-cache acts unqualified", valid: ok200, status: 200,
			header: http.Header{"Cache-Control": {`no-cache="Set-Cookie, X-A", max-age=60`}, "Etag": {`"v1"`}}, store: true, noCache: true},
		{rfc: "RFC 9111 §5.2.2.4", name: "no-cache without a validator is not stored", valid: ok200, status: 200,
			header: http.Header{"Cache-Control": {"no-cache"}}},
		{rfc: "RFC 9111 §5.2.2.3", name: "must-understand lets an understood status through no-store", status: 200,
			header: http.Header{"Cache-Control": {"must-understand, no-store, max-age=60"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9111 §5.2.2.3", name: "must-understand with a status not understood", status: 299,
			header: http.Header{"Cache-Control": {"must-understand, no-store, max-age=60"}}},
		{rfc: "RFC 9111 §5.2.2.5", name: "no-store", valid: ok200, status: 200, header: http.Header{"Cache-Control": {"no-store"}}},
		{rfc: "RFC 9111 §5.2.2.7", name: "qualified private is private", valid: ok200, status: 200,
			header: http.Header{"Cache-Control": {`private="Set-Cookie", max-age=60`}}},
		{rfc: "RFC 9111 §5.2.2.10", name: "s-maxage beats max-age", status: 200,
			header: http.Header{"Cache-Control": {"s-maxage=30, max-age=60"}}, store: true, fresh: 30 * time.Second},

		// CDN-Cache-Control (RFC 9213).
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control beats Cache-Control", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"max-age=600"}, "Cache-Control": {"max-age=60"}}, store: true, fresh: 10 * time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control beats no-store in Cache-Control", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"max-age=600"}, "Cache-Control": {"no-store"}}, store: true, fresh: 10 * time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control beats Expires", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"max-age=600"}, "Expires": {"0"}}, store: true, fresh: 10 * time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control no-store", valid: ok200, status: 200,
			header: http.Header{"Cdn-Cache-Control": {"no-store"}, "Cache-Control": {"max-age=60"}}},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control private", valid: ok200, status: 200,
			header: http.Header{"Cdn-Cache-Control": {"private"}}},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control no-store=?0 is absent", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"no-store=?0, max-age=60"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control Age counts", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"max-age=600"}, "Age": {"60"}}, store: true, fresh: 9 * time.Minute, age: time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control invalid: falls back to Cache-Control", status: 200,
			header: http.Header{"Cdn-Cache-Control": {"max-age=600, Max-Age=5"}, "Cache-Control": {"max-age=60"}}, store: true, fresh: time.Minute},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control string max-age ignored", valid: ok200, status: 200,
			header: http.Header{"Cdn-Cache-Control": {`max-age="600"`}, "Cache-Control": {"max-age=60"}}, store: true, fresh: time.Hour},
		{rfc: "RFC 9213 §2.1", name: "CDN-Cache-Control ignored with Cache-Control", valid: ok200, ignore: IgnoreCacheControl, status: 200,
			header: http.Header{"Cdn-Cache-Control": {"no-store"}}, store: true, fresh: time.Hour},

		// Vary (§4.1), partial content (§3.3).
		{rfc: "RFC 9111 §4.1", name: "Vary * anywhere", valid: ok200, status: 200, header: http.Header{"Vary": {"Accept-Encoding, *"}}},
		{rfc: "RFC 9111 §4.1", name: "Vary * on a second line", valid: ok200, status: 200, header: http.Header{"Vary": {"Accept", " * "}}},
		{rfc: "RFC 9111 §3.3", name: "206 to a fill never stored", valid: []ValidRule{{For: time.Hour}}, ignore: aggressive, status: 206},
	}
	for _, tt := range rows {
		t.Run(tt.rfc+" "+tt.name, func(t *testing.T) {
			p := Policy{Valid: tt.valid, Ignore: tt.ignore, HeuristicMax: tt.heuristicMax}
			d := p.DecideResponse(tt.status, tt.header, now.Add(-tt.delay), now)
			if d.Store != tt.store {
				t.Fatalf("%s: Store = %v (reason %q), want %v", tt.rfc, d.Store, d.Reason, tt.store)
			}
			if !d.Store {
				if d.Reason == "" {
					t.Errorf("not stored but no reason given")
				}
				return
			}
			if d.NoCache != tt.noCache {
				t.Errorf("%s: NoCache = %v, want %v", tt.rfc, d.NoCache, tt.noCache)
			}
			if got := d.ValidUntil.Sub(now); got != tt.fresh {
				t.Errorf("%s: fresh for %v, want %v", tt.rfc, got, tt.fresh)
			}
			if d.InitialAge != tt.age {
				t.Errorf("%s: initial age %v, want %v", tt.rfc, d.InitialAge, tt.age)
			}
		})
	}
}

// RFC 9110 §5.6.7: HTTP-date is an exact grammar.
func TestParseHTTPDate(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	good := []string{
		"Sun, 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 gmt",
		"Sun, 06 Nov 1994 08:49:37 Gmt",
		"Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994",
		"Sun Nov 06 08:49:37 1994",
	}
	for _, s := range good {
		if got, ok := ParseHTTPDate(s, now); !ok || !got.Equal(want) {
			t.Errorf("%q: got %v %v, want %v", s, got, ok, want)
		}
	}
	bad := []string{
		"", "0", "-1", "Sun, 06 Nov 1994 8:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
		"Sun,  06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37  GMT", "Sun, 06 Nov 1994 08:49:37 GMT ",
		" Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 +0000",
		"sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
		"Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 30 Feb 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08-49-37 GMT", "Sun, 06 Nov 1994 08:49:37",
		"Sun, 06-Nov-94 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT", "Sunday, 06 Nov 94 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94", "Sun Nov  6 08:49:37 1994 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
	}
	for _, s := range bad {
		if got, ok := ParseHTTPDate(s, now); ok {
			t.Errorf("%q accepted as %v", s, got)
		}
	}
	// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
	if got, ok := ParseHTTPDate("Thursday, 01-Jan-70 00:00:00 GMT", now); !ok || got.Year() != 2070 {
		t.Errorf("rfc850 year 70 in 2025: %v %v, want 2070", got, ok)
	}
	if got, ok := ParseHTTPDate("Tuesday, 01-Jan-80 00:00:00 GMT", now); !ok || got.Year() != 1980 {
		t.Errorf("rfc850 year 80 in 2025: %v %v, want 1980", got, ok)
	}
	// A leap second folds into the next minute.
	if got, ok := ParseHTTPDate("Sat, 31 Dec 2016 23:59:60 GMT", now); !ok || !got.Equal(time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("leap second: %v %v", got, ok)
	}
}

// RFC 9111 §4.1: Vary matching normalises what the header's syntax allows.
func TestVariantNormalised(t *testing.T) {
	vary := []string{"Accept-Encoding, accept-language", " Accept-Charset ,X-Tenant"}
	same := []http.Header{
		{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-GB, fr;q=0.5"}, "Accept-Charset": {"utf-8"}, "X-Tenant": {"a,b"}},
		{"Accept-Encoding": {"BR,gzip"}, "Accept-Language": {"fr; q=0.5", "EN-gb"}, "Accept-Charset": {"UTF-8"}, "X-Tenant": {"a , b"}},
		{"Accept-Encoding": {"br", "gzip"}, "Accept-Language": {"fr;q=0.5,en-gb"}, "Accept-Charset": {" utf-8 "}, "X-Tenant": {"a", "b"}},
	}
	want := Variant(vary, same[0])
	for i, h := range same[1:] {
		if got := Variant(vary, h); got != want {
			t.Errorf("request %d: variant %q, want %q", i+1, got, want)
		}
	}
	other := []http.Header{
		{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-GB, fr;q=0.5"}, "Accept-Charset": {"utf-8"}, "X-Tenant": {"A,b"}},
		{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-GB, fr;q=0.5"}, "Accept-Charset": {"utf-8"}, "X-Tenant": {"b,a"}},
		{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {"en-GB, fr;q=0.5"}, "Accept-Charset": {"utf-8"}},
	}
	for i, h := range other {
		if got := Variant(vary, h); got == want {
			t.Errorf("other request %d matched: %q", i, got)
		}
	}
	// Absent and empty differ.
	if Variant([]string{"Accept"}, http.Header{}) == Variant([]string{"Accept"}, http.Header{"Accept": {""}}) {
		t.Error("an absent header matched an empty one")
	}
	// Accept-Encoding splits no variants: entries hold the identity
	// encoding, which every client can read (fills ask for it).
	if got := VaryNames([]string{"accept, Accept-Encoding", "ACCEPT"}); len(got) != 1 || got[0] != "Accept" {
		t.Errorf("VaryNames = %q", got)
	}
	if Variant(vary, same[0]) != Variant(vary, http.Header{"Accept-Encoding": {"gzip"}, "Accept-Language": {"en-GB, fr;q=0.5"}, "Accept-Charset": {"utf-8"}, "X-Tenant": {"a,b"}}) {
		t.Error("Accept-Encoding split a variant")
	}
}

// RFC 9111 §4.2.3 and §5.1: a stored entry's age goes on, and the Age
// value is formatted once per second per entry.
func TestEntryAge(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	e := &Entry{Meta: Meta{StoredAt: at, InitialAge: 30 * time.Second}}
	if got := e.AgeValue(at.Add(1500 * time.Millisecond)); got != "31" {
		t.Fatalf("age %q, want 31", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { e.AgeValue(at.Add(1900 * time.Millisecond)) }); allocs != 0 {
		t.Errorf("AgeValue allocates %v per call within one second", allocs)
	}
	if got := e.AgeValue(at.Add(5 * time.Minute)); got != "330" {
		t.Fatalf("age %q, want 330", got)
	}
	if got := e.AgeValue(at.Add(-time.Minute)); got != "30" {
		t.Fatalf("age before storage %q, want 30", got)
	}
}

// RFC 9110 §13.2.2 (and RFC 9111 §4.3.2 for a cache): conditional requests
// on a stored response, evaluated by the cache itself.
func TestPreconditions(t *testing.T) {
	stored := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day := func(d time.Duration) string { return stored.Add(d).Format(http.TimeFormat) }
	entry := func(h http.Header) *Entry {
		e := &Entry{Meta: Meta{Status: 200, Header: h, StoredAt: stored}}
		if d := h["Date"]; len(d) > 0 {
			e.Date = d[0] // kept apart from the stored header
			delete(h, "Date")
		}
		return e
	}
	strong := entry(http.Header{"Etag": {`"v1"`}, "Last-Modified": {day(-time.Hour)}, "Date": {day(0)}})
	weak := entry(http.Header{"Etag": {`W/"v1"`}})
	unquoted := entry(http.Header{"Etag": {`v1`}})
	dateOnly := entry(http.Header{"Date": {day(-time.Minute)}})
	bare := entry(http.Header{})

	tests := []struct {
		rfc, name string
		e         *Entry
		method    string
		req       http.Header
		want      Precondition
		rangeOK   bool
	}{
		{"RFC 9110 §13.1.2", "If-None-Match strong tag", strong, "GET", http.Header{"If-None-Match": {`"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match weak against strong (weak comparison)", strong, "GET", http.Header{"If-None-Match": {`W/"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match strong against weak (weak comparison)", weak, "GET", http.Header{"If-None-Match": {`"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match list", strong, "GET", http.Header{"If-None-Match": {`"a", "b,c"`, ` W/"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match other tag", strong, "GET", http.Header{"If-None-Match": {`"v2"`}}, ServeStored, true},
		{"RFC 9110 §13.1.2", "If-None-Match star", bare, "GET", http.Header{"If-None-Match": {"*"}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match on HEAD", strong, "HEAD", http.Header{"If-None-Match": {`"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "unquoted stored ETag echoed back", unquoted, "GET", http.Header{"If-None-Match": {`v1`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "unquoted stored ETag, quoted condition", unquoted, "GET", http.Header{"If-None-Match": {`"v1"`}}, NotModified, false},
		{"RFC 9110 §13.1.2", "If-None-Match beats If-Modified-Since", strong, "GET", http.Header{"If-None-Match": {`"v2"`}, "If-Modified-Since": {day(0)}}, ServeStored, true},
		{"RFC 9110 §13.1.3", "If-Modified-Since not modified", strong, "GET", http.Header{"If-Modified-Since": {day(-time.Hour)}}, NotModified, false},
		{"RFC 9110 §13.1.3", "If-Modified-Since modified", strong, "GET", http.Header{"If-Modified-Since": {day(-2 * time.Hour)}}, ServeStored, true},
		{"RFC 9110 §13.1.3", "If-Modified-Since invalid ignored", strong, "GET", http.Header{"If-Modified-Since": {"yesterday"}}, ServeStored, true},
		{"RFC 9111 §4.3.2", "If-Modified-Since against the stored Date", dateOnly, "GET", http.Header{"If-Modified-Since": {day(-time.Minute)}}, NotModified, false},
		{"RFC 9111 §4.3.2", "If-Modified-Since before the stored Date", dateOnly, "GET", http.Header{"If-Modified-Since": {day(-2 * time.Minute)}}, ServeStored, true},
		{"RFC 9111 §4.3.2", "If-Modified-Since against the time received", bare, "GET", http.Header{"If-Modified-Since": {day(0)}}, NotModified, false},
		{"RFC 9110 §13.1.1", "If-Match strong", strong, "GET", http.Header{"If-Match": {`"v1"`}}, ServeStored, true},
		{"RFC 9110 §13.1.1", "If-Match weak fails (strong comparison)", weak, "GET", http.Header{"If-Match": {`W/"v1"`}}, PreconditionFailed, false},
		{"RFC 9110 §13.1.1", "If-Match other", strong, "GET", http.Header{"If-Match": {`"v2"`}}, PreconditionFailed, false},
		{"RFC 9110 §13.1.4", "If-Unmodified-Since failed", strong, "GET", http.Header{"If-Unmodified-Since": {day(-2 * time.Hour)}}, PreconditionFailed, false},
		{"RFC 9110 §13.1.4", "If-Unmodified-Since passed", strong, "GET", http.Header{"If-Unmodified-Since": {day(0)}}, ServeStored, true},
		{"RFC 9110 §13.1.5", "If-Range strong tag", strong, "GET", http.Header{"Range": {"bytes=0-1"}, "If-Range": {`"v1"`}}, ServeStored, true},
		{"RFC 9110 §13.1.5", "If-Range weak tag never matches", weak, "GET", http.Header{"Range": {"bytes=0-1"}, "If-Range": {`W/"v1"`}}, ServeStored, false},
		{"RFC 9110 §13.1.5", "If-Range other tag", strong, "GET", http.Header{"Range": {"bytes=0-1"}, "If-Range": {`"v2"`}}, ServeStored, false},
		{"RFC 9110 §13.1.5", "If-Range strong date", strong, "GET", http.Header{"Range": {"bytes=0-1"}, "If-Range": {day(-time.Hour)}}, ServeStored, true},
		{"RFC 9110 §13.1.5", "If-Range other date", strong, "GET", http.Header{"Range": {"bytes=0-1"}, "If-Range": {day(-2 * time.Hour)}}, ServeStored, false},
	}
	for _, tt := range tests {
		t.Run(tt.rfc+" "+tt.name, func(t *testing.T) {
			got, rangeOK := Preconditions(tt.method, tt.req, tt.e)
			if got != tt.want || rangeOK != tt.rangeOK {
				t.Errorf("%s: got %v range %v, want %v range %v", tt.rfc, got, rangeOK, tt.want, tt.rangeOK)
			}
		})
	}
}
