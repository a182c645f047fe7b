// Package cache is edgecache's HTTP cache engine: keys, entries, the storage
// policy (which responses are stored and for how long), fills (one backend
// request per missed key, the others waiting for it), the memory tier and
// purge. The disk tier is a package of its own (cache/disk), which this one
// uses and which knows nothing of it; so is the tag index both tiers keep
// (cache/tagindex). It knows nothing of Caddy; the
// caddymodule package adapts it to Caddy's handler chain.
//
// The package, one concern per file:
//
//	file              what                                                         used by
//	----              ----                                                         -------
//	zone.go           Zone: a named cache, its tiers, Get, Mark, purges, key pages  the handler, the admin API
//	entry.go          Entry: a stored response, its body in memory or in a file    everyone
//	entry_writer.go   EntryWriter: a response on its way in; Revalidate (a 304)     the fetch
//	fill.go           fills: one backend request per missed key, the others wait    the flow
//	stream.go         Stream: an entry's body readable while it is being written    the waiters of a fill
//	invalidate.go     Invalidate (RFC 9111 §4.4), one key without a zone purge      unsafe methods
//	tags.go           TagRules: the tags of a response (path, query, header rules)  the handler, import-nginx
//	purgetag.go       PurgeTag(s), Tagged: purges by tag through the tag indexes    the admin API, the fleet
//	softpurge.go      SoftPurge*: entries kept, marked expired                      the admin API, the fleet
//	variants.go       variants of one URL (RFC 9111 §4.1), stored apart             Get, purges
//	vary.go           the Vary names and a request's values for them                variants.go, the handler
//	memory.go         the memory tier: ristretto and a recent FIFO                  zone.go
//	index.go          the memory tier's key index (purge by prefix, key pages)      zone.go
//	policy.go         Policy.Decide: stored or not, and for how long                the fetch
//	cachecontrol.go   Cache-Control, parsed once per response                       policy.go
//	age.go            an entry's age, and the Age header                            the handler
//	key.go            cache keys (query parameters stripped)                        the handler
//	clock.go          the zone's clock (a fake one in tests)                        everyone
//	shared.go         Shared: the interface of a tier shared by several proxies     fleet/, zone.go
//	import.go         Import: entries from another cache (nginx's)                  internal/nginximport
//	stats.go          a zone's counters                                             the metrics
//	activity.go       Activity: a zone's last 5 minutes, fills under way, purges    the status page
//	misstop.go        the most missed keys, in bounded memory (space-saving)        activity.go
//	status.go         Status: a request's cache status (HIT, MISS, ...)             the flow
//
// The HTTP serving rules stay here though only the handler calls them:
// ranges.go (Range, If-Range), conditional.go (If-None-Match,
// If-Modified-Since, RFC 9110 §13), cachestatus.go (the Cache-Status
// header, RFC 9211) and httpdate.go (the strict HTTP-date). They are what a
// stored entry answers to a request, which is the cache's semantics, not
// Caddy's; they read the Entry and the dates the policy reads (policy.go
// and age.go parse HTTP-dates too); and the standards conformance suite
// (conformance_test.go) checks them with the policy, without a server.
package cache
