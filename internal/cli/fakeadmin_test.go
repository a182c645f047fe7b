package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// fakeAdmin implements the edge_cache admin API contract over zones of keys.
type fakeAdmin struct {
	mu       sync.Mutex
	zones    map[string][]string // sorted keys
	requests []string            // method and URI of each request
	origins  []string
}

func newFakeAdmin() *fakeAdmin {
	f := &fakeAdmin{zones: map[string][]string{}}
	for i := range 2500 {
		f.zones["thumbnails"] = append(f.zones["thumbnails"], fmt.Sprintf("/webclient/render_thumbnail/%04d/", i))
	}
	f.zones["api"] = []string{"/api/v0/m/projects/", "/api/v0/m/screens/", "/webclient/api/annotations/"}
	slices.Sort(f.zones["thumbnails"])
	return f
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.RequestURI)
	f.origins = append(f.origins, r.Header.Get("Origin"))
	switch r.URL.Path {
	case adminapi.PurgePath:
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			apiError(w, http.StatusMethodNotAllowed, "want a JSON POST")
			return
		}
		var req struct {
			Zone, Key, Prefix string
			All               bool
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, "decoding request: %v", err)
			return
		}
		n := 0
		for _, set := range []bool{req.Key != "", req.Prefix != "", req.All} {
			if set {
				n++
			}
		}
		if n != 1 {
			apiError(w, http.StatusBadRequest, "need exactly one of key, prefix or all")
			return
		}
		if _, ok := f.zones[req.Zone]; req.Zone != "" && !ok {
			apiError(w, http.StatusBadRequest, "unknown zone %q", req.Zone)
			return
		}
		purged := 0
		for name, keys := range f.zones {
			if req.Zone != "" && name != req.Zone {
				continue
			}
			kept := keys[:0]
			for _, k := range keys {
				if req.All || k == req.Key || req.Prefix != "" && strings.HasPrefix(k, req.Prefix) {
					purged++
				} else {
					kept = append(kept, k)
				}
			}
			f.zones[name] = kept
		}
		json.NewEncoder(w).Encode(map[string]int{"purged": purged})
	case adminapi.KeysPath:
		q := r.URL.Query()
		keys, ok := f.zones[q.Get("zone")]
		if !ok {
			apiError(w, http.StatusBadRequest, "unknown zone %q", q.Get("zone"))
			return
		}
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit <= 0 {
			apiError(w, http.StatusBadRequest, "bad limit %q", q.Get("limit"))
			return
		}
		start, _ := slices.BinarySearch(keys, q.Get("after"))
		if start < len(keys) && keys[start] == q.Get("after") {
			start++
		}
		page := keys[start:min(start+limit, len(keys))]
		next := ""
		if start+limit < len(keys) {
			next = page[len(page)-1]
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": page, "next": next})
	default:
		http.NotFound(w, r)
	}
}

func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	f := newFakeAdmin()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.Listener.Addr().String()
}
