package repair

import (
	"context"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/internal/cluster"
)

// ErrTooFewRegions reports a repair configured with fewer than two regions:
// there is nothing to compare.
var ErrTooFewRegions = errors.New("repair needs at least 2 regions; add regions to the configuration")

// ErrUnknownNamespace reports a namespace whose table does not exist in a
// region. The error returned wraps it in a *RegionError naming the region.
var ErrUnknownNamespace = errors.New("unknown namespace")

// ErrIncomplete reports a run that ended with segments not repaired (a region
// failed for longer than the retries allowed). Progress is kept: running the
// repair again resumes with those segments.
var ErrIncomplete = errors.New("repair incomplete")

// ErrIncrementalUnsupported reports an incremental run (Options.Since)
// that cannot be made: fingerprints disabled, a region whose reader
// cannot aggregate by version, a Scope, a negative Since.
var ErrIncrementalUnsupported = errors.New("repair: incremental run not possible")

// ErrExpired reports a row that a RegionWriter did not write because its
// absolute expiry (Write.Expires) had passed: the row is absent everywhere,
// and writing it would only add cells that no reader sees. Repair counts
// such a row as skipped (Report.RowsSkipped).
var ErrExpired = errors.New("row expired before it was written")

// ErrLeaseLost reports that a segment's lease expired or was taken while the
// segment was being repaired; the segment is retried.
var ErrLeaseLost = errors.New("segment lease lost")

// RegionError is an error from one region, with what repair was doing there.
type RegionError struct {
	// Region is the region's name.
	Region string
	// Op is what failed: "describe", "scan", "read", "write" or "estimate".
	Op string
	// Err is the underlying error.
	Err error
}

// Error returns `region "name": op: err`.
func (e *RegionError) Error() string {
	return fmt.Sprintf("region %q: %s: %v", e.Region, e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *RegionError) Unwrap() error { return e.Err }

// Refused reports whether the region answered and refused the request —
// no permission, an invalid statement, a missing table, as
// cluster.Classify judges the driver's error — so that the same request
// cannot succeed later: a segment whose attempt failed so is not retried.
// Any other error — an availability failure (a timeout, an unavailable
// region, an error Classify does not know, such as MemRegion's faults) —
// leaves the segment to be retried, up to Options.MaxAttempts times.
func (e *RegionError) Refused() bool {
	// The context only tells the caller's cancellation from the driver's,
	// never a refusal: no context is needed to recognise one.
	return cluster.Classify(context.Background(), e.Err) == cluster.Refused
}

// refused reports whether err comes from a region that refused a request
// (a *RegionError whose Refused is true): retrying it cannot help.
func refused(err error) bool {
	var re *RegionError
	return errors.As(err, &re) && re.Refused()
}

// SegmentError is a segment that could not be repaired.
type SegmentError struct {
	// Segment is the token range.
	Segment TokenRange
	// Attempts is how many times this process tried it.
	Attempts int
	// Err is the last error.
	Err error
}

// Error describes the segment and the last error.
func (e *SegmentError) Error() string {
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	why := ""
	if refused(e.Err) {
		why = " (the region refused it: a retry cannot help)"
	}
	return fmt.Sprintf("segment %s failed after %d %s%s: %v", e.Segment, e.Attempts, attempts, why, e.Err)
}

// Unwrap returns the last error.
func (e *SegmentError) Unwrap() error { return e.Err }

// ErrSegmentTimeout reports a segment attempt abandoned because it made no
// progress for Options.SegmentTimeout; the segment is retried.
var ErrSegmentTimeout = errors.New("segment made no progress for too long")
