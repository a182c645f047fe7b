// Package nginxcache reads the entry files of nginx's proxy_cache: the
// binary header (ngx_http_file_cache_header_t), the "KEY:" line, the stored
// upstream response header and the offset of the body. It is what
// `edgecache import-nginx` decodes nginx's cache folders with; it knows
// nothing of edgecache's own cache or of Caddy.
//
// The format is nginx's in-memory struct written as is, so it depends on
// the platform: this package reads what nginx writes on 64-bit
// little-endian Linux (time_t and ngx_uint_t of 8 bytes), cache versions 3
// (nginx 1.7.3 to 1.11.9) and 5 (1.11.10 on, so 1.18 to 1.27).
package nginxcache

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Sizes of nginx's fixed header fields (ngx_http_cache.h).
const (
	ETagLen = 128 // NGX_HTTP_CACHE_ETAG_LEN
	VaryLen = 128 // NGX_HTTP_CACHE_VARY_LEN
	KeyLen  = 16  // NGX_HTTP_CACHE_KEY_LEN: an MD5
)

// keyPrefix follows the binary header (ngx_http_file_cache_key).
const keyPrefix = "\nKEY: "

// layout gives the offsets of a cache version's fields. Version 5 added
// updating_sec and error_sec (stale-while-revalidate, stale-if-error) after
// valid_sec; the struct is padded to 8 bytes.
type layout struct {
	validSec, updatingSec, errorSec, lastModified, date int
	crc32, validMsec, headerStart, bodyStart, etagLen   int
	size                                                int
}

var layouts = map[uint64]layout{
	3: {validSec: 8, updatingSec: -1, errorSec: -1, lastModified: 16, date: 24,
		crc32: 32, validMsec: 36, headerStart: 38, bodyStart: 40, etagLen: 42, size: 320},
	5: {validSec: 8, updatingSec: 16, errorSec: 24, lastModified: 32, date: 40,
		crc32: 48, validMsec: 52, headerStart: 54, bodyStart: 56, etagLen: 58, size: 336},
}

// MaxHeaderSize is the most of a file Decode may need: body_start is a
// 16-bit field.
const MaxHeaderSize = 1<<16 - 1

// Reasons a file cannot be decoded; Decode's errors wrap one of them.
var (
	ErrTruncated      = errors.New("truncated")
	ErrUnknownVersion = errors.New("unknown version")
	ErrBadHeader      = errors.New("bad header")
)

// Entry is the decoded head of a cache file: everything but the body,
// which runs from BodyStart to the end of the file.
type Entry struct {
	Version     int
	ValidSec    int64  // fresh until then (Unix seconds)
	ValidMsec   uint16 // milliseconds part of the validity
	UpdatingSec int64  // stale-while-revalidate, seconds (version 5)
	ErrorSec    int64  // stale-if-error, seconds (version 5)
	// LastModified and Date are Unix seconds; -1 or 0 when absent. Date
	// is when nginx stored the response.
	LastModified int64
	Date         int64
	CRC32        uint32
	HeaderStart  int // the stored response header starts here
	BodyStart    int // the body starts here
	ETag         string
	// Vary is the response's Vary value that nginx honoured, "" when the
	// entry is no variant (no Vary, or Vary ignored).
	Vary    string
	Variant [KeyLen]byte // MD5 of the key's MD5 and the request's values of Vary

	Key    string      // the proxy_cache_key of the request
	Status int         // the upstream response's status
	Header http.Header // the upstream response's header, as stored
}

