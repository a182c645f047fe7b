package disk

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"net/http"
	"time"
)

// An entry file is a header, the body, then the body's block checksums
// (blocks.go). The header starts with a fixed part so that the body
// size, known only once the body is written, can be patched in place before
// the file is renamed into view:
//
//	 0 magic "EDGC"
//	 4 version      uint16
//	 6 flags        uint16 (bit 0: NoCache, bit 1: VaryIndex, bit 2: SoftPurged,
//	                bit 3: tags follow the date)
//	 8 headerLen    uint32 (whole header, body starts here)
//	12 headerCRC    uint32 (CRC-32C of the header without these 4 bytes)
//	16 bodySize     int64
//	24 blockSize    uint32 (bytes per checksummed block of the body)
//	28 status       uint16
//	30 reserved     uint16 (0)
//	32 storedAt     int64 (Unix ns; minInt64 = zero time)
//	40 validUntil   int64
//	48 swr          int64 (ns)
//	56 sie          int64 (ns)
//	64 key, then the response headers, as uvarint-prefixed strings:
//	   len key, key, nNames, { len name, name, nValues, { len value, value } },
//	   len variant, variant
//	   initialAge (uvarint, ns), len date, date
//	   with flag 3: nTags, { len tag, tag }
//
// After the body, one CRC-32C per block of blockSize bytes (the last block
// may be shorter), 4 bytes each: every block a response reads is verified
// before any of its bytes is sent.
//
// Integers are little endian. Nothing in the file names the host or an
// absolute path: a zone folder can be copied to another machine.
//
// Version 3 added the block checksums (versions 1 and 2 had one checksum
// for the whole body, which a range request could not check), the flags
// (no-cache, Vary index), the age on arrival and the origin's Date. Files of
// another version are removed when found, as nginx does with an older
// cache header: they are fetched again.

const (
	entryMagic      = "EDGC"
	entryVersion    = 3
	flagNoCache     = 1 << 0
	flagVaryIndex   = 1 << 1
	flagSoftPurged  = 1 << 2
	flagTags        = 1 << 3 // added within version 3: older files have none
	fixedHeaderLen  = 64
	maxEntryHeader  = 1 << 20 // largest header we write or accept
	headerPrefixLen = 16      // enough to learn version and headerLen
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errBadMagic     = errors.New("not an entry file")
	errBadVersion   = errors.New("unknown entry file version")
	errBadHeaderLen = errors.New("bad header length")
	errHeaderCRC    = errors.New("header checksum mismatch")
	errHeaderSyntax = errors.New("malformed header")
	errHeaderLarge  = errors.New("entry header too large")
	errBlockSize    = errors.New("bad block size")
)

// fileHeader is the decoded header of an entry file.
type fileHeader struct {
	Entry            // File is set by Get, which returns the Entry (one allocation)
	HeaderLen int    // body offset
	HeaderCRC uint32 // identifies this file version
	BlockSize int64  // bytes per checksummed block
}

// encodeHeader encodes m's header with the given body size. The body size
// sits at a fixed offset; see patchHeader.
func encodeHeader(m *Meta, bodySize int64) ([]byte, error) {
	if m.Status < 0 || m.Status > math.MaxUint16 {
		return nil, errors.New("status out of range")
	}
	n := fixedHeaderLen + stringLen(m.Key) + uvarintLen(uint64(len(m.Header)))
	for name, vals := range m.Header {
		n += stringLen(name) + uvarintLen(uint64(len(vals)))
		for _, v := range vals {
			n += stringLen(v)
		}
	}
	n += stringLen(m.Variant) + uvarintLen(uint64(max(m.InitialAge, 0))) + stringLen(m.Date)
	if len(m.Tags) > 0 {
		n += uvarintLen(uint64(len(m.Tags)))
		for _, t := range m.Tags {
			n += stringLen(t)
		}
	}
	if n > maxEntryHeader {
		return nil, errHeaderLarge
	}
	b := make([]byte, fixedHeaderLen, n)
	copy(b, entryMagic)
	le := binary.LittleEndian
	le.PutUint16(b[4:], entryVersion)
	le.PutUint32(b[24:], bodyBlockSize)
	var flags uint16
	if m.NoCache {
		flags |= flagNoCache
	}
	if m.VaryIndex {
		flags |= flagVaryIndex
	}
	if m.SoftPurged {
		flags |= flagSoftPurged
	}
	if len(m.Tags) > 0 {
		flags |= flagTags
	}
	le.PutUint16(b[6:], flags)
	le.PutUint16(b[28:], uint16(m.Status))
	le.PutUint64(b[32:], uint64(timeToNanos(m.StoredAt)))
	le.PutUint64(b[40:], uint64(timeToNanos(m.ValidUntil)))
	le.PutUint64(b[48:], uint64(m.StaleWhileRevalidate))
	le.PutUint64(b[56:], uint64(m.StaleIfError))
	b = appendString(b, m.Key)
	b = binary.AppendUvarint(b, uint64(len(m.Header)))
	for name, vals := range m.Header {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = appendString(b, v)
		}
	}
	b = appendString(b, m.Variant)
	b = binary.AppendUvarint(b, uint64(max(m.InitialAge, 0)))
	b = appendString(b, m.Date)
	if len(m.Tags) > 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Tags)))
		for _, t := range m.Tags {
			b = appendString(b, t)
		}
	}
	le.PutUint32(b[8:], uint32(len(b)))
	patchHeader(b, bodySize)
	return b, nil
}

