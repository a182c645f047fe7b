package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// untilInterrupted is a context that the first SIGINT or SIGTERM ends, so
// that a long command (warm, import-nginx) stops cleanly and can resume; a
// second signal, with the default behaviour restored, ends the process at
// once.
func untilInterrupted() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	return ctx, stop
}
