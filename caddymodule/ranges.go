package caddymodule

import (
	"net/http"
	"time"

	"github.com/edgecache/edgecache/cache"
)

// byteWindow is the part of a body a Range request asked for, served while
// the whole body is fetched and stored.
type byteWindow struct{ start, end int64 } // [start, end)

// clip returns the part of p, which starts at body offset pos, inside the window.
func (b *byteWindow) clip(pos int64, p []byte) []byte {
	from := max(b.start-pos, 0)
	to := min(b.end-pos, int64(len(p)))
	if from >= to {
		return nil
	}
	return p[from:to]
}

// rangeWindow applies a client's Range to the backend's answer to a GET,
// by the rules a hit follows (cache.EvaluateRange), adjusting the header
// and returning the status to send: a 206 and its window, a 416 and an
// empty window, or the whole 200 and no window.
func rangeWindow(req, hdr http.Header) (*byteWindow, int) {
	if _, ok := req["Range"]; !ok {
		return nil, http.StatusOK
	}
	size := contentLength(hdr)
	r, answer := cache.EvaluateRange(http.MethodGet, req, http.StatusOK, hdr, size, time.Now())
	if answer == cache.RangeWhole {
		return nil, http.StatusOK
	}
	return &byteWindow{start: r.Start, end: r.End}, cache.SetRangeHeader(hdr, r, answer, size, http.StatusOK)
}
