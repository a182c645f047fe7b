// Package disk is a zone's persistent tier: one file per entry in a folder
// laid out as nginx's proxy_cache_path (levels, MD5 names), an in-memory
// index of fixed-size records that holds no keys, and background work as
// nginx's: a loader that rebuilds the index at start, a manager that keeps
// max_size and inactive, and a watch for the operators' `rm -rf` flush.
// Every body is read through block checksums, so a damaged file is a miss
// or a cut response, never a wrong one.
//
// It owns an entry's stored form (Meta, the file format) and knows nothing
// of the zone above it (package cache), which uses a Store through a small
// interface: Get, Create (a Writer), Delete, Clear, Walk.
//
//	file             what
//	----             ----
//	store.go         Store: open, Get, Delete, Clear, Walk, Stats
//	meta.go          Meta: a stored response but its body
//	format.go        the entry file's header
//	blocks.go        the body's block checksums, BodyReader
//	reader.go        Entry and File: where a body is, and reading it checked
//	writer.go        Writer: an entry file being written, Commit
//	index.go         the index: 32 bytes per entry, no keys
//	loader.go        the index rebuild at start
//	manager.go       the cache manager (max_size, inactive)
//	flush.go         the flush marker, CheckDir, WriteFolderFile
//	lock_*.go        the folder lock against another process
//	atime_*.go       a file's access time, for the rebuilt index
package disk
