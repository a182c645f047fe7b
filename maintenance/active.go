package maintenance

import (
	"slices"
	"sync"
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
