package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Sentinel errors. Test for them with errors.Is; the errors a Store returns
// wrap them and add which namespace, key, region or level was involved.
var (
	// ErrNotFound is returned by Get when no live version of the row exists:
	// it was never written, it expired, or its newest version is a deletion.
	// It is driver.ErrNotFound.
	ErrNotFound = driver.ErrNotFound

	// ErrUnavailable means a region could not be reached or did not have
	// enough live replicas (including a region whose circuit breaker is
	// open). It is an availability failure: retrying later, or at a weaker
	// level, may succeed. It is driver.ErrUnavailable.
	ErrUnavailable = driver.ErrUnavailable

	// ErrTimeout means a region did not answer within the call's timeout. A
	// write that timed out may still have been applied; a retry is safe (last
	// write wins). It is driver.ErrTimeout.
	ErrTimeout = driver.ErrTimeout

	// ErrCircuitOpen means a region was skipped because its circuit breaker
	// is open after repeated availability failures. It wraps ErrUnavailable.
	ErrCircuitOpen = fmt.Errorf("%w: circuit breaker open (the region failed repeatedly; it is probed again after Breaker.OpenTimeout)", ErrUnavailable)

	// ErrNotConnected means a region was skipped because the Store has not
	// connected to it yet: it was unreachable when Open ran, and is being
	// connected in the background (Store.Health). It wraps ErrUnavailable.
	ErrNotConnected = fmt.Errorf("%w: not connected yet", ErrUnavailable)

	// ErrValueTooLarge means a value is larger than Config.MaxValueSize.
	ErrValueTooLarge = errors.New("store: value too large")

	// ErrBatchTooLarge means the entries of one PutBatch together are larger
	// than Config.MaxBatchBytes: split the batch.
	ErrBatchTooLarge = errors.New("store: batch too large")

	// ErrInvalidBatch means a batch is empty or names one clustering key twice.
	ErrInvalidBatch = errors.New("store: invalid batch")

	// ErrKeyTooLarge means a partition or clustering key is longer than
	// Cassandra allows (schema.MaxPartitionKey, schema.MaxClusteringKey).
	ErrKeyTooLarge = errors.New("store: key too large")

	// ErrEmptyKey means a partition or clustering key is empty. Cassandra
	// rejects empty partition keys; Tidemark also requires a clustering key.
	ErrEmptyKey = errors.New("store: empty key")

	// ErrInvalidNamespace means a namespace name is not a safe CQL
	// identifier. It wraps schema.ErrInvalidName.
	ErrInvalidNamespace = fmt.Errorf("store: invalid namespace (%w)", schema.ErrInvalidName)

	// ErrInvalidTTL means a TTL was given explicitly but is zero, negative,
	// longer than Cassandra's maximum (20 years, less the second that
	// rounding the expiry up can add), or given to Delete.
	ErrInvalidTTL = errors.New("store: invalid TTL")

	// ErrInvalidLevel means a consistency level is not valid for the call:
	// not one of the quorum constants, or Any on a read.
	ErrInvalidLevel = errors.New("store: invalid consistency level")

	// ErrInvalidConfig means Open was given an unusable Config.
	ErrInvalidConfig = errors.New("store: invalid config")

	// ErrInvalidPageToken means a page token was not made by Scan for this
	// namespace and partition, or was corrupted.
	ErrInvalidPageToken = errors.New("store: invalid page token")

	// ErrInvalidOption means a per-call option has an unusable value, such as
	// a non-positive timeout or page size.
	ErrInvalidOption = errors.New("store: invalid option")

	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("store: closed")

	// ErrStillClosing is matched by the error of Close and CloseContext
	// when every call, background write and hint is done but some region's
	// driver connections had not finished closing within the bound (the
	// driver can take tens of seconds after a region was unreachable). They
	// go on closing in the background; nothing is lost. The error is a
	// *StillClosingError naming the regions; a caller that only cares about
	// data can ignore it.
	ErrStillClosing = wait.ErrStillClosing

	// ErrNoHintSink is returned by the default hint sink, used when
	// Config.HintSink is nil: the hint was not stored anywhere, the write is
	// left to anti-entropy repair and counted in the hints-failed metric.
	ErrNoHintSink = errors.New("store: no hint sink configured; missed write left to anti-entropy repair")

	// errCallerBudget marks, for the breaker only, a request that ran out
	// of the caller's budget (a per-call timeout shorter than
	// Config.Timeout, or the caller's context deadline): not the region's
	// failure.
	errCallerBudget = errors.New("store: the caller's deadline, not the region's")

	// errHintPoolFull is why a background write's hint was not attempted:
	// every hint goroutine was busy (Config.HintConcurrency, MaxPendingBytes).
	errHintPoolFull = errors.New("store: hint pool full (Config.HintConcurrency/MaxPendingBytes)")

	// errQueueFull is the cause recorded in a hint when a background write
	// was not attempted because the background queue was full.
	errQueueFull = fmt.Errorf("%w: background write queue full (Config.MaxPendingWrites/MaxPendingBytes)", ErrUnavailable)

	// errAborted is the cause of a region request that CloseContext
	// abandoned when its context ended: the request was canceled (a write
	// may still have been applied) or, for a queued background write, never
	// started. Such writes are hinted like availability failures.
	errAborted = fmt.Errorf("%w: the store was closing and stopped waiting for the region (Store.CloseContext)", ErrClosed)
)

// StillClosingError names what a close stopped waiting for (see
// ErrStillClosing). It is the one bounded-close error of every Tidemark
// package.
type StillClosingError = wait.StillClosingError

