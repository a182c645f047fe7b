package cache

import (
	"sync/atomic"
	"time"
)

// Clock is a zone's time, read by the zone and by the handler serving from
// it: the system clock plus an offset that tests move forward instead of
// sleeping. Time keeps flowing under an offset, so durations measured with
// real timers (lock_timeout, background_timeout) still agree with it. The
// zero Clock is the system clock.
type Clock struct{ offset atomic.Int64 }

// Now is the clock's current time: one atomic load on top of time.Now.
func (c *Clock) Now() time.Time {
	if off := c.offset.Load(); off != 0 {
		return time.Now().Add(time.Duration(off))
	}
	return time.Now()
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
