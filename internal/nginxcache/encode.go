package nginxcache

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"path/filepath"
)

// Encode writes a version 5 cache file as nginx does: the binary header,
// the KEY line, the stored response header (raw, from its status line to
// its empty line) and the body. It exists for tests and measurements that
// need many nginx files; the importer only reads.
func Encode(e *Entry, rawHeader, body []byte) ([]byte, error) {
	l := layouts[5]
	if len(e.ETag) > ETagLen || len(e.Vary) > VaryLen {
		return nil, errors.New("nginxcache: etag or vary too long")
	}
	headerStart := l.size + len(keyPrefix) + len(e.Key) + 1
	bodyStart := headerStart + len(rawHeader)
	if bodyStart > MaxHeaderSize {
		return nil, errors.New("nginxcache: header too long")
	}
	b := make([]byte, l.size, bodyStart+len(body))
	le := binary.LittleEndian
	le.PutUint64(b, 5)
	le.PutUint64(b[l.validSec:], uint64(e.ValidSec))
	le.PutUint64(b[l.updatingSec:], uint64(e.UpdatingSec))
	le.PutUint64(b[l.errorSec:], uint64(e.ErrorSec))
	le.PutUint64(b[l.lastModified:], uint64(e.LastModified))
	le.PutUint64(b[l.date:], uint64(e.Date))
	le.PutUint32(b[l.crc32:], crc32.ChecksumIEEE([]byte(e.Key)))
	le.PutUint16(b[l.validMsec:], e.ValidMsec)
	le.PutUint16(b[l.headerStart:], uint16(headerStart))
	le.PutUint16(b[l.bodyStart:], uint16(bodyStart))
	b[l.etagLen] = byte(len(e.ETag))
	copy(b[l.etagLen+1:], e.ETag)
	varyLenAt := l.etagLen + 1 + ETagLen
	b[varyLenAt] = byte(len(e.Vary))
	copy(b[varyLenAt+1:], e.Vary)
	copy(b[varyLenAt+1+VaryLen:], e.Variant[:])
	b = append(b, keyPrefix...)
	b = append(b, e.Key...)
	b = append(b, '\n')
	b = append(b, rawHeader...)
	b = append(b, body...)
	return b, nil
}

// FileName is the path, relative to the cache folder, where nginx stores
// the entry of hash (the MD5 of the key, or the variant) with the given
// levels (levels=1:2 is {1, 2}).
func FileName(hash [KeyLen]byte, levels []int) string {
	name := hex.EncodeToString(hash[:])
	parts := make([]string, 0, len(levels)+1)
	end := len(name)
	for _, n := range levels {
		parts = append(parts, name[end-n:end])
		end -= n
	}
	return filepath.Join(append(parts, name)...)
}

// KeyHash is the MD5 of a key, which names its file.
func KeyHash(key string) [KeyLen]byte { return md5.Sum([]byte(key)) }
