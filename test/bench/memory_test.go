package main

import (
	"strings"
	"testing"
)

func TestFillPathsInterleavesEveryKeyOnce(t *testing.T) {
	paths := fillPaths(4, 100)
	if len(paths) != 104 {
		t.Fatalf("%d paths, want 104", len(paths))
	}
	seen := map[string]bool{}
	var big []int // positions of the 1 MiB keys
	for i, p := range paths {
		if seen[p] {
			t.Fatalf("%s twice", p)
		}
		seen[p] = true
		if strings.HasPrefix(p, "/fill/1m/") {
			big = append(big, i)
		}
	}
	if len(big) != 4 {
		t.Fatalf("1 MiB keys at %v, want 4 of them", big)
	}
	// Spread through the fill, not bunched at one end.
	if big[len(big)-1]-big[0] < 50 {
		t.Errorf("1 MiB keys bunched at %v", big)
	}
}