// patchHeader sets the body size of an encoded header and recomputes the
// header checksum.
func patchHeader(b []byte, bodySize int64) {
	le := binary.LittleEndian
	le.PutUint64(b[16:], uint64(bodySize))
	le.PutUint32(b[12:], headerChecksum(b))
}

func headerChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:12])
	return crc32.Update(c, castagnoli, b[16:])
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

func stringLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// headerLength validates the first headerPrefixLen bytes of a file and
// returns the full header length.
func headerLength(p []byte) (int, error) {
	if len(p) < headerPrefixLen {
		return 0, errBadHeaderLen
	}
	if string(p[:4]) != entryMagic {
		return 0, errBadMagic
	}
	if v := binary.LittleEndian.Uint16(p[4:]); v != entryVersion {
		return 0, errBadVersion
	}
	n := binary.LittleEndian.Uint32(p[8:])
	if n < fixedHeaderLen+2 || n > maxEntryHeader {
		return 0, errBadHeaderLen
	}
	return int(n), nil
}

// decodeHeader decodes an entry header from the start of b, which may hold
// more (the body). Every length is checked against the bytes present, so a
// hostile file cannot make it allocate more than about len(b).
func decodeHeader(b []byte) (*fileHeader, error) {
	n, err := headerLength(b)
	if err != nil {
		return nil, err
	}
	if len(b) < n {
		return nil, errBadHeaderLen
	}
	b = b[:n]
	le := binary.LittleEndian
	sum := le.Uint32(b[12:])
	if headerChecksum(b) != sum {
		return nil, errHeaderCRC
	}
	h := &fileHeader{HeaderLen: n, HeaderCRC: sum, BlockSize: int64(le.Uint32(b[24:]))}
	h.BodySize = int64(le.Uint64(b[16:]))
	if h.BodySize < 0 || h.BodySize > math.MaxInt64/2 {
		return nil, errHeaderSyntax
	}
	if !validBlockSize(h.BlockSize) {
		return nil, errBlockSize
	}
	h.Status = int(le.Uint16(b[28:]))
	h.NoCache = le.Uint16(b[6:])&flagNoCache != 0
	h.VaryIndex = le.Uint16(b[6:])&flagVaryIndex != 0
	h.SoftPurged = le.Uint16(b[6:])&flagSoftPurged != 0
	h.StoredAt = nanosToTime(int64(le.Uint64(b[32:])))
	h.ValidUntil = nanosToTime(int64(le.Uint64(b[40:])))
	h.StaleWhileRevalidate = time.Duration(le.Uint64(b[48:]))
	h.StaleIfError = time.Duration(le.Uint64(b[56:]))

	r := headerReader{b: b[fixedHeaderLen:]}
	h.Key = r.string()
	names := r.count(2) // a name takes at least 2 bytes
	if r.err == nil && names > 0 {
		h.Header = make(http.Header, names)
		for i := 0; i < names && r.err == nil; i++ {
			name := r.string()
			nv := r.count(1)
			if r.err != nil {
				break
			}
			// make gives len == cap: values are clipped as Meta requires.
			vals := make([]string, nv)
			for j := range vals {
				vals[j] = r.string()
			}
			h.Header[name] = vals
		}
	}
	h.Variant = r.string()
	h.InitialAge = time.Duration(min(r.uvarint(), math.MaxInt64))
	h.Date = r.string()
	if le.Uint16(b[6:])&flagTags != 0 {
		tags := r.count(2) // a tag takes at least 2 bytes
		if r.err == nil {
			h.Tags = make([]string, tags)
			for i := range h.Tags {
				h.Tags[i] = r.string()
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, errHeaderSyntax
	}
	return h, nil
}

type headerReader struct {
	b   []byte
	err error
}

func (r *headerReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errHeaderSyntax
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads an element count, each element taking at least minSize bytes.
func (r *headerReader) count(minSize int) int {
	v := r.uvarint()
	if r.err == nil && v > uint64(len(r.b)/minSize) {
		r.err = errHeaderSyntax
		return 0
	}
	return int(v)
}

func (r *headerReader) string() string {
	n := r.count(1)
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func timeToNanos(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func nanosToTime(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
