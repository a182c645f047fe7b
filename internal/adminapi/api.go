package adminapi

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/edgecache/edgecache/fleet"
)

// The admin routes.
const (
	PurgePath  = "/edge_cache/purge"
	KeysPath   = "/edge_cache/keys"
	DrainPath  = "/edge_cache/drain"
	FleetPath  = "/edge_cache/fleet"
	ImportPath = "/edge_cache/import"
)

// PurgeRequest is the body of POST PurgePath (and of a POST to the
// edge_cache_purge handler): exactly one of Key, Prefix (both in text
// form), Tags and All. Soft keeps the entries, marked expired.
type PurgeRequest struct {
	Zone   string   `json:"zone,omitempty"` // empty: every zone
	Key    string   `json:"key,omitempty"`
	Prefix string   `json:"prefix,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	All    bool     `json:"all,omitempty"`
	Soft   bool     `json:"soft,omitempty"`
}

// PurgeResponse is the answer to a purge.
type PurgeResponse struct {
	Purged int `json:"purged"`
	// Marked is how many entries a soft purge marked expired; absent for
	// a purge.
	Marked *int `json:"marked,omitempty"`
	// Shared is how many values the purge removed from the fleet's Redis;
	// absent when the proxy has no shared block or the zone is not shared.
	Shared *int `json:"shared,omitempty"`
}

// Page sizes of GET KeysPath.
const (
	DefaultKeysLimit = 1000
	MaxKeysLimit     = 10000
)

// KeysRequest is the query of GET KeysPath: a page of a zone's keys, in
// text form, after After (the Next of the previous page), starting with
// Prefix. With Tag, the keys of the entries that carry the tag, of Zone
// or of every zone when Zone is empty, in order.
type KeysRequest struct {
	Zone   string
	Prefix string
	Tag    string
	After  string
	Limit  int // 0: DefaultKeysLimit
}

// URI is the request's path and query.
func (q KeysRequest) URI() string {
	v := url.Values{}
	if q.Zone != "" {
		v.Set("zone", q.Zone)
	}
	if q.Tag != "" {
		v.Set("tag", q.Tag)
	}
	if q.Prefix != "" {
		v.Set("prefix", q.Prefix)
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return KeysPath + "?" + v.Encode()
}

// ParseKeysRequest reads the query of GET KeysPath. Prefix and After stay
// in text form.
func ParseKeysRequest(v url.Values) (KeysRequest, error) {
	q := KeysRequest{Zone: v.Get("zone"), Prefix: v.Get("prefix"), Tag: v.Get("tag"), After: v.Get("after"), Limit: DefaultKeysLimit}
	if q.Zone == "" && q.Tag == "" {
		return q, fmt.Errorf("name a zone: ?zone=<name> (or a tag: ?tag=<tag>)")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxKeysLimit {
			return q, fmt.Errorf("limit: want a number from 1 to %d, not %q", MaxKeysLimit, s)
		}
		q.Limit = n
	}
	return q, nil
}

// KeysResponse is a page of keys, in text form. Next is the After of the
// next page, empty at the end.
type KeysResponse struct {
	Keys []string `json:"keys"`
	Next string   `json:"next"`
}

// DrainRequest is the body of POST DrainPath.
type DrainRequest struct {
	Draining bool `json:"draining"`
}

// Health states, in HealthState.Status.
const (
	HealthOK          = "ok"
	HealthDraining    = "draining"
	HealthMaintenance = "maintenance"
)

// HealthState is a proxy's health: the answer of DrainPath, and the body
// of the edge_cache_health handler's answer to a load balancer.
type HealthState struct {
	Status      string   `json:"status"`
	Node        string   `json:"node,omitempty"`
	Draining    bool     `json:"draining"`
	Maintenance []string `json:"maintenance"` // the flag files that are on
	// Shared says, in a fleet, whether Redis answers ("up") or the
	// breaker keeps requests off it ("down"): for the operator, not the
	// load balancer (the proxy serves either way).
	Shared string `json:"shared,omitempty"`
}

// FleetResponse is the answer of GET FleetPath.
type FleetResponse struct {
	Members []fleet.Member `json:"members"`
}

// Error is the body of an error answer (Caddy's admin API writes it).
type Error struct {
	Error string `json:"error"`
}