// RegionError is one region's failure within a call. Errors returned by
// writes and reads wrap one RegionError per failed region; get them with
// errors.As or from ConsistencyError.Failed.
type RegionError struct {
	// Region is the region's name.
	Region string
	// Op is the operation: "put", "delete", "batch", "get" or "scan".
	Op string
	// Hinted reports, for a write, whether the region's hint is durable in
	// the hint sink (the region will get the write when the hint is
	// replayed). Only availability failures (Err wraps ErrUnavailable or
	// ErrTimeout) are hinted, and when their hint could not be stored the
	// write is left to anti-entropy repair. Any other failure — the region
	// rejected the write, for example because the namespace's table does
	// not exist there — is never hinted: a replay would fail the same way.
	Hinted bool
	// Pending reports that the region had not answered when the call ended:
	// either the call was already decided by the other regions (it could
	// no longer succeed), or the caller's context ended. Its request goes
	// on in the background; a write that then fails for availability still
	// gets a hint.
	Pending bool
	// Err is the cause. It wraps ErrUnavailable, ErrTimeout or
	// ErrCircuitOpen for availability failures.
	Err error
}

// Error describes the region, the operation, the cause and the hint.
func (e *RegionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "region %q: %s: %v", e.Region, e.Op, e.Err)
	if isWriteOp(e.Op) && !e.Pending {
		switch {
		case e.Hinted:
			b.WriteString(" (hint stored)")
		case hintable(e.Err):
			b.WriteString(" (no hint stored: left to repair)")
		default:
			b.WriteString(" (not hinted: the region rejected the write; fix the cause and retry)")
		}
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *RegionError) Unwrap() error { return e.Err }

// ConsistencyError is returned when a call cannot meet its consistency
// level: not enough regions acked (or answered) in time. It unwraps to one
// *RegionError per failed region, so errors.Is(err, ErrUnavailable) and
// errors.Is(err, ErrTimeout) tell what kind of failure it was, and to the
// caller's context error when the context ended first.
//
// A write that fails with a ConsistencyError may have been applied in some
// regions; regions that failed for availability were given hints, regions
// that rejected the write were not. Retrying is safe: the retry gets a newer
// timestamp and last write wins.
type ConsistencyError struct {
	// Op is the operation: "put", "delete", "batch", "get" or "scan".
	Op string
	// Level is the level the call asked for.
	Level quorum.Level
	// Required is how many regions had to ack.
	Required int
	// Acked is how many did.
	Acked int
	// Failed lists every region the call waited on that did not ack: first
	// the regions that failed, in region order (home first), then, with
	// Pending set, the regions that had not answered when the call was
	// decided or its context ended, in region order. errors.As on the
	// ConsistencyError therefore finds a real failure first when there is
	// one.
	Failed []*RegionError
	// Detail is the plan's account of every region's outcome
	// (quorum.Plan.Describe), for logs.
	Detail string
	// ctxErr is the caller's context error, when it ended the wait.
	ctxErr error
}

// Error says which level failed, how many regions acked and why each failed
// region failed.
func (e *ConsistencyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: %s at %s failed: %d region(s) acked, %d required",
		e.Op, e.Level, e.Acked, e.Required)
	if e.ctxErr != nil {
		fmt.Fprintf(&b, " before the context ended (%v)", e.ctxErr)
	}
	for i, r := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	if isWriteOp(e.Op) {
		b.WriteString("; the write may be applied in some regions, a retry is safe (last write wins)")
	}
	return b.String()
}

// Unwrap returns the region errors and, if the context ended the wait, the
// context's error (and ErrTimeout for a deadline).
func (e *ConsistencyError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed)+2)
	for _, r := range e.Failed {
		errs = append(errs, r)
	}
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
		if errors.Is(e.ctxErr, context.DeadlineExceeded) {
			errs = append(errs, ErrTimeout)
		}
	}
	return errs
}

// Regions returns the names of the regions in Failed, in its order: the
// failed regions, then the pending ones.
func (e *ConsistencyError) Regions() []string {
	out := make([]string, len(e.Failed))
	for i, r := range e.Failed {
		out[i] = r.Region
	}
	return out
}

func isWriteOp(op string) bool {
	return op == opPut || op == opDelete || op == opBatch
}

// Operation names, used in errors and metric labels.
const (
	opPut    = "put"
	opDelete = "delete"
	opBatch  = "batch"
	opGet    = "get"
	opScan   = "scan"
	opRepair = "read_repair"
)

// isAvailability reports whether err is the kind of failure that a circuit
// breaker counts and that makes a region's write a hint: unreachable,
// overloaded, timed out. Validation errors, ErrNotFound and the caller's
// cancellation are not.
func isAvailability(err error) bool {
	return err != nil && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded))
}

// hintable reports whether a region write that failed with err gets a hint:
// availability failures, and writes abandoned by CloseContext. Any other
// error means the region answered and refused the write; a hint would be
// refused the same way when replayed (and dead-lettered), so it must not
// stand in for the write.
func hintable(err error) bool {
	return isAvailability(err) || errors.Is(err, errAborted)
}

// breakerExcludes reports whether a breaker ignores err: the request ran
// out of the caller's budget (breakerOutcome), or was canceled by its own
// context (the caller went away, or the Store was closing), which says
// nothing about the region. A cancellation that
// classify turned into ErrUnavailable (a connection closed under the
// request) is a failure of the region and is not excluded.
func breakerExcludes(err error) bool {
	return errors.Is(err, errCallerBudget) || (errors.Is(err, context.Canceled) && !errors.Is(err, ErrUnavailable))
}

// errorKind is the metric label for an error.
func errorKind(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, ErrCircuitOpen):
		return "circuit_open"
	case errors.Is(err, ErrNotConnected):
		return "not_connected"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

// normalize makes a region's error carry the store's sentinels: a deadline
// from a region's own timeout becomes ErrTimeout.
func normalize(err error) error {
	if err == nil || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
