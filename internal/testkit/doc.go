// Package testkit is what the tests of every package share: the test
// backend (Backend), the one wait on a condition (Eventually), free ports
// of 127.0.0.1, and the real edgecache binary: built once per source tree
// (Binary) and run with a wait until it listens (Start).
package testkit
