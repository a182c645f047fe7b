// Package fleet lets several edgecache proxies share one cache through
// Redis (a single node or a Redis Cluster): a shared tier behind each
// proxy's memory and disk tiers, one fill lock for the whole fleet, and a
// durable log of purges and refreshes that every proxy applies. Redis is the
// only shared engine: the package adds no replication or membership
// protocol of its own.
//
// Like package cache, it does not know Caddy exists.
package fleet
