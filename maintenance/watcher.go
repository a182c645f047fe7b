package maintenance

import (
	"errors"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// builtinPage is served when the configured page cannot be read.
var builtinPage = []byte(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Maintenance</title></head>
<body>
<h1>Maintenance</h1>
<p>This service is down for maintenance. Please try again later.</p>
</body>
</html>
`)

// watcher polls the flag file and the page file. Requests only
// read active and body, both atomics, so they never touch the disk.
type watcher struct {
	flagFile string
	pageFile string
	logger   *zap.Logger

	active atomic.Bool
	since  atomic.Int64 // UnixNano of active's last change, or of the first check
	body   atomic.Pointer[[]byte]

	// pageStat identifies the page last read (or the last failure), so
	// that the page is re-read only when it changes. Owned by the polling
	// goroutine after the first check.
	pageStat pageVersion
	flagErr  string // last error checking the flag file, logged once

	stop chan struct{}
	done chan struct{}
}

type pageVersion struct {
	modTime time.Time
	size    int64
	err     string
}

// newWatcher checks both files once, so the handler starts in the
// right state, then polls them every interval until close.
func newWatcher(flagFile, pageFile string, interval time.Duration, logger *zap.Logger) *watcher {
	w := &watcher{
		flagFile: flagFile,
		pageFile: pageFile,
		logger:   logger,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	w.body.Store(&builtinPage)
	w.pageStat.err = "not read yet"
	w.check()
	w.register()
	go w.run(interval)
	return w
}

func (w *watcher) run(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.check()
		}
	}
}

func (w *watcher) close() {
	w.unregister()
	close(w.stop)
	<-w.done
}

// page returns the page to serve.
func (w *watcher) page() []byte { return *w.body.Load() }

func (w *watcher) check() {
	fi, err := os.Stat(w.flagFile)
	on := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Cannot tell (permissions?): keep the current state rather than
		// flap, and say why once.
		if err.Error() != w.flagErr {
			w.logger.Warn("cannot check maintenance flag file", zap.String("flag_file", w.flagFile), zap.Error(err))
		}
		w.flagErr = err.Error()
		on = w.active.Load()
	} else {
		w.flagErr = ""
	}
	first := w.since.Load() == 0
	was := w.active.Swap(on)
	if was != on || first {
		since := time.Now()
		if first && on {
			// A flag file there at the start says when maintenance began.
			since = fi.ModTime()
		}
		w.since.Store(since.UnixNano())
	}
	if was != on {
		if on {
			w.logger.Info("maintenance started", zap.String("flag_file", w.flagFile))
		} else {
			w.logger.Info("maintenance ended", zap.String("flag_file", w.flagFile))
		}
	}
	w.reloadPage()
}

// reloadPage reads the page file again if its size or modification time
// changed; on failure it serves the built-in page and logs once.
func (w *watcher) reloadPage() {
	if w.pageFile == "" {
		return
	}
	var v pageVersion
	info, err := os.Stat(w.pageFile)
	if err == nil {
		v.modTime, v.size = info.ModTime(), info.Size()
	} else {
		v.err = err.Error()
	}
	if v == w.pageStat {
		return
	}
	w.pageStat = v

	body, err := os.ReadFile(w.pageFile)
	if err != nil {
		w.body.Store(&builtinPage)
		w.logger.Warn("cannot read maintenance page; serving the built-in page",
			zap.String("page_file", w.pageFile), zap.Error(err))
		return
	}
	w.body.Store(&body)
}
