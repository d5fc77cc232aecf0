package store

import (
	"sync/atomic"
	"time"
)

// clock is the hybrid logical clock that gives every mutation its version
// (docs/design.md, "Versions"). Timestamps are microseconds since the Unix epoch.
//
// Invariants, for every pair of calls t1 := Now() before t2 := Now() in one
// process (including from different goroutines):
//
//   - t2 > t1 (strictly increasing, so no two mutations share a version);
//   - t >= wall time in µs at the call (never behind the wall clock).
//
// observe lets the clock move past a version the process has read from
// another writer, so that a read-modify-write from this process always gets
// a newer version than what it read, even if the other writer's clock runs
// ahead. A version further ahead of the wall clock than maxDrift is ignored,
// so one bad clock cannot drag every writer into the future.
type clock struct {
	last     atomic.Int64
	now      func() time.Time
	maxDrift time.Duration
}

func newClock(now func() time.Time, maxDrift time.Duration) *clock {
	if now == nil {
		now = time.Now
	}
	return &clock{now: now, maxDrift: maxDrift}
}

// Now returns a new timestamp: the wall clock in µs, or one more than the
// last timestamp handed out or observed, whichever is greater.
func (c *clock) Now() int64 {
	wall := c.now().UnixMicro()
	for {
		last := c.last.Load()
		next := wall
		if next <= last {
			next = last + 1
		}
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// observe moves the clock to at least ts, unless ts is more than maxDrift
// ahead of the wall clock. It reports whether ts was accepted.
func (c *clock) observe(ts int64) bool {
	if ts > c.now().Add(c.maxDrift).UnixMicro() {
		return false
	}
	for {
		last := c.last.Load()
		if ts <= last || c.last.CompareAndSwap(last, ts) {
			return true
		}
	}
}
