package record

import "time"

// Hint is one write that a region missed, with everything needed to apply it
// there later without the process that made it.
//
// The same Timestamp that the other regions received is applied, with
// USING TIMESTAMP, so replay is idempotent and an older hint never beats a
// newer write already in the region.
type Hint struct {
	// Target is the region that missed the write and must receive it.
	Target string
	// Origin is the home region of the process that made the write.
	Origin string
	// Namespace is the table the row belongs to.
	Namespace string
	// PK and CK are the row's partition and clustering keys.
	PK, CK []byte
	// Value is the row's value; nil for a deletion.
	Value []byte
	// Deleted marks a deletion marker (docs/design.md, "Deletes and
	// resurrection").
	Deleted bool
	// Timestamp is the write's version, microseconds since the epoch.
	Timestamp int64
	// ExpiresAt is when the row expires (from its TTL, or the tombstone
	// retention for a deletion marker); zero means it never expires.
	ExpiresAt time.Time
	// CreatedAt is when the hint was made.
	CreatedAt time.Time
}

// Birth is the moment a hint's age is measured from: the earlier of its
// CreatedAt and its write's Timestamp (the Timestamp alone when CreatedAt
// is zero). A deletion that superseded the write has a later timestamp, so
// its marker lives at least until Birth plus the tombstone retention: a
// hint older than the retention must never be applied.
func (h Hint) Birth() time.Time {
	ts := time.UnixMicro(h.Timestamp)
	if h.CreatedAt.IsZero() || ts.Before(h.CreatedAt) {
		return ts
	}
	return h.CreatedAt
}