// Decode decodes the head of a cache file, b being at least its first
// BodyStart bytes (MaxHeaderSize is always enough). It checks what nginx
// checks (version, the key's CRC32, the offsets) and that the stored
// response header is a complete HTTP header.
func Decode(b []byte) (*Entry, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	le := binary.LittleEndian
	version := le.Uint64(b)
	l, ok := layouts[version]
	if !ok {
		return nil, fmt.Errorf("%w %d (this reads versions 3 and 5)", ErrUnknownVersion, version)
	}
	if len(b) < l.size {
		return nil, fmt.Errorf("%w: %d bytes, the version %d header has %d", ErrTruncated, len(b), version, l.size)
	}
	e := &Entry{
		Version:      int(version),
		ValidSec:     int64(le.Uint64(b[l.validSec:])),
		LastModified: int64(le.Uint64(b[l.lastModified:])),
		Date:         int64(le.Uint64(b[l.date:])),
		CRC32:        le.Uint32(b[l.crc32:]),
		ValidMsec:    le.Uint16(b[l.validMsec:]),
		HeaderStart:  int(le.Uint16(b[l.headerStart:])),
		BodyStart:    int(le.Uint16(b[l.bodyStart:])),
	}
	if l.updatingSec >= 0 {
		e.UpdatingSec = int64(le.Uint64(b[l.updatingSec:]))
		e.ErrorSec = int64(le.Uint64(b[l.errorSec:]))
	}
	etagLen := int(b[l.etagLen])
	varyLenAt := l.etagLen + 1 + ETagLen
	varyLen := int(b[varyLenAt])
	if etagLen > ETagLen || varyLen > VaryLen {
		return nil, fmt.Errorf("%w: etag length %d, vary length %d", ErrBadHeader, etagLen, varyLen)
	}
	e.ETag = string(b[l.etagLen+1 : l.etagLen+1+etagLen])
	e.Vary = string(b[varyLenAt+1 : varyLenAt+1+varyLen])
	copy(e.Variant[:], b[varyLenAt+1+VaryLen:])

	keyStart := l.size + len(keyPrefix)
	if e.HeaderStart <= keyStart || e.BodyStart < e.HeaderStart {
		return nil, fmt.Errorf("%w: header_start %d, body_start %d", ErrBadHeader, e.HeaderStart, e.BodyStart)
	}
	if len(b) < e.HeaderStart {
		return nil, fmt.Errorf("%w: %d bytes, the key ends at %d", ErrTruncated, len(b), e.HeaderStart)
	}
	if string(b[l.size:keyStart]) != keyPrefix || b[e.HeaderStart-1] != '\n' {
		return nil, fmt.Errorf("%w: no KEY line", ErrBadHeader)
	}
	e.Key = string(b[keyStart : e.HeaderStart-1])
	if strings.IndexByte(e.Key, '\n') >= 0 {
		return nil, fmt.Errorf("%w: KEY line does not end at header_start", ErrBadHeader)
	}
	if crc32.ChecksumIEEE([]byte(e.Key)) != e.CRC32 {
		return nil, fmt.Errorf("%w: the key's CRC32 does not match", ErrBadHeader)
	}
	if len(b) < e.BodyStart {
		return nil, fmt.Errorf("%w: %d bytes, the body starts at %d", ErrTruncated, len(b), e.BodyStart)
	}
	status, hdr, err := parseResponse(b[e.HeaderStart:e.BodyStart])
	if err != nil {
		return nil, fmt.Errorf("%w: stored response: %v", ErrBadHeader, err)
	}
	e.Status, e.Header = status, hdr
	return e, nil
}

// parseResponse reads a stored upstream response header: the status line
// and the fields, ending with an empty line.
func parseResponse(raw []byte) (int, http.Header, error) {
	if !bytes.HasSuffix(raw, []byte("\r\n\r\n")) && !bytes.HasSuffix(raw, []byte("\n\n")) {
		return 0, nil, errors.New("does not end with an empty line")
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	line, err := r.ReadLine()
	if err != nil {
		return 0, nil, err
	}
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/") {
		return 0, nil, fmt.Errorf("status line %q is not HTTP's", line)
	}
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || status < 100 {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	mh, err := r.ReadMIMEHeader()
	if err != nil {
		return 0, nil, err
	}
	return status, http.Header(mh), nil
}

// Validity is when the entry stops being fresh.
func (e *Entry) Validity() time.Time {
	return time.Unix(e.ValidSec, int64(e.ValidMsec)*int64(time.Millisecond))
}

// IsVariant reports whether nginx stored the entry as a Vary variant: it
// honoured the response's Vary, and the entry holds the answer for the
// request values whose hash is Variant.
func (e *Entry) IsVariant() bool { return e.Vary != "" }

// VariantHash is nginx's hash of a request's values of the headers vary
// names (ngx_http_file_cache_vary): the MD5 of the key's MD5, then for each
// name, lower-cased, "name:" its values and CRLF. The values of several
// header lines are joined with ","; those of Accept-Charset,
// Accept-Encoding and Accept-Language are split at spaces and commas and
// joined with "," too.
func VariantHash(key, vary string, req http.Header) [KeyLen]byte {
	main := md5.Sum([]byte(key))
	h := md5.New()
	h.Write(main[:])
	for _, name := range splitTokens(strings.ToLower(vary)) {
		h.Write([]byte(name))
		h.Write([]byte(":"))
		normalize := name == "accept-charset" || name == "accept-encoding" || name == "accept-language"
		multiple := false
		for _, v := range req.Values(name) {
			parts := []string{v}
			if normalize {
				parts = splitTokens(v)
			}
			for _, p := range parts {
				if multiple {
					h.Write([]byte(","))
				}
				h.Write([]byte(p))
				multiple = true
			}
		}
		h.Write([]byte("\r\n"))
	}
	var sum [KeyLen]byte
	h.Sum(sum[:0])
	return sum
}

// splitTokens splits s at spaces and commas, as nginx reads Vary.
func splitTokens(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}
