package caddymodule

import (
	"encoding/json"
	"net/http"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// handleDrain switches draining on or off (POST {"draining": bool}) and
// answers the health state after it; GET answers the state.
func (adminAPI) handleDrain(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var req adminapi.DrainRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			return adminError(http.StatusBadRequest, `bad drain request: %v (want {"draining": true|false})`, err)
		}
		if was := draining.Swap(req.Draining); was != req.Draining {
			logDrain(req.Draining)
		}
	default:
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET or POST")
	}
	return writeJSON(w, currentHealth())
}

// handleFleet lists the fleet's members (GET).
func (adminAPI) handleFleet(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return adminError(http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	app := runningApp()
	if app == nil || app.fleet == nil {
		return adminError(http.StatusNotFound, "this proxy is in no fleet: its edge_cache options have no shared block")
	}
	members, err := app.fleet.Members(r.Context())
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "%v", err)
	}
	return writeJSON(w, adminapi.FleetResponse{Members: members})
}
