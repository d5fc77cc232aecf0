package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/store/driver"
)

// Region requests: every request to a region goes through its circuit
// breaker, gets its own context, and has its error normalized (errors.go)
// and counted here.

// newBreaker makes the circuit breaker of one region: it opens after
// Breaker.ConsecutiveFailures availability failures in a row.
func (s *Store) newBreaker(name string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	b := s.cfg.Breaker
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: b.HalfOpenRequests,
		Timeout:     b.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.ConsecutiveFailures },
		OnStateChange: func(name string, from, to gobreaker.State) {
			s.metrics.setBreaker(name, to)
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "store: circuit breaker changed state",
				slog.String("region", name), slog.String("from", from.String()), slog.String("to", to.String()))
		},
		// Only availability failures count; everything else is the
		// region answering.
		IsSuccessful: func(err error) bool { return !isAvailability(err) },
		IsExcluded:   breakerExcludes,
	})
}

// available reports whether requests may go to the region now: it is
// connected and its breaker is not open.
func (r *region) available() bool {
	return r.exec.Load() != nil && (r.breaker == nil || r.breaker.State() != gobreaker.StateOpen)
}

// allow returns the region's executor if a request may go to it: the
// region is connected (ErrNotConnected otherwise) and its breaker lets it
// through (ErrCircuitOpen). The returned function reports the request's
// error to the breaker.
func (r *region) allow() (driver.Executor, func(error), error) {
	ex, err := r.executor()
	if err != nil {
		return nil, nil, err
	}
	if r.breaker == nil {
		return ex, func(error) {}, nil
	}
	done, err := r.breaker.Allow()
	if err != nil {
		return nil, nil, ErrCircuitOpen
	}
	return ex, done, nil
}

// callerBudgetKey marks the context of a region request whose deadline is
// the caller's budget rather than the region's: shorter than Config.Timeout
// (a per-call WithTimeout), or the caller's own context deadline coming
// first. A region that misses such a deadline has not failed (it may
// answer in 20 ms where the caller allows 5 ms), so the breaker does not
// count it (docs/design.md, "Consistency levels"); the write is still
// hinted, since the region may not have it.
type callerBudgetKey struct{}

// requestCtx makes the context of one region request: parent's values,
// parent's cancellation too unless detach (a request the caller stopped
// waiting for still completes), the timeout (none if timeout <= 0), and
// cancellation with cause errAborted when CloseContext gives up waiting.
func (s *Store) requestCtx(parent context.Context, detach bool, timeout time.Duration) (context.Context, context.CancelFunc) {
	if detach {
		parent = context.WithoutCancel(parent)
	}
	if timeout > 0 && timeout < s.cfg.Timeout {
		parent = context.WithValue(parent, callerBudgetKey{}, true)
	} else if d, ok := parent.Deadline(); ok && (timeout <= 0 || time.Until(d) < timeout) {
		parent = context.WithValue(parent, callerBudgetKey{}, true)
	}
	// One context per request (allocation matters on this path): the
	// timeout's, canceled too when CloseContext gives up (abortCtx).
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	stop := context.AfterFunc(s.abortCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// abortedErr marks err as errAborted when the request was canceled because
// CloseContext gave up waiting for it.
func (s *Store) abortedErr(err error) error {
	if err != nil && errors.Is(err, context.Canceled) && !errors.Is(err, errAborted) &&
		errors.Is(context.Cause(s.abortCtx), errAborted) {
		return fmt.Errorf("%w: %w", errAborted, err)
	}
	return err
}

// breakerOutcome is what a request's error tells the region's breaker: a
// timeout against the caller's budget (callerBudgetKey), or the caller's
// context ending, is the caller's and is reported as errCallerBudget,
// which the breaker ignores; anything else as it is.
func breakerOutcome(ctx context.Context, err error) error {
	if err == nil || !(errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return err
	}
	if b, _ := ctx.Value(callerBudgetKey{}).(bool); b {
		return fmt.Errorf("%w: %w", errCallerBudget, err)
	}
	return err
}

// writeRegion writes m to one region through its breaker, with its own
// timeout detached from the caller's context (a write the caller stopped
// waiting for still completes, or becomes a hint).
func (s *Store) writeRegion(parent context.Context, r *region, m *mutation, timeout time.Duration) error {
	ctx, cancel := s.requestCtx(parent, true, timeout)
	defer cancel()
	return s.writeRegionCtx(ctx, r, m.op, m.level.String(), m.request(s.cfg.Keyspace, s.cfg.Now()))
}

func (s *Store) writeRegionCtx(ctx context.Context, r *region, op, level string, w driver.WriteRequest) error {
	if len(w.Rows) == 0 {
		return nil // everything expired while waiting: nothing to write
	}
	ex, done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, op, errorKind(err)).Inc()
		return err
	}
	start := time.Now()
	err = s.abortedErr(classify(ctx, ex.Write(ctx, w)))
	done(breakerOutcome(ctx, err))
	s.metrics.observeRegion(r.name, op, level, time.Since(start), err)
	return err
}

func (s *Store) readRegion(ctx context.Context, r *region, level string, q driver.ReadRequest) (driver.Row, error) {
	ex, done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, opGet, errorKind(err)).Inc()
		return driver.Row{}, err
	}
	start := time.Now()
	row, err := ex.Read(ctx, q)
	err = s.abortedErr(classify(ctx, err))
	done(breakerOutcome(ctx, err))
	if isNotFound(err) {
		s.metrics.observeRegion(r.name, opGet, level, time.Since(start), nil)
	} else {
		s.metrics.observeRegion(r.name, opGet, level, time.Since(start), err)
	}
	return row, err
}

func (s *Store) scanRegion(ctx context.Context, r *region, level string, q driver.ScanRequest) ([]driver.Row, error) {
	ex, done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, opScan, errorKind(err)).Inc()
		return nil, err
	}
	start := time.Now()
	rows, err := ex.Scan(ctx, q)
	err = s.abortedErr(classify(ctx, err))
	done(breakerOutcome(ctx, err))
	s.metrics.observeRegion(r.name, opScan, level, time.Since(start), err)
	return rows, err
}

// classify normalizes a region's error. A cancellation the request's own
// context did not cause came from the driver (a connection closed under the
// request): it is an availability failure.
func classify(ctx context.Context, err error) error {
	err = normalize(err)
	if errors.Is(err, context.Canceled) && ctx.Err() == nil && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
