package adminapi

import (
	"net/url"
	"strings"
	"testing"
)

// TestKeysRequestRoundTrip: what the client asks is what the server reads,
// and a bad query says what is wrong.
func TestKeysRequestRoundTrip(t *testing.T) {
	for _, q := range []KeysRequest{
		{Zone: "thumbnails", Limit: 1000},
		{Zone: "a b&c", Prefix: `"/img\xff"`, After: "/x?a=1&b=2", Limit: MaxKeysLimit},
	} {
		u, err := url.ParseRequestURI(q.URI())
		if err != nil || u.Path != KeysPath {
			t.Fatalf("%+v: URI %q: %v", q, q.URI(), err)
		}
		got, err := ParseKeysRequest(u.Query())
		if err != nil || got != q {
			t.Errorf("%+v: read back as %+v, %v", q, got, err)
		}
	}
	if got, err := ParseKeysRequest(url.Values{"zone": {"z"}}); err != nil || got.Limit != DefaultKeysLimit {
		t.Errorf("no limit: %+v %v", got, err)
	}
	for query, want := range map[string]string{
		"":                   "name a zone",
		"zone=z&limit=0":     "limit: want a number from 1 to 10000",
		"zone=z&limit=x":     `not "x"`,
		"zone=z&limit=1e9":   "limit:",
		"zone=z&limit=10001": "limit:",
	} {
		v, _ := url.ParseQuery(query)
		if _, err := ParseKeysRequest(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("?%s: error %v, want %q", query, err, want)
		}
	}
}
