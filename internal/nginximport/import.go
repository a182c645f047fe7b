// Package nginximport copies the entries of an nginx proxy_cache folder
// into an edgecache zone, so that a migration starts warm: it scans the
// folder, keeps what fits the zone's max_size (most recently used first),
// decodes each file (internal/nginxcache) and hands the entry, keyed as
// edgecache keys the same request, to a Sink: the running proxy's admin
// API, or the zone's disk tier opened directly when the proxy is stopped.
package nginximport

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/nginxcache"
)

// Reasons a file is skipped, as the summary prints them.
const (
	ReasonTemp         = "temporary or foreign file (name is not an MD5: in flight or left by a crash)"
	ReasonTruncated    = "truncated"
	ReasonVersion      = "unknown version"
	ReasonBadHeader    = "bad header"
	ReasonUnreadable   = "unreadable"
	ReasonSince        = "stored before --since"
	ReasonMaxSize      = "over the zone's max_size (least recently used)"
	ReasonVaryIgnored  = "Vary variant (the zone ignores Vary)"
	ReasonVaryUnknown  = "Vary variant (request values unknown; see --vary-value)"
	ReasonNewerInZone  = "already imported (the zone holds it, as new or newer)"
	ReasonBodyTooLarge = "body over the zone's max_size"
	ReasonMisplaced    = "misplaced (file name is neither its key's MD5 nor its variant's: nginx never serves it)"
	ReasonStatus       = "status outside 100-599"
	ReasonChunked      = "body still chunk-framed (nginx stores bodies decoded: the file is not nginx's)"
)

// KeyError is returned by Options.Key for an nginx key that has no
// edgecache key; its Reason is counted as a skip reason.
type KeyError struct{ Reason string }

func (e KeyError) Error() string { return e.Reason }

// Sink stores imported entries. Import returns cache.ErrNewerInZone when the
// zone already holds the key as new or newer.
type Sink interface {
	Import(ctx context.Context, m cache.Meta, body io.Reader) error
}

// Options configure an import.
type Options struct {
	From string // the nginx cache folder
	// Key maps an nginx key to the edgecache key of the same request; a
	// KeyError skips the file with its reason.
	Key func(nginxKey string) (string, error)
	// HonourVary is whether the zone's handlers honour Vary: nginx's
	// variants are imported as variants, else skipped.
	HonourVary bool
	// VaryValues are candidate request values of the headers entries vary
	// on. nginx stores only a hash of them; a variant is imported when one
	// combination of these (or the header's absence) gives that hash.
	VaryValues http.Header
	// StatusHeader is dropped from stored headers, as the handler drops it.
	StatusHeader string
	Since        time.Time // skip entries stored before
	Budget       int64     // bytes the zone may still take; 0: no bound
	MaxBody      int64     // largest body the zone stores; 0: no bound
	DryRun       bool      // decode and count, write nothing
	Workers      int       // files imported at once; default 4

	Progress    io.Writer // nil: none
	Interactive bool      // redraw one line (a terminal) rather than print lines
	Interval    time.Duration
}

// Summary is the outcome of an import.
type Summary struct {
	Files       int64            // entry files found
	Imported    int64            // entries stored (or that would be, with DryRun)
	Bytes       int64            // their body bytes
	Skipped     map[string]int64 // by reason
	Failed      int64            // files the sink could not store
	FirstError  error            // the first of those failures
	Elapsed     time.Duration
	Interrupted bool
	DryRun      bool
}

// Run imports the folder. It stops early only when ctx is cancelled (an
// interrupted import is resumed by running it again: entries already in
// the zone are skipped) or when the folder cannot be read at all.
func Run(ctx context.Context, opts Options, sink Sink) (Summary, error) {
	start := time.Now()
	sum := Summary{Skipped: make(map[string]int64), DryRun: opts.DryRun}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Key == nil {
		opts.Key = func(k string) (string, error) { return k, nil }
	}
	sc, err := scanFolder(opts.From, opts.Since)
	if err != nil {
		return sum, fmt.Errorf("reading %s: %w", opts.From, err)
	}
	sum.Files = int64(len(sc.files))
	for r, n := range sc.skipped {
		sum.Skipped[r] += n
		sum.Files += n
	}
	if n := sc.selectWithin(opts.Budget); n > 0 {
		sum.Skipped[ReasonMaxSize] += n
	}

	prog := newProgress(opts.Progress, opts.Interactive, opts.Interval, int64(len(sc.files)), sc.bytes)
	stopProg := make(chan struct{})
	progDone := make(chan struct{})
	go func() { prog.run(stopProg); close(progDone) }()

	var mu sync.Mutex
	work := make(chan *file)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				reason, n, err := importFile(ctx, &opts, sink, sc.path(f))
				mu.Lock()
				switch {
				case err != nil:
					sum.Failed++
					if sum.FirstError == nil {
						sum.FirstError = err
					}
				case reason != "":
					sum.Skipped[reason]++
				default:
					sum.Imported++
					sum.Bytes += n
				}
				mu.Unlock()
				prog.add(f.size)
			}
		}()
	}
