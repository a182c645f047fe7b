//go:build !race

package operations_test

// raceEnabled tells tests that the race detector slows this process down.
const raceEnabled = false
