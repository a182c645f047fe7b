package fleet

import (
	"errors"
	"strings"

	"github.com/edgecache/edgecache/cache"
)

// The layout of the fleet's keys in Redis. Every key starts with the
// configured prefix. The keys of one entry (its value, its variants, their
// set and its fill lock) share a Redis Cluster hash slot: the braces hold
// the zone and cache key, and Redis hashes only what is between the first
// '{' and the next '}'. A cache key holding '}' ends the tag early, the
// same way in every key, so they still share a slot. An invalidation
// therefore reaches a key's variants through their set, in one script on
// one node, never by a pass over the keyspace.
//
//	{prefix}{zone:key}          the entry: metadata, body and checksum, one value
//	                            (for a response that varies: its index of Vary names)
//	{prefix}{zone:key}\x00var   a variant's value (var: the request's normalised values)
//	{prefix}{zone:key}\x01      the set of the key's variants (their var)
//	{prefix}lock:{zone:key}     the fill lock, expiring after lock_age
//	{prefix}filled:{zone:key}   the pub/sub channel a fill's end is announced on
//	{prefix}tag:{zone:tag}      the set of the cache keys of a zone's entries that carry
//	                            the tag, expiring with the last of them (purge by tag)
//	{prefix}events              the stream of purges and refreshes (one slot)
//	{prefix}{members}:node      a proxy's heartbeat; {members} one slot for all
type keys struct{ prefix string }

func (k keys) entry(zone, key string) string { return k.prefix + "{" + zone + ":" + key + "}" }
func (k keys) variant(zone, key, variant string) string {
	return k.entry(zone, key) + variantSep + variant
}
func (k keys) variants(zone, key string) string { return k.entry(zone, key) + variantsSuffix }
func (k keys) lock(zone, key string) string     { return k.prefix + "lock:{" + zone + ":" + key + "}" }
func (k keys) filled(zone, key string) string   { return k.prefix + "filled:{" + zone + ":" + key + "}" }
func (k keys) tag(zone, tag string) string      { return k.prefix + "tag:{" + zone + ":" + tag + "}" }
func (k keys) events() string                   { return k.prefix + "events" }
func (k keys) member(node string) string        { return k.prefix + "{members}:" + node }
func (k keys) members() string                  { return k.prefix + "{members}:*" }

// A variant's key is its entry's key, the separator and the variant; the
// set of a key's variants is its entry's key and variantsSuffix. No entry
// key ends in either (they end in '}'), and no cache key holds them.
const (
	variantSep     = "\x00"
	variantsSuffix = "\x01"
)

// stored is the Redis key of a key as the zone stores it locally: a
// variant's (cache.VariantKey) is under its entry's tag.
func (k keys) stored(zone, localKey string) string {
	if key, variant, ok := cache.SplitVariantKey(localKey); ok {
		return k.variant(zone, key, variant)
	}
	return k.entry(zone, localKey)
}

// cacheKeyOf is the cache key whose value (or variant's value) redisKey
// holds in zone: for a variant, its primary key, which its value's
// metadata names. A set of variants, or a key of another kind, is not ok.
func (k keys) cacheKeyOf(zone, redisKey string) (string, bool) {
	rest, ok := strings.CutPrefix(redisKey, k.prefix+"{"+zone+":")
	if !ok {
		return "", false
	}
	if i := strings.Index(rest, "}"+variantSep); i >= 0 {
		return rest[:i], true
	}
	return strings.CutSuffix(rest, "}")
}

// entryPattern is SCAN's MATCH for the entries of zone whose key starts
// with keyPrefix: the zone and the key prefix are escaped, as they may
// hold the pattern's special characters (a key ending in "*" or "?").
func (k keys) entryPattern(zone, keyPrefix string) string {
	return k.prefix + "{" + globEscape(zone) + ":" + globEscape(keyPrefix) + "*"
}

// tagPattern is SCAN's MATCH for the tag sets of zone.
func (k keys) tagPattern(zone string) string {
	return k.prefix + "tag:{" + globEscape(zone) + ":*"
}

// globEscape makes s match itself in a Redis glob pattern, byte by byte
// (a key may hold any byte).
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\^`) {
		return s
	}
	var b strings.Builder
	for i := range len(s) {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CheckPrefix refuses a prefix that would move the hash tag of the keys
// above (a brace) or that SCAN's MATCH would read as a pattern.
func CheckPrefix(p string) error {
	if strings.ContainsAny(p, "{}*?[]\\") {
		return errors.New("prefix must not contain { } * ? [ ] or \\")
	}
	return nil
}