feed:
	for i := range sc.files {
		select {
		case work <- &sc.files[i]:
		case <-ctx.Done():
			sum.Interrupted = true
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(stopProg)
	<-progDone
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// importFile imports one file. It returns a skip reason, or the body bytes
// stored, or the sink's failure.
func importFile(ctx context.Context, opts *Options, sink Sink, path string) (reason string, n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ReasonTemp, 0, nil // nginx's manager removed it since the scan
		}
		return ReasonUnreadable, 0, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ReasonUnreadable, 0, nil
	}
	head := make([]byte, min(fi.Size(), nginxcache.MaxHeaderSize))
	if _, err := io.ReadFull(f, head); err != nil {
		return ReasonUnreadable, 0, nil
	}
	e, err := nginxcache.Decode(head)
	switch {
	case errors.Is(err, nginxcache.ErrTruncated):
		return ReasonTruncated, 0, nil
	case errors.Is(err, nginxcache.ErrUnknownVersion):
		return ReasonVersion, 0, nil
	case err != nil:
		return ReasonBadHeader, 0, nil
	}
	if name := filepath.Base(path); name != hexHash(nginxcache.KeyHash(e.Key)) && (!e.IsVariant() || name != hexHash(e.Variant)) {
		return ReasonMisplaced, 0, nil
	}
	if e.Status > 599 {
		return ReasonStatus, 0, nil
	}
	bodySize := fi.Size() - int64(e.BodyStart)
	if _, chunked := e.Header["Transfer-Encoding"]; chunked && chunkFramed(f, int64(e.BodyStart), bodySize) {
		return ReasonChunked, 0, nil
	}
	if cl := e.Header.Get("Content-Length"); cl != "" {
		if want, err := strconv.ParseInt(cl, 10, 64); err == nil && want != bodySize {
			return ReasonTruncated, 0, nil
		}
	}
	if opts.MaxBody > 0 && bodySize > opts.MaxBody {
		return ReasonBodyTooLarge, 0, nil
	}
	key, err := opts.Key(e.Key)
	if ke, ok := errors.AsType[KeyError](err); ok {
		return ke.Reason, 0, nil
	} else if err != nil {
		return "", 0, err
	}
	m := cache.Meta{
		Key:                  key,
		Status:               e.Status,
		Header:               storedHeader(e.Header, opts.StatusHeader),
		StoredAt:             storedAt(e, fi.ModTime()),
		ValidUntil:           e.Validity(),
		StaleWhileRevalidate: time.Duration(max(e.UpdatingSec, 0)) * time.Second,
		StaleIfError:         time.Duration(max(e.ErrorSec, 0)) * time.Second,
		BodySize:             bodySize,
	}
	if e.IsVariant() {
		if !opts.HonourVary {
			return ReasonVaryIgnored, 0, nil
		}
		req, ok := recoverVaryRequest(e, opts.VaryValues)
		if !ok {
			return ReasonVaryUnknown, 0, nil
		}
		m.Variant = cache.Variant(m.Header["Vary"], req)
	}
	if opts.DryRun {
		return "", bodySize, nil
	}
	// An interruption stops the feed; the entry under way is finished.
	err = sink.Import(context.WithoutCancel(ctx), m, io.NewSectionReader(f, int64(e.BodyStart), bodySize))
	if errors.Is(err, cache.ErrNewerInZone) {
		return ReasonNewerInZone, 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("%s (key %s): %w", path, key, err)
	}
	return "", bodySize, nil
}

func hexHash(h [nginxcache.KeyLen]byte) string { return hex.EncodeToString(h[:]) }

// storedAt is when nginx stored the response: its date field, or the
// file's modification time when that is missing.
func storedAt(e *nginxcache.Entry, mtime time.Time) time.Time {
	if e.Date > 0 {
		return time.Unix(e.Date, 0)
	}
	return mtime
}

// storedHeader is what edgecache would have stored of the upstream header:
// no session (Set-Cookie, which nginx stored but hid), nothing hop-by-hop
// (the fields RFC 9110 §7.6.1 names, and those the Connection field
// names), no framing (Transfer-Encoding: nginx stored the body decoded),
// no Date or Content-Length (set when served).
func storedHeader(h http.Header, statusHeader string) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		switch k {
		case "Set-Cookie", "Date", "Content-Length", "Connection", "Keep-Alive", "Proxy-Connection",
			"Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Authenticate", statusHeader:
			continue
		}
		out[k] = v
	}
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(out, http.CanonicalHeaderKey(name))
			}
		}
	}
	return out
}

// chunkFramed reports whether the body of size bytes at off in f is a
// whole chunked message body (RFC 9112 §7.1: chunks, then the last, empty
// one). nginx decodes a chunked upstream body before it stores it, and
// keeps the Transfer-Encoding field in the stored header: a body that
// still carries the framing was not written by nginx, and would be served
// framing and all. A decoded body that happened to parse as chunks, to
// the last one, is not a thing real content does.
func chunkFramed(f io.ReaderAt, off, size int64) bool {
	_, err := io.Copy(io.Discard, httputil.NewChunkedReader(io.NewSectionReader(f, off, size)))
	return err == nil
}

// maxVaryCombinations bounds the request values tried for one variant.
const maxVaryCombinations = 4096

// recoverVaryRequest finds request values of the headers e varies on whose
// nginx hash is e's variant: each header absent, or one of the candidates.
func recoverVaryRequest(e *nginxcache.Entry, candidates http.Header) (http.Header, bool) {
	var names []string
	for _, n := range splitVary(e.Vary) {
		names = append(names, http.CanonicalHeaderKey(n))
	}
	req := make(http.Header, len(names))
	tried := 0
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(names) {
			tried++
			return nginxcache.VariantHash(e.Key, e.Vary, req) == e.Variant
		}
		if tried >= maxVaryCombinations {
			return false
		}
		delete(req, names[i])
		if try(i + 1) {
			return true
		}
		for _, v := range candidates[names[i]] {
			req[names[i]] = []string{v}
			if try(i + 1) {
				return true
			}
		}
		delete(req, names[i])
		return false
	}
	return req, try(0)
}

func splitVary(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == ',' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return out
}
