package caddymodule

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
)

func init() {
	caddy.RegisterModule(adminImportAPI{})
}

// adminImportAPI lets `edgecache import-nginx` store entries into a running
// instance: the zone's own writer stores them, so the CLI never writes into
// a folder the proxy owns (its index, its max_size accounting and its
// folder lock stay right), and an imported entry is a HIT at once.
//
//	GET  /edge_cache/import?zone=<name>
//	        -> {"disk": bool, "disk_bytes": n, "max_size": n, "loading": bool}
//	POST /edge_cache/import?zone=<name>
//	        body: one line of JSON (importMeta), then exactly body_size bytes
//	        -> {"stored": true} or {"stored": false, "reason": "newer"}
type adminImportAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminImportAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.edge_cache_import",
		New: func() caddy.Module { return new(adminImportAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminImportAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminImportPath, Handler: caddy.AdminHandlerFunc(a.handleImport)}}
}

const adminImportPath = "/edge_cache/import"

// maxImportMetaLine bounds the JSON line of an import request, headers
// included: nginx's stored header is under 64 KiB (body_start is 16 bits),
// JSON escaping may grow it.
const maxImportMetaLine = 256 << 10

var importReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxImportMetaLine) }}

// importMeta is an entry's metadata on the wire.
type importMeta struct {
	Key                  string      `json:"key"`
	Status               int         `json:"status"`
	Header               http.Header `json:"header"`
	StoredAt             time.Time   `json:"stored_at"`
	ValidUntil           time.Time   `json:"valid_until"`
	StaleWhileRevalidate int64       `json:"stale_while_revalidate_ns,omitempty"`
	StaleIfError         int64       `json:"stale_if_error_ns,omitempty"`
	BodySize             int64       `json:"body_size"`
	Variant              string      `json:"variant,omitempty"`
}

func importMetaOf(m cache.Meta) importMeta {
	return importMeta{Key: m.Key, Status: m.Status, Header: m.Header, StoredAt: m.StoredAt, ValidUntil: m.ValidUntil,
		StaleWhileRevalidate: int64(m.StaleWhileRevalidate), StaleIfError: int64(m.StaleIfError),
		BodySize: m.BodySize, Variant: m.Variant}
}

func (im importMeta) meta() cache.Meta {
	return cache.Meta{Key: im.Key, Status: im.Status, Header: im.Header, StoredAt: im.StoredAt, ValidUntil: im.ValidUntil,
		StaleWhileRevalidate: time.Duration(im.StaleWhileRevalidate), StaleIfError: time.Duration(im.StaleIfError),
		BodySize: im.BodySize, Variant: im.Variant}
}

// zoneImportInfo is the answer of GET /edge_cache/import.
type zoneImportInfo struct {
	Disk      bool  `json:"disk"`
	DiskBytes int64 `json:"disk_bytes"`
	MaxSize   int64 `json:"max_size"`
	Loading   bool  `json:"loading"`
}

type importResult struct {
	Stored bool   `json:"stored"`
	Reason string `json:"reason,omitempty"`
}

func (adminImportAPI) handleImport(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("zone")
	if name == "" {
		return adminError(http.StatusBadRequest, "name a zone: ?zone=<name>")
	}
	zones, err := zonesNamed(name)
	if err != nil {
		return err
	}
	z := zones[0]
	switch r.Method {
	case http.MethodGet:
		info := zoneImportInfo{}
		if d := z.Tiers().Disk; d != nil {
			info = zoneImportInfo{Disk: true, DiskBytes: d.Bytes, MaxSize: z.DiskMaxSize(), Loading: d.Loading}
		}
		return writeJSON(w, info)
	case http.MethodPost:
	default:
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET or POST")
	}
	br := importReaders.Get().(*bufio.Reader)
	br.Reset(r.Body)
	defer func() { br.Reset(nil); importReaders.Put(br) }()
	line, err := br.ReadSlice('\n')
	if err != nil {
		return adminError(http.StatusBadRequest, "import: no metadata line (%v; at most %d bytes)", err, maxImportMetaLine)
	}
	var im importMeta
	if err := json.Unmarshal(line, &im); err != nil {
		return adminError(http.StatusBadRequest, "import: bad metadata: %v", err)
	}
	if im.Key == "" || im.BodySize < 0 || im.Status < 100 || im.Status > 999 {
		return adminError(http.StatusBadRequest, "import: metadata needs a key, a status and a body size")
	}
	// A body shorter than announced fails the copy; a longer one is refused
	// here: neither stores anything.
	err = z.Import(im.meta(), io.LimitReader(br, im.BodySize))
	if errors.Is(err, cache.ErrNewerInZone) {
		return writeJSON(w, importResult{Reason: "newer"})
	}
	if err != nil {
		return adminError(http.StatusInternalServerError, "zone %s: %v", z.Name(), err)
	}
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		// Too late to undo: the entry had its announced size, which is
		// what counts. Say so rather than hide a confused client.
		return adminError(http.StatusBadRequest, "import: body longer than body_size %d (the entry was stored with that size)", im.BodySize)
	}
	return writeJSON(w, importResult{Stored: true})
}

// Interface guards
var _ caddy.AdminRouter = (*adminImportAPI)(nil)
