package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/edgecache/edgecache/internal/adminapi"
)

func init() {
	caddy.RegisterModule(PurgeHandler{})
	httpcaddyfile.RegisterHandlerDirective("edge_cache_purge", parseCaddyfilePurge)
	httpcaddyfile.RegisterDirectiveOrder("edge_cache_purge", httpcaddyfile.After, "request_header")
}

// PurgeHandler lets applications purge the cache over HTTP, as Varnish
// and Squid users expect, on a listener the operator chooses (typically a
// private one): `PURGE <uri>` purges that key, and POST takes the admin
// API's purge body (key, prefix, tags, all, soft, zone). Every request
// needs `Authorization: Bearer <token>`: without it, or with another
// token, the answer is 401. The answer is the admin API's, as JSON
// ({"purged": n} or {"marked": n}, and "shared" in a fleet), and the
// purge reaches the fleet like any other. The handler answers every
// request it sees and never passes one on.
type PurgeHandler struct {
	// Token is the bearer token applications send; placeholders are
	// resolved at load (e.g. {env.EDGECACHE_PURGE_TOKEN}). Required.
	Token string `json:"token"`

	token [sha256.Size]byte // the token's digest: compared in constant time
}

// CaddyModule returns the Caddy module information.
func (PurgeHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_cache_purge",
		New: func() caddy.Module { return new(PurgeHandler) },
	}
}

// Provision resolves the token's placeholders.
func (p *PurgeHandler) Provision(caddy.Context) error {
	token := caddy.NewReplacer().ReplaceKnown(p.Token, "")
	if strings.TrimSpace(token) == "" {
		return errors.New("edge_cache_purge: a token is required (token {env.EDGECACHE_PURGE_TOKEN}, say): without one anyone who reaches the listener could empty the cache")
	}
	p.token = sha256.Sum256([]byte(token))
	return nil
}

// Validate checks the configuration.
func (p *PurgeHandler) Validate() error {
	if p.token == [sha256.Size]byte{} {
		return errors.New("edge_cache_purge: a token is required")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (p *PurgeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !p.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edge_cache_purge"`)
		return writeError(w, http.StatusUnauthorized, "a purge needs Authorization: Bearer <token>")
	}
	var req adminapi.PurgeRequest
	switch r.Method {
	case "PURGE":
		req.Key = r.URL.RequestURI()
	case http.MethodPost:
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			return writeError(w, http.StatusBadRequest, fmt.Sprintf("bad purge request: %v", err))
		}
	default:
		w.Header().Set("Allow", "PURGE, POST")
		return writeError(w, http.StatusMethodNotAllowed, "use PURGE <uri>, or POST a purge request")
	}
	resp, err := purge(r.Context(), req, byEndpoint)
	if err != nil {
		status := http.StatusInternalServerError
		var ae caddy.APIError
		if errors.As(err, &ae) {
			status, err = ae.HTTPStatus, ae.Err
		}
		return writeError(w, status, err.Error())
	}
	return writeJSON(w, resp)
}

// authorized compares the bearer token in constant time (of the digests,
// so that not even the token's length leaks).
func (p *PurgeHandler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], p.token[:]) == 1
}

// writeError answers status with {"error": msg}, as the admin API does.
func writeError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_cache_purge [<matcher>] {
//	    token <secret>        # e.g. {env.EDGECACHE_PURGE_TOKEN}; required
//	}
func (p *PurgeHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "token":
			if err := oneArg(d, &p.Token); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized edge_cache_purge option %q", d.Val())
		}
	}
	if p.Token == "" {
		return d.Err("edge_cache_purge: a token is required: token <secret>, e.g. token {env.EDGECACHE_PURGE_TOKEN}")
	}
	return nil
}

func parseCaddyfilePurge(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(PurgeHandler)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*PurgeHandler)(nil)
	_ caddy.Validator             = (*PurgeHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*PurgeHandler)(nil)
	_ caddyfile.Unmarshaler       = (*PurgeHandler)(nil)
)
