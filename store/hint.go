package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/store/driver"
)

// Hints of missed writes: a region's share of a write that it missed for
// availability goes to the hint sink, one record.Hint per row, with the
// write's own timestamp and absolute expiry (docs/design.md, "Hints").
//
// The hinted path never blocks a call whose level does not wait for the
// region: the hints of background writes wait in a bounded queue
// (Config.MaxPendingHints, Config.MaxPendingBytes) for a pool of
// Config.HintConcurrency goroutines that store them, and a write that finds
// the queue full — Kafka slow or hanging for long — is left to anti-entropy
// repair at once and counted, rather than waiting.

// Why a missed write was left to repair: the reason label of
// hints_failed_total.
const (
	lostSink     = "sink_error" // the sink said the hint is not stored
	lostPoolFull = "pool_full"  // the hint queue was full: not attempted
	lostNoSink   = "no_sink"    // no sink configured
	lostClosing  = "closing"    // CloseContext's drain deadline passed
	// lostUncertain is the debt reason of a hint the sink did not
	// acknowledge in time (hints_uncertain_total): it may have landed.
	lostUncertain = "uncertain"
)

// hint stores the rows of m that region r missed, one hint per row. It
// reports whether every hint is durable; the others are counted: as left
// to repair, or as uncertain when the sink's attempt timed out (it may
// still land). It never uses the caller's context: the hint must be
// attempted even when the caller has gone. Once CloseContext has given up
// waiting, hints share its drain deadline, and rows past it are counted
// without calling the sink.
func (s *Store) hint(r *region, m *mutation, cause error) bool {
	base := s.drain.current()
	draining := base != nil
	if !draining {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, s.cfg.HintTimeout)
	defer cancel()
	now := s.cfg.Now()
	ok := true
	for _, row := range m.rows {
		if base.Err() != nil {
			ok = false
			s.leftToRepair(r, m, []driver.Row{row}, lostClosing, cause, base.Err())
			s.drain.lost.Add(1)
			continue
		}
		h := record.Hint{
			Target:    r.name,
			Origin:    s.regions[0].name,
			Namespace: m.ns,
			PK:        m.pk,
			CK:        row.CK,
			Value:     row.Value,
			Deleted:   row.Deleted,
			Timestamp: row.Timestamp,
			ExpiresAt: expiresAt(row.Expires),
			CreatedAt: now,
		}
		err := s.sink.Hint(ctx, h)
		switch {
		case err == nil:
			s.metrics.hinted.WithLabelValues(r.name).Inc()
			m.wm.settle(r.idx, 1)
			continue
		case errors.Is(err, ErrNoHintSink):
			s.leftToRepair(r, m, []driver.Row{row}, lostNoSink, cause, err)
		case errors.Is(err, context.DeadlineExceeded):
			// The sink did not answer in time: the hint may still be
			// stored (a Kafka produce that timed out often lands). It is
			// repair debt all the same: repairing a key that the hint
			// also brings costs one read per region.
			s.metrics.hintsUncertain.WithLabelValues(r.name).Inc()
			s.debt.record(r, m, []driver.Row{row}, lostUncertain)
			s.logs.uncertain.Do(func() {
				s.log.LogAttrs(ctx, slog.LevelWarn, "store: hint not acknowledged in time; it may or may not be stored, anti-entropy repair covers it",
					slog.String("target", r.name), slog.String("namespace", m.ns), slog.Any("cause", cause), slog.Any("error", err))
			})
		default:
			s.leftToRepair(r, m, []driver.Row{row}, lostSink, cause, err)
		}
		ok = false
		if draining {
			s.drain.lost.Add(1)
		}
	}
	return ok
}

// leftToRepair counts rows of m that region r missed and that no hint will
// bring it, records them as repair debt, and logs (at most every few
// seconds) why.
func (s *Store) leftToRepair(r *region, m *mutation, rows []driver.Row, reason string, cause, err error) {
	s.metrics.hintsFailed.WithLabelValues(r.name, reason).Add(float64(len(rows)))
	s.debt.record(r, m, rows, reason)
	if reason == lostNoSink {
		return // the default sink logs each one itself
	}
	s.logs.lost.Do(func() {
		s.log.LogAttrs(context.Background(), slog.LevelError, "store: missed write not hinted; left to anti-entropy repair",
			slog.String("target", r.name), slog.String("namespace", m.ns), slog.String("reason", reason),
			slog.Int64("ts", m.rows[0].Timestamp), slog.Any("cause", cause), slog.Any("error", err))
	})
}

// hintJob is one background write's hint waiting for a hint worker.
type hintJob struct {
	r     *region
	m     *mutation
	cause error
}

// hintAsync queues the hint of a background write for the hint workers,
// so that neither the remote-write workers nor callers wait for the hint
// sink; when the queue is full (count or bytes) the write is left to repair
// at once (pool_full).
func (s *Store) hintAsync(r *region, m *mutation, cause error) {
	if s.hintQueued.take(m.size) {
		s.hintsPending.Add(1)
		select {
		case s.hintQueue <- hintJob{r: r, m: m, cause: cause}:
			return
		default:
			s.hintsPending.Add(-1)
			s.hintQueued.release(m.size)
		}
	}
	s.leftToRepair(r, m, m.rows, lostPoolFull, cause, errHintPoolFull)
}

// hintWorker stores queued hints until the queue is closed (Close, after
// the remote-write workers, which queue them, have stopped).
func (s *Store) hintWorker() {
	defer s.hinters.Done()
	for j := range s.hintQueue {
		s.hintQueued.release(j.m.size)
		s.hint(j.r, j.m, j.cause)
		s.hintsPending.Add(-1)
	}
}

// newLogSometimes rate-limits the Store's repeated warnings.
// logLimits rate-limits the logs that a burst of failures repeats, one
// limiter per message: a frequent warning (hints not acknowledged in time,
// heartbeats not sent) must not hide a rarer error (writes left to
// repair, debt not recorded) for the same interval.
type logLimits struct {
	lost, uncertain, debt, heartbeat *rate.Sometimes
}

func newLogLimits() logLimits {
	every := func() *rate.Sometimes { return &rate.Sometimes{First: 1, Interval: 10 * time.Second} }
	return logLimits{lost: every(), uncertain: every(), debt: every(), heartbeat: every()}
}

// expiresAt is a row's absolute expiry as a hint carries it (the zero time
// for never).
func expiresAt(expires int64) time.Time {
	if expires == 0 {
		return time.Time{}
	}
	return time.Unix(expires, 0)
}
