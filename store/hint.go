package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/hints/record"
)

// Hints of missed writes: a region's share of a write that it missed for
// availability goes to the hint sink, one record.Hint per row, with the
// write's own timestamp and absolute expiry (docs/design.md, "Hints").

// hint stores the rows of m that region r missed, one hint per row. It
// reports whether every hint is durable; failures are counted as left to
// repair. It never uses the caller's context: the hint must be attempted
// even when the caller has gone. Once CloseContext has given up waiting,
// hints share its drain deadline, and rows past it are counted without
// calling the sink.
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
			s.metrics.hintsFailed.WithLabelValues(r.name).Inc()
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
		if err := s.sink.Hint(ctx, h); err != nil {
			ok = false
			s.metrics.hintsFailed.WithLabelValues(r.name).Inc()
			if draining {
				s.drain.lost.Add(1)
			}
			if !errors.Is(err, ErrNoHintSink) {
				s.log.LogAttrs(ctx, slog.LevelError, "store: hint not stored; write left to anti-entropy repair",
					slog.String("target", r.name), slog.String("namespace", m.ns),
					slog.Int64("ts", row.Timestamp), slog.Any("cause", cause), slog.Any("error", err))
			}
			continue
		}
		s.metrics.hinted.WithLabelValues(r.name).Inc()
	}
	return ok
}

// hintAsync stores the hint of a background write in a goroutine of its own
// when the hint pool has room (count and bytes), so that the remote-write
// workers do not wait for the hint sink (with a region cut or its breaker
// open, every write to it becomes a hint); otherwise it stores it in the
// current goroutine.
func (s *Store) hintAsync(r *region, m *mutation, cause error) {
	if !s.hintPool.take(m.size) {
		s.hint(r, m, cause)
		return
	}
	s.hinters.Add(1)
	go func() {
		defer s.hinters.Done()
		defer s.hintPool.release(m.size)
		s.hint(r, m, cause)
	}()
}

// expiresAt is a row's absolute expiry as a hint carries it (the zero time
// for never).
func expiresAt(expires int64) time.Time {
	if expires == 0 {
		return time.Time{}
	}
	return time.Unix(expires, 0)
}
