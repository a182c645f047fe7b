package main

import "testing"

func TestProcs(t *testing.T) {
	for _, tt := range []struct {
		env           string
		current, cpus int
		want          int
		why           string
	}{
		{"", 2, 2, 3, "one processor to spare"},
		{"", 16, 16, 17, "one, whatever the CPUs"},
		{"2", 2, 2, 2, "the operator's GOMAXPROCS"},
		{"", 2, 8, 2, "a CPU quota set fewer than the CPUs"},
	} {
		if got := procs(tt.env, tt.current, tt.cpus); got != tt.want {
			t.Errorf("%s: procs(%q, %d, %d) = %d, want %d", tt.why, tt.env, tt.current, tt.cpus, got, tt.want)
		}
	}
}
