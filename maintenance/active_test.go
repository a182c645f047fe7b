package maintenance

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestFlagsSince(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "maintenance.on")
	before := time.Now()
	w := newWatcher(flag, "", time.Hour, zap.NewNop())
	defer w.close()
	find := func() FlagState {
		t.Helper()
		for _, f := range Flags() {
			if f.FlagFile == flag {
				return f
			}
		}
		t.Fatalf("flag file %s not in %+v", flag, Flags())
		return FlagState{}
	}
	off := find()
	if off.On || off.Since.Before(before) {
		t.Fatalf("at start: %+v, want off since the start", off)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Seen at once, before the watcher's next poll, since the file's time.
	if early := find(); !early.On {
		t.Fatalf("flag file there, before the watcher's poll: %+v, want on", early)
	}
	w.check()
	on := find()
	if !on.On || on.Since.Before(off.Since) {
		t.Fatalf("after the flag file appeared: %+v, want on since then", on)
	}
	w.check()
	if again := find(); !again.Since.Equal(on.Since) {
		t.Errorf("since moved without a change: %v, then %v", on.Since, again.Since)
	}

	// A flag file there at the start: maintenance began at its time.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	flag2 := filepath.Join(dir, "other.on")
	if err := os.WriteFile(flag2, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(flag2, old, old); err != nil {
		t.Fatal(err)
	}
	w2 := newWatcher(flag2, "", time.Hour, zap.NewNop())
	defer w2.close()
	flag = flag2
	if f := find(); !f.On || !f.Since.Equal(old) {
		t.Errorf("flag file there at the start: %+v, want on since %v", f, old)
	}
}
