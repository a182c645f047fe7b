package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"

	"github.com/redis/go-redis/v9"

	"github.com/edgecache/edgecache/cache"
)

// Current reports, for each local entry, whether Redis holds the same
// version of it (a value stored at the same instant, to the nanosecond,
// fresh until the same instant, soft-purged or not). Such an entry is
// current even if events were lost (Loss.ValuesKept): a purge, an
// invalidation or a refresh removes or replaces the value in Redis before
// it is published, and a soft purge rewrites it marked expired. An entry Redis does not hold (evicted,
// expired, over entry_max, stored while Redis was down) cannot be proven
// current. Only the values' metadata is read (GETRANGE), pipelined.
func (f *Fleet) Current(ctx context.Context, zone string, vs []cache.Version) ([]bool, error) {
	current := make([]bool, len(vs))
	heads, err := f.heads(ctx, zone, vs, func(int) int64 { return peekSize })
	if err != nil {
		return current, err
	}
	// A metadata larger than the first read (a response with a large
	// header) is read again, whole.
	longer := make(map[int]int64)
	for i, h := range heads {
		if need := metaEnd(h); need > int64(len(h)) {
			longer[i] = need
		}
	}
	if len(longer) > 0 {
		again, err := f.heads(ctx, zone, vs, func(i int) int64 { return longer[i] })
		if err != nil {
			return current, err
		}
		for i := range longer {
			heads[i] = again[i]
		}
	}
	for i, h := range heads {
		w, ok := peekMeta(h)
		key, _, _ := cache.SplitVariantKey(vs[i].Key)
		v := vs[i]
		current[i] = ok && w.Key == key && w.StoredAt == v.StoredAt.UnixNano() &&
			w.ValidUntil == v.ValidUntil.UnixNano() && w.SoftPurged == v.SoftPurged
	}
	return current, nil
}

// peekSize is how much of a value the first read takes: the metadata of
// almost every response.
const peekSize = 4096

// heads reads the first size(i) bytes of each entry's value (none when
// size is 0); a missing value reads empty.
func (f *Fleet) heads(ctx context.Context, zone string, vs []cache.Version, size func(i int) int64) ([][]byte, error) {
	cmds := make([]*redis.StringCmd, len(vs))
	pipe := f.rdb.Pipeline()
	for i, v := range vs {
		if n := size(i); n > 0 {
			cmds[i] = pipe.GetRange(ctx, f.keys.stored(zone, v.Key), 0, n-1)
		}
	}
	heads := make([][]byte, len(vs))
	if pipe.Len() == 0 {
		return heads, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return heads, err
	}
	for i, c := range cmds {
		if c != nil {
			heads[i], _ = c.Bytes()
		}
	}
	return heads, nil
}

// metaEnd is how many bytes of the value v begins with hold its
// metadata; 0 when v is not a value.
func metaEnd(v []byte) int64 {
	head := len(valueMagic) + 4
	if len(v) < head+1 || !bytes.Equal(v[:len(valueMagic)], []byte(valueMagic)) {
		return 0
	}
	n, used := binary.Uvarint(v[head:])
	if used <= 0 {
		return 0
	}
	return int64(head+used) + int64(n)
}

// peekMeta decodes the metadata at the start of a value, unverified (the
// checksum covers the body, not read): enough to compare versions.
func peekMeta(v []byte) (wireMeta, bool) {
	var w wireMeta
	end := metaEnd(v)
	if end == 0 || end > int64(len(v)) {
		return w, false
	}
	_, used := binary.Uvarint(v[len(valueMagic)+4:])
	return w, json.Unmarshal(v[len(valueMagic)+4+used:end], &w) == nil
}
