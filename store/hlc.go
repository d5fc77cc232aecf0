package store

import (
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

// Writer ids: the lowest WriterIDBits bits of every timestamp a Store
// issues carry its writer id, so that two Stores with different ids never
// issue the same timestamp (docs/design.md, "The clock").
const (
	// WriterIDBits is how many low bits of a timestamp hold the writer id
	// (quorum.WriterIDBits; quorum.WriterOf reads it back).
	WriterIDBits = quorum.WriterIDBits
	// MaxWriterID is the largest writer id (63). Ids run from 1 to
	// MaxWriterID; Config.WriterID 0 draws one at Open.
	MaxWriterID = quorum.MaxWriterID
)

// clock is the hybrid logical clock that gives every mutation its version
// (docs/design.md, "Versions"). Timestamps are microseconds since the Unix
// epoch whose lowest WriterIDBits bits are the writer id.
//
// Invariants, for every pair of calls t1 := Now() before t2 := Now() in one
// process (including from different goroutines):
//
//   - t2 > t1 (strictly increasing, so no two mutations share a version);
//   - t >= wall time in µs at the call (never behind the wall clock);
//   - t mod 2^WriterIDBits == id (so no other writer issues t).
//
// The resolution this leaves: one writer issues at most one timestamp per
// 2^WriterIDBits µs (15,625 a second) while keeping pace with the wall
// clock; a writer that issues more runs ahead of the wall clock by the
// excess (each PutBatch takes one timestamp for all its rows).
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
	id       int64
}

func newClock(now func() time.Time, maxDrift time.Duration, id int) *clock {
	if now == nil {
		now = time.Now
	}
	return &clock{now: now, maxDrift: maxDrift, id: int64(id) & MaxWriterID}
}

// Now returns a new timestamp: the least one that carries the writer id and
// is at least the wall clock in µs and more than the last timestamp handed
// out or observed.
func (c *clock) Now() int64 {
	wall := c.now().UnixMicro()
	for {
		last := c.last.Load()
		next := max(wall, last+1)
		t := next&^MaxWriterID | c.id
		if t < next {
			t += MaxWriterID + 1
		}
		if c.last.CompareAndSwap(last, t) {
			return t
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
