package adminapi

import (
	"net/http"
	"net/url"
	"time"

	"github.com/edgecache/edgecache/cache"
)

// ImportURI is the path and query of ImportPath for a zone.
func ImportURI(zone string) string {
	return ImportPath + "?zone=" + url.QueryEscape(zone)
}

// MaxImportMetaLine bounds the JSON line of an import request, headers
// included: nginx's stored header is under 64 KiB (body_start is 16 bits),
// JSON escaping may grow it.
const MaxImportMetaLine = 256 << 10

// ImportMeta is an entry's metadata on the wire: the first line of POST
// ImportPath, before the body.
type ImportMeta struct {
	Key                  string      `json:"key"`
	Status               int         `json:"status"`
	Header               http.Header `json:"header"`
	StoredAt             time.Time   `json:"stored_at"`
	ValidUntil           time.Time   `json:"valid_until"`
	StaleWhileRevalidate int64       `json:"stale_while_revalidate_ns,omitempty"`
	StaleIfError         int64       `json:"stale_if_error_ns,omitempty"`
	BodySize             int64       `json:"body_size"`
	Variant              string      `json:"variant,omitempty"`
	Tags                 []string    `json:"tags,omitempty"`
}

// ImportMetaOf is m on the wire.
func ImportMetaOf(m cache.Meta) ImportMeta {
	return ImportMeta{Key: m.Key, Status: m.Status, Header: m.Header, StoredAt: m.StoredAt, ValidUntil: m.ValidUntil,
		StaleWhileRevalidate: int64(m.StaleWhileRevalidate), StaleIfError: int64(m.StaleIfError),
		BodySize: m.BodySize, Variant: m.Variant, Tags: m.Tags}
}

// Meta is the entry's metadata as the zone stores it.
func (im ImportMeta) Meta() cache.Meta {
	return cache.Meta{Key: im.Key, Status: im.Status, Header: im.Header, StoredAt: im.StoredAt, ValidUntil: im.ValidUntil,
		StaleWhileRevalidate: time.Duration(im.StaleWhileRevalidate), StaleIfError: time.Duration(im.StaleIfError),
		BodySize: im.BodySize, Variant: im.Variant, Tags: im.Tags}
}

// ImportInfo is the answer of GET ImportPath: the zone's disk tier, if it
// has one, so that the importer keeps within its max_size once it is
// loaded.
type ImportInfo struct {
	Disk      bool  `json:"disk"`
	DiskBytes int64 `json:"disk_bytes"`
	MaxSize   int64 `json:"max_size"`
	Loading   bool  `json:"loading"`
}

// ImportResult is the answer of POST ImportPath. Reason is "newer"
// (ReasonNewer) when the zone holds the key as new or newer.
type ImportResult struct {
	Stored bool   `json:"stored"`
	Reason string `json:"reason,omitempty"`
}

// ReasonNewer is why an entry was not imported: the zone holds a newer one.
const ReasonNewer = "newer"
