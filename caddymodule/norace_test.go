//go:build !race

package caddymodule

// raceEnabled: the race detector is on (see race_test.go).
const raceEnabled = false
