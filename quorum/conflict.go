package quorum

import "time"

// Writer ids: the lowest WriterIDBits bits of every timestamp a Tidemark
// Store issues are its writer id (store.WriterIDBits and store.MaxWriterID
// are these constants), so a version tells which writer made it.
const (
	// WriterIDBits is how many low bits of a timestamp hold the writer id.
	WriterIDBits = 6
	// MaxWriterID is the largest writer id (63).
	MaxWriterID = 1<<WriterIDBits - 1
)

// DefaultConflictWindow is the window [Conflicting] is used with when none
// is configured: one minute, the clock-skew bound of the writers
// (store.DefaultMaxClockDrift).
const DefaultConflictWindow = time.Minute

// WriterOf returns the writer id a timestamp carries: its lowest
// WriterIDBits bits. It means something only for timestamps a Tidemark
// Store issued; another writer's (cqlsh, a plain driver) carries whatever
// its low bits happen to be.
func WriterOf(ts int64) int { return int(ts & MaxWriterID) }

// Conflicting reports whether two versions of one row are a conflict that
// last-write-wins resolves by dropping one of them: they are different
// versions ([Compare] is not 0), written by different writers ([WriterOf]
// their timestamps differ), at most window apart (|a.Timestamp -
// b.Timestamp| <= window, in microseconds). Within the window the order of
// the two writes is decided by the writers' clocks, which may be skewed by
// that much: neither writer saw the other's write, and one of them is lost
// without a trace. A writer overwriting its own version is no conflict,
// nor are two writes further apart than the window. Deletion markers are
// versions like values: a delete that beat a concurrent put of another
// writer is a conflict. A negative window makes nothing a conflict.
//
// Conflicting is symmetric; which version wins is [Compare]'s business.
func Conflicting(a, b Version, window time.Duration) bool {
	if window < 0 || Compare(a, b) == 0 {
		return false
	}
	if WriterOf(a.Timestamp) == WriterOf(b.Timestamp) {
		return false
	}
	d := a.Timestamp - b.Timestamp
	if d < 0 {
		d = -d
	}
	return d <= window.Microseconds()
}
