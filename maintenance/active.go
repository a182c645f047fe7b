package maintenance

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"
)

// watching holds the watchers of every provisioned maintenance handler of
// the process, so that a health check (edge_cache_health) can tell a load
// balancer that this proxy is in maintenance without being configured
// with the flag files a second time.
var watching struct {
	sync.Mutex
	set map[*watcher]struct{}
}

func (w *watcher) register() {
	watching.Lock()
	defer watching.Unlock()
	if watching.set == nil {
		watching.set = make(map[*watcher]struct{})
	}
	watching.set[w] = struct{}{}
}

func (w *watcher) unregister() {
	watching.Lock()
	defer watching.Unlock()
	delete(watching.set, w)
}

// ActiveFlags lists, sorted and without repeats, the flag files of the
// maintenance handlers of the process that are in maintenance now: empty
// when none is. During a config reload the old config's handlers count
// until they are cleaned up.
func ActiveFlags() []string {
	watching.Lock()
	defer watching.Unlock()
	var flags []string
	for w := range watching.set {
		if w.active.Load() {
			flags = append(flags, w.flagFile)
		}
	}
	slices.Sort(flags)
	return slices.Compact(flags)
}

// FlagState is a flag file of a maintenance handler of the process.
type FlagState struct {
	FlagFile string
	On       bool
	// Since is when On last changed, or when the handler started (for a
	// flag file there at the start, the file's modification time).
	Since time.Time
}

// Flags lists the flag files of the maintenance handlers of the process,
// sorted, each once (the handler that changed last speaks for a file
// several handlers watch), as they are now.
func Flags() []FlagState {
	watching.Lock()
	var states []FlagState
	for w := range watching.set {
		states = append(states, FlagState{FlagFile: w.flagFile, On: w.active.Load(), Since: time.Unix(0, w.since.Load())})
	}
	watching.Unlock()
	slices.SortFunc(states, func(a, b FlagState) int {
		return cmp.Or(cmp.Compare(a.FlagFile, b.FlagFile), b.Since.Compare(a.Since))
	})
	states = slices.CompactFunc(states, func(a, b FlagState) bool { return a.FlagFile == b.FlagFile })
	// A look at each file now: the status page shows a change at once,
	// not at the watchers' next poll (the handlers follow within a second).
	for i := range states {
		fi, err := os.Stat(states[i].FlagFile)
		switch on := err == nil; {
		case on && !states[i].On:
			states[i].On, states[i].Since = true, fi.ModTime()
		case !on && states[i].On && errors.Is(err, fs.ErrNotExist):
			states[i].On, states[i].Since = false, time.Now()
		}
	}
	return states
}
