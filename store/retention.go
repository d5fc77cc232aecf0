package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Tombstone retentions. A deletion marker lives exactly its namespace's
// tombstone retention, as recorded with the namespace's table; never a
// guess, since a marker shorter-lived than the table's retention could
// expire before repair brings it to every region, and the deleted row would
// come back. The recorded retention can change (an operator's ALTER TABLE
// … WITH comment), so it is re-read (schema.Retentions, every
// schema.DefaultRetentionRefresh), from the first region that answers, home
// first, all within the call's timeout.

// retentionTimeoutKey carries the per-region timeout of one retention read
// from tableRetention to readRetention, through the shared cache.
type retentionTimeoutKey struct{}

// tableRetention returns the tombstone retention of namespace ns, for a
// write by op whose region requests are bounded by timeout. If no region
// can tell and it was never read, it fails, wrapping ErrUnavailable when
// every region failed for availability; a refresh that fails falls back to
// the value read last.
func (s *Store) tableRetention(ctx context.Context, op, ns string, timeout time.Duration) (time.Duration, error) {
	d, _, err := s.retentions.Get(context.WithValue(ctx, retentionTimeoutKey{}, timeout), ns)
	if err == nil || d > 0 {
		return d, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return 0, fmt.Errorf("store: %s %s: reading the namespace's tombstone retention: %w", op, ns, cerr)
	}
	if isAvailability(err) {
		return 0, fmt.Errorf("%w: %s %s: no region could tell the namespace's tombstone retention, which a deletion marker's TTL must equal (retry once a region is reachable): %w",
			ErrUnavailable, op, ns, err)
	}
	return 0, fmt.Errorf("store: %s %s: cannot read the namespace's tombstone retention (was the namespace created with CreateNamespace?): %w",
		op, ns, err)
}

// readRetention is the source of s.retentions: the retention of ns read
// from the first region that answers, home first, each through its
// breaker. When every region failed for availability the error wraps
// ErrUnavailable (isAvailability), and it names every region's failure.
func (s *Store) readRetention(ctx context.Context, ns string) (time.Duration, error) {
	timeout, _ := ctx.Value(retentionTimeoutKey{}).(time.Duration)
	if timeout <= 0 {
		timeout = s.cfg.Timeout
	}
	// One deadline for the whole read: a region that does not answer
	// leaves the next only what remains of the call's timeout, so a
	// Delete is not slowed by a timeout per region.
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var errs []error
	unavailable := true
	for _, r := range s.regions {
		d, err := s.readRegionRetention(ctx, r, ns, timeout)
		if err == nil {
			return d, nil
		}
		if parent.Err() != nil {
			return 0, parent.Err()
		}
		errs = append(errs, &RegionError{Region: r.name, Op: "read tombstone retention", Err: err})
		if !isAvailability(err) {
			unavailable = false
		}
		if ctx.Err() != nil {
			break // the call's time is up: the other regions are not asked
		}
	}
	if unavailable {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, errorList(errs))
	}
	return 0, errorList(errs)
}

// readRegionRetention reads a namespace's retention from one region,
// through its breaker.
func (s *Store) readRegionRetention(ctx context.Context, r *region, ns string, timeout time.Duration) (time.Duration, error) {
	ex, done, err := r.allow()
	if err != nil {
		return 0, err
	}
	rctx, cancel := s.requestCtx(ctx, false, timeout)
	defer cancel()
	d, err := ex.TableRetention(rctx, s.cfg.Keyspace, ns)
	err = s.abortedErr(classify(rctx, err))
	done(breakerOutcome(rctx, err))
	if err == nil && d <= 0 {
		err = fmt.Errorf("table %s.%s records a tombstone retention of %v, which is not positive", s.cfg.Keyspace, ns, d)
	}
	return d, err
}

// errorList is several errors reported on one line, separated by "; ".
// errors.Is and errors.As see each of them.
type errorList []error

func (l errorList) Error() string {
	var b strings.Builder
	for i, err := range l {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (l errorList) Unwrap() []error { return l }
