package cache

import (
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

// RFC 9211 §2: Cache-Status is a Structured Field List whose members are
// the cache's name (a Token) with parameters hit (Boolean), fwd (Token),
// fwd-status (Integer), ttl (Integer), stored and collapsed (Boolean).
func TestCacheStatusSyntax(t *testing.T) {
	tests := []struct {
		s    CacheStatus
		want map[string]any
	}{
		{CacheStatus{Hit: true, TTL: 376 * time.Second, HasTTL: true}, map[string]any{"hit": true, "ttl": int64(376)}},
		{CacheStatus{Hit: true, TTL: -30 * time.Second, HasTTL: true}, map[string]any{"hit": true, "ttl": int64(-30)}},
		{CacheStatus{Fwd: FwdURIMiss, FwdStatus: 200, Stored: true, TTL: time.Hour, HasTTL: true},
			map[string]any{"fwd": httpsfv.Token("uri-miss"), "fwd-status": int64(200), "stored": true, "ttl": int64(3600)}},
		{CacheStatus{Fwd: FwdStale, FwdStatus: 304, TTL: time.Minute, HasTTL: true}, map[string]any{"fwd": httpsfv.Token("stale"), "fwd-status": int64(304), "ttl": int64(60)}},
		{CacheStatus{Fwd: FwdBypass, FwdStatus: 200}, map[string]any{"fwd": httpsfv.Token("bypass"), "fwd-status": int64(200)}},
		{CacheStatus{Fwd: FwdMethod, FwdStatus: 201}, map[string]any{"fwd": httpsfv.Token("method"), "fwd-status": int64(201)}},
		{CacheStatus{Fwd: FwdRequest}, map[string]any{"fwd": httpsfv.Token("request")}},
		{CacheStatus{Fwd: FwdURIMiss, FwdStatus: 200, Collapsed: true, Hit: false}, map[string]any{"fwd": httpsfv.Token("uri-miss"), "fwd-status": int64(200), "collapsed": true}},
	}
	for _, tt := range tests {
		v := tt.s.String()
		// As it would arrive after an upstream cache's own member.
		list, err := httpsfv.UnmarshalList([]string{`upstream; hit`, v})
		if err != nil {
			t.Fatalf("%q does not parse as a Structured Field List: %v", v, err)
		}
		if len(list) != 2 {
			t.Fatalf("%q: %d members", v, len(list))
		}
		item, ok := list[1].(httpsfv.Item)
		if !ok || item.Value != httpsfv.Token(CacheStatusName) {
			t.Fatalf("%q: member %#v, want the token %s", v, list[1], CacheStatusName)
		}
		if got := len(item.Params.Names()); got != len(tt.want) {
			t.Errorf("%q: %d parameters, want %d", v, got, len(tt.want))
		}
		for name, want := range tt.want {
			if got, ok := item.Params.Get(name); !ok || got != want {
				t.Errorf("%q: %s = %#v, want %#v", v, name, got, want)
			}
		}
	}
}
