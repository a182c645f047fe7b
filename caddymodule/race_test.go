//go:build race

package caddymodule

// raceEnabled: the race detector is on. sync.Pool then drops a quarter of
// what is put back, at random, so pooled objects show as allocations.
const raceEnabled = true
