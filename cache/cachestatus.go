package cache

import (
	"strconv"
	"time"
)

// CacheStatusName is the cache's name in Cache-Status (RFC 9211).
const CacheStatusName = "edgecache"

// Forward reasons of RFC 9211 §2.2 (fwd).
const (
	FwdBypass   = "bypass"   // configured not to use the cache (private request, refresh listener)
	FwdMethod   = "method"   // the method is not cacheable
	FwdURIMiss  = "uri-miss" // nothing stored for the URI
	FwdVaryMiss = "vary-miss"
	FwdStale    = "stale"   // stored but stale: fetched or revalidated
	FwdRequest  = "request" // the request asked to go forward (no-cache, the refresh listener)
)

// CacheStatus is one Cache-Status list member: this cache's account of a
// request (RFC 9211 §2).
type CacheStatus struct {
	Hit       bool          // served from the cache without going forward
	Fwd       string        // why the request went forward; "" when it did not
	FwdStatus int           // the backend's status, when it answered
	TTL       time.Duration // freshness left (negative when served stale)
	HasTTL    bool
	Stored    bool // the backend's response was stored
	Collapsed bool // the request waited on another one's fill
}

// AppendCacheStatus formats s as an sf-item with parameters, e.g.
// `edgecache; hit; ttl=376` or `edgecache; fwd=uri-miss; fwd-status=200;
// stored`. It is hand-formatted (no Structured Field encoder: this runs on
// every response when configured); its syntax is tested by parsing it as a
// Structured Field List.
func AppendCacheStatus(b []byte, s CacheStatus) []byte {
	b = append(b, CacheStatusName...)
	if s.Hit {
		b = append(b, "; hit"...)
	}
	if s.Fwd != "" {
		b = append(b, "; fwd="...)
		b = append(b, s.Fwd...)
		if s.FwdStatus > 0 {
			b = append(b, "; fwd-status="...)
			b = strconv.AppendInt(b, int64(s.FwdStatus), 10)
		}
	}
	if s.HasTTL {
		// An sf-integer has at most 15 digits; a TTL never comes near.
		b = append(b, "; ttl="...)
		b = strconv.AppendInt(b, int64(s.TTL/time.Second), 10)
	}
	if s.Stored {
		b = append(b, "; stored"...)
	}
	if s.Collapsed {
		b = append(b, "; collapsed"...)
	}
	return b
}

// String formats s (see AppendCacheStatus).
func (s CacheStatus) String() string { return string(AppendCacheStatus(nil, s)) }
