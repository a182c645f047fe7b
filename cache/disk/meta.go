package disk

import (
	"net/http"
	"time"
)

// Meta describes a stored response: everything but its body. It is what an
// entry file's header holds.
type Meta struct {
	Key    string
	Status int
	// Header holds the stored response headers. Values are clipped
	// (len == cap) so that an Add on a copy of the map can never write into
	// the shared backing array: hits assign these slices without copying.
	Header http.Header
	// StoredAt is when the response was received (RFC 9111's
	// response_time); InitialAge is how old it was then (§4.2.3's
	// corrected_initial_age), so its current age is InitialAge plus the
	// time since StoredAt.
	StoredAt   time.Time
	InitialAge time.Duration
	// Date is the origin's Date header, kept apart from Header (it is the
	// message's, not the resource's) and sent as is on every hit; the time
	// received when the origin sent none.
	Date       string
	ValidUntil time.Time // fresh until this instant; stale (but usable) after
	// NoCache: the backend said no-cache, so the entry is revalidated
	// with the backend before every use (RFC 9111 §5.2.2.4).
	NoCache bool
	// StaleWhileRevalidate and StaleIfError come from the backend's
	// Cache-Control when it is honoured; they extend how long a stale entry
	// may be served while updating or while the backend fails.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	BodySize             int64
	// Variant holds the request's values of the headers the response's Vary
	// names, when Vary is honoured (see cache.Variant); empty otherwise.
	Variant string
	// VaryNames, given to the zone's NewEntryWriter with Variant, stores
	// the response as one variant among several: under cache.VariantKey(Key,
	// Variant), with an index entry under Key that records the names. On an
	// index entry, the names it records (not in the file: the zone reads
	// them from the index's Vary header).
	VaryNames []string
	// VaryIndex marks a primary key's index of variants: no response, a
	// Vary header of the names, no body.
	VaryIndex bool
	// Tags name the objects the response is about (cache/tags.go),
	// sorted: purges by tag find the entry through them.
	Tags []string
	// SoftPurged: expired by a soft purge rather than by age, so that a
	// zone serving stale while updating refreshes it in the background.
	SoftPurged bool
}
