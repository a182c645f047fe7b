//go:build !unix

package testkit

// lockFile does not lock: two test packages may then link the same binary
// at once, and the second rename wins, which is only wasted work.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
