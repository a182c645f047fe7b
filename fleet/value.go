package fleet

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"net/http"
	"time"

	"github.com/edgecache/edgecache/cache"
)

// One Redis value holds one entry whole: its metadata, its body and a
// checksum, written by one SET. Body and metadata therefore never
// mismatch, and a reader sees the old value or the new one, never a part.
//
//	"ecv1"                 magic and version
//	crc32c  (4 bytes, BE)  Castagnoli CRC of the Redis key, then of everything after it
//	uvarint                length of the metadata
//	metadata               JSON (wireMeta)
//	body                   exactly the metadata's body size
//
// The checksum covers the key the value was written under, prefix
// included: a value copied under another key, or written by a fleet with
// another prefix, never verifies.
const valueMagic = "ecv1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wireMeta is cache.Meta as stored: times in Unix nanoseconds, durations
// in nanoseconds. Key is the key the flow looks up (a variant's primary
// key, with Variant and VaryNames).
type wireMeta struct {
	Key        string      `json:"k"`
	Status     int         `json:"s"`
	Header     http.Header `json:"h,omitempty"`
	StoredAt   int64       `json:"t"`
	InitialAge int64       `json:"a,omitempty"`
	Date       string      `json:"d,omitempty"`
	ValidUntil int64       `json:"v"`
	NoCache    bool        `json:"nc,omitempty"`
	SWR        int64       `json:"swr,omitempty"`
	SIE        int64       `json:"sie,omitempty"`
	BodySize   int64       `json:"n"`
	Variant    string      `json:"var,omitempty"`
	VaryNames  []string    `json:"vn,omitempty"`
	VaryIndex  bool        `json:"vi,omitempty"`
	Tags       []string    `json:"tg,omitempty"`
	SoftPurged bool        `json:"sp,omitempty"`
}

// encodeValue makes the value of an entry with meta and body, to be
// written under redisKey.
func encodeValue(redisKey string, m cache.Meta, body []byte) ([]byte, error) {
	meta, err := json.Marshal(wireMeta{
		Key: m.Key, Status: m.Status, Header: m.Header,
		StoredAt: m.StoredAt.UnixNano(), InitialAge: int64(m.InitialAge), Date: m.Date,
		ValidUntil: m.ValidUntil.UnixNano(), NoCache: m.NoCache,
		SWR: int64(m.StaleWhileRevalidate), SIE: int64(m.StaleIfError),
		BodySize: int64(len(body)), Variant: m.Variant, VaryNames: m.VaryNames, VaryIndex: m.VaryIndex,
		Tags: m.Tags, SoftPurged: m.SoftPurged,
	})
	if err != nil {
		return nil, err
	}
	v := make([]byte, 0, len(valueMagic)+4+binary.MaxVarintLen64+len(meta)+len(body))
	v = append(v, valueMagic...)
	v = append(v, 0, 0, 0, 0)
	v = binary.AppendUvarint(v, uint64(len(meta)))
	v = append(v, meta...)
	v = append(v, body...)
	binary.BigEndian.PutUint32(v[len(valueMagic):], checksum(redisKey, v[len(valueMagic)+4:]))
	return v, nil
}

func checksum(redisKey string, rest []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(redisKey))
	return crc32.Update(c, castagnoli, rest)
}

// errCorrupt is a value that does not decode or verify: a miss, never
// served.
var errCorrupt = errors.New("fleet: corrupt value")

// decodeValue checks and decodes a value read under redisKey, which must
// hold an entry of key. The entry's body shares v's memory.
func decodeValue(redisKey, key string, v []byte) (*cache.Entry, error) {
	head := len(valueMagic) + 4
	if len(v) < head+1 || !bytes.Equal(v[:len(valueMagic)], []byte(valueMagic)) {
		return nil, errCorrupt
	}
	if binary.BigEndian.Uint32(v[len(valueMagic):]) != checksum(redisKey, v[head:]) {
		return nil, errCorrupt
	}
	n, used := binary.Uvarint(v[head:])
	if used <= 0 || n > uint64(len(v)-head-used) {
		return nil, errCorrupt
	}
	metaAt := head + used
	var w wireMeta
	if err := json.Unmarshal(v[metaAt:metaAt+int(n)], &w); err != nil {
		return nil, errCorrupt
	}
	body := v[metaAt+int(n):]
	if w.Key != key || w.BodySize != int64(len(body)) || w.Status < 100 || w.Status > 599 ||
		w.InitialAge < 0 || w.SWR < 0 || w.SIE < 0 {
		return nil, errCorrupt
	}
	for k, vs := range w.Header {
		w.Header[k] = vs[:len(vs):len(vs)]
	}
	return &cache.Entry{
		Meta: cache.Meta{
			Key: w.Key, Status: w.Status, Header: w.Header,
			StoredAt: time.Unix(0, w.StoredAt), InitialAge: time.Duration(w.InitialAge), Date: w.Date,
			ValidUntil: time.Unix(0, w.ValidUntil), NoCache: w.NoCache,
			StaleWhileRevalidate: time.Duration(w.SWR), StaleIfError: time.Duration(w.SIE),
			BodySize: w.BodySize, Variant: w.Variant, VaryNames: w.VaryNames, VaryIndex: w.VaryIndex,
			Tags: w.Tags, SoftPurged: w.SoftPurged,
		},
		Body: body[:len(body):len(body)],
	}, nil
}
