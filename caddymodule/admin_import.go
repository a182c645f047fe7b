package caddymodule

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddy.RegisterModule(adminImportAPI{})
}

// adminImportAPI lets `edgecache import-nginx` store entries into a running
// instance (adminapi.ImportPath): the zone's own writer stores them, so the
// CLI never writes into a folder the proxy owns (its index, its max_size
// accounting and its folder lock stay right), and an imported entry is a
// HIT at once.
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
	return []caddy.AdminRoute{{Pattern: adminapi.ImportPath, Handler: caddy.AdminHandlerFunc(a.handleImport)}}
}

var importReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, adminapi.MaxImportMetaLine) }}

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
		info := adminapi.ImportInfo{}
		if d := z.Tiers().Disk; d != nil {
			info = adminapi.ImportInfo{Disk: true, DiskBytes: d.Bytes, MaxSize: z.DiskMaxSize(), Loading: d.Loading}
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
		return adminError(http.StatusBadRequest, "import: no metadata line (%v; at most %d bytes)", err, adminapi.MaxImportMetaLine)
	}
	var im adminapi.ImportMeta
	if err := json.Unmarshal(line, &im); err != nil {
		return adminError(http.StatusBadRequest, "import: bad metadata: %v", err)
	}
	if im.Key == "" || im.BodySize < 0 || im.Status < 100 || im.Status > 999 {
		return adminError(http.StatusBadRequest, "import: metadata needs a key, a status and a body size")
	}
	// A body shorter than announced fails the copy; a longer one is refused
	// here: neither stores anything.
	err = z.Import(im.Meta(), io.LimitReader(br, im.BodySize))
	if errors.Is(err, cache.ErrNewerInZone) {
		return writeJSON(w, adminapi.ImportResult{Reason: adminapi.ReasonNewer})
	}
	if err != nil {
		return adminError(http.StatusInternalServerError, "zone %s: %v", z.Name(), err)
	}
	if n, _ := br.Read(make([]byte, 1)); n > 0 {
		// Too late to undo: the entry had its announced size, which is
		// what counts. Say so rather than hide a confused client.
		return adminError(http.StatusBadRequest, "import: body longer than body_size %d (the entry was stored with that size)", im.BodySize)
	}
	return writeJSON(w, adminapi.ImportResult{Stored: true})
}

// Interface guards
var _ caddy.AdminRouter = (*adminImportAPI)(nil)
