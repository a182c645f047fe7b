package disk

import (
	"crypto/md5"
	"unsafe"
)

// diskIndex is the disk tier's in-memory index: one fixed-size record per
// entry file, found by the MD5 of the key (which names the file), and a
// heap of records by last access for the cache manager. It holds no key:
// the key is in the entry file's header, and the few callers that need
// keys (prefix purge, key listing) read them from there. So an entry costs
// the same whatever its key's length, about what one costs in nginx's
// keys_zone (docs/performance.md has the figures).
//
// Records live in one slice and are named by their position in it, so the
// heap and the map hold 4-byte positions rather than pointers: the garbage
// collector has nothing to scan in the index however large it grows.
// A diskIndex is not safe for concurrent use: the Store's mu guards it.
type diskIndex struct {
	recs  []diskRecord
	free  []int32 // positions of removed records, reused first
	slots map[[md5.Size]byte]int32
	lru   []int32 // heap of positions, least recently used first
	bytes int64   // sum of the records' sizes
}

// diskRecord is the index record of one entry file: 32 bytes.
type diskRecord struct {
	hash   [md5.Size]byte
	access int64  // last access, Unix ns
	blocks uint32 // file size in 4 KiB blocks, rounded up
	pos    int32  // position in lru; -1 when free
}

// mapSlotBytes is what a map slot of slots costs, its share of the
// control bytes included (Go's maps store 8 slots per group and grow at
// seven eighths full).
const mapSlotBytes = md5.Size + 4 + 1

func newDiskIndex() *diskIndex {
	return &diskIndex{slots: make(map[[md5.Size]byte]int32)}
}

func (x *diskIndex) len() int { return len(x.slots) }

// get returns the record of h, or nil. The pointer is valid until the next
// insert or remove.
func (x *diskIndex) get(h [md5.Size]byte) *diskRecord {
	i, ok := x.slots[h]
	if !ok {
		return nil
	}
	return &x.recs[i]
}

// insert adds a record for h, replacing any.
func (x *diskIndex) insert(h [md5.Size]byte, size, access int64) {
	if r := x.get(h); r != nil {
		x.remove(r)
	}
	var i int32
	if n := len(x.free); n > 0 {
		i = x.free[n-1]
		x.free = x.free[:n-1]
	} else {
		x.recs = append(x.recs, diskRecord{})
		i = int32(len(x.recs) - 1)
	}
	blocks := uint32((size + blockSize - 1) / blockSize)
	x.recs[i] = diskRecord{hash: h, access: access, blocks: blocks, pos: int32(len(x.lru))}
	x.slots[h] = i
	x.lru = append(x.lru, i)
	x.up(len(x.lru) - 1)
	x.bytes += int64(blocks) * blockSize
}

// remove drops r (a record of this index).
func (x *diskIndex) remove(r *diskRecord) {
	i := x.slots[r.hash]
	delete(x.slots, r.hash)
	x.bytes -= r.size()
	p := int(r.pos)
	last := len(x.lru) - 1
	if p != last {
		x.swap(p, last)
	}
	x.lru = x.lru[:last]
	if p != last {
		if !x.down(p) {
			x.up(p)
		}
	}
	*r = diskRecord{pos: -1}
	x.free = append(x.free, i)
	x.shrink()
}

// touch sets r's last access.
func (x *diskIndex) touch(r *diskRecord, access int64) {
	old := r.access
	r.access = access
	if access >= old {
		x.down(int(r.pos))
	} else {
		x.up(int(r.pos))
	}
}

// oldest returns the least recently used record, or nil.
func (x *diskIndex) oldest() *diskRecord {
	if len(x.lru) == 0 {
		return nil
	}
	return &x.recs[x.lru[0]]
}

// hashes returns the hash of every record, so that a caller can visit them
// without holding the lock.
func (x *diskIndex) hashes() [][md5.Size]byte {
	hs := make([][md5.Size]byte, 0, len(x.slots))
	for h := range x.slots {
		hs = append(hs, h)
	}
	return hs
}

// shrink gives memory back once most records have gone (a purge by prefix
// of most of a zone), so a zone that shrank does not keep its peak's size.
func (x *diskIndex) shrink() {
	if len(x.recs) < 4096 || len(x.free) < len(x.recs)*3/4 {
		return
	}
	fresh := newDiskIndex()
	fresh.recs = make([]diskRecord, 0, len(x.slots)*2)
	fresh.lru = make([]int32, 0, len(x.slots)*2)
	for _, i := range x.slots {
		r := &x.recs[i]
		fresh.insert(r.hash, r.size(), r.access)
	}
	*x = *fresh
}

// sizeBytes estimates the heap the index takes: what the memory limit
// counts for the disk tier.
func (x *diskIndex) sizeBytes() int64 {
	n := int64(cap(x.recs))*int64(unsafe.Sizeof(diskRecord{})) +
		int64(cap(x.lru)+cap(x.free))*4
	// A map grows by doubling and is 7/8 full at most: count it at the
	// average of its fill range.
	n += int64(len(x.slots)) * mapSlotBytes * 8 / 7 * 3 / 2
	return n
}

func (r *diskRecord) size() int64 { return int64(r.blocks) * blockSize }

// The heap of positions by last access, as container/heap's but without
// its interface calls.

func (x *diskIndex) less(a, b int) bool {
	ra, rb := &x.recs[x.lru[a]], &x.recs[x.lru[b]]
	return ra.access < rb.access
}

func (x *diskIndex) swap(a, b int) {
	x.lru[a], x.lru[b] = x.lru[b], x.lru[a]
	x.recs[x.lru[a]].pos = int32(a)
	x.recs[x.lru[b]].pos = int32(b)
}

func (x *diskIndex) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !x.less(j, i) {
			break
		}
		x.swap(i, j)
		j = i
	}
}

// down moves the element at i down and reports whether it moved.
func (x *diskIndex) down(i0 int) bool {
	i, n := i0, len(x.lru)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && x.less(r, l) {
			j = r
		}
		if !x.less(j, i) {
			break
		}
		x.swap(i, j)
		i = j
	}
	return i > i0
}
