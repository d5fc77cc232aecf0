package hints

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/wait"
)

// Applying a batch of hints: rounds of concurrent applies, telling a region
// that is down (pause, without limit) from a hint that fails on its own
// (its attempts counted, then dead-lettered).

// item is one record of a batch on its way through process.
type item struct {
	msg      kafka.Message
	hint     record.Hint
	reason   string // non-empty: dead-letter with this reason
	err      error  // why it was dead-lettered, or its last failure
	attempts int    // failures while the region was reachable
}

// process applies or dead-letters every record of batch. It returns an
// error only when ctx is done before the batch is finished.
//
// Heartbeats are not hints: they are neither applied nor dead-lettered.
// A valid one becomes a Mark, and the batch's marks are passed to
// ReplayerConfig.Marks once the whole batch is settled — so every record
// before a mark in its partition has been applied or dead-lettered, in
// this batch or an earlier one. Nothing is recorded if ctx is done first.
func (r *Replayer) process(ctx context.Context, batch []kafka.Message) error {
	items := make([]item, len(batch))
	var apply []*item
	var marks []Mark
	var oldest int64
	for i, m := range batch {
		it := &items[i]
		it.msg = m
		if record.IsHeartbeat(m.Value) {
			if mk, ok := r.heartbeat(m); ok {
				marks = append(marks, mk)
			}
			continue
		}
		h, err := record.Decode(m.Value, r.cfg.Keyring)
		switch {
		case errors.Is(err, record.ErrUnauthenticated):
			it.reason, it.err = ReasonUnauthenticated, err
		case err != nil:
			it.reason, it.err = ReasonCorrupt, err
		case h.Target != r.cfg.Region:
			it.reason, it.err = ReasonMisrouted, fmt.Errorf("hint is for region %q, this replayer applies region %q", h.Target, r.cfg.Region)
		default:
			it.hint = h
			if err := r.expired(h); err != nil {
				it.reason, it.err = ReasonExpired, err
				break
			}
			apply = append(apply, it)
			if us := h.Birth().UnixMicro(); us > 0 && (oldest == 0 || us < oldest) {
				oldest = us
			}
		}
	}
	r.oldest.Store(oldest)
	defer r.oldest.Store(0)

	if err := r.applyAll(ctx, apply); err != nil {
		return err
	}
	var dead []*item
	for i := range items {
		if items[i].reason != "" {
			dead = append(dead, &items[i])
		}
	}
	if err := r.deadLetter(ctx, dead); err != nil {
		return err
	}
	r.recordMarks(ctx, marks)
	return nil
}

// expired reports why h must not be applied any more, or nil.
func (r *Replayer) expired(h record.Hint) error {
	now := r.now()
	if !h.ExpiresAt.IsZero() && !now.Before(h.ExpiresAt) {
		return fmt.Errorf("%w: expired at %s", ErrExpired, h.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	if birth := h.Birth(); now.Sub(birth) > r.cfg.Retention {
		return fmt.Errorf("%w: written %s, more than the retention %v ago; repair must have brought the region up to date", ErrExpired, birth.UTC().Format(time.RFC3339), r.cfg.Retention)
	}
	return nil
}

// applyAll applies items with bounded concurrency, round after round, until
// every item is applied or has a dead-letter reason.
//
// After a round with failures it tells a region that is down from hints
// that fail on their own. A failure counts against its hint (item.attempts)
// only when the region is demonstrably reachable for it (see reachable).
// When a round made progress — a hint was applied, or a failure counted —
// the region is up: hints that failed MaxHintAttempts counted times are
// given up (ReasonRejected) and the rest retried after a back-off. When
// nothing progressed, the region is down: replay pauses (waitForRegion) as
// long as it takes, and nothing counts against the hints.
func (r *Replayer) applyAll(ctx context.Context, items []*item) error {
	pending := items
	retry := r.backoff()
	for len(pending) > 0 {
		failed, progress := r.applyRound(ctx, pending)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(failed) == 0 {
			r.resume()
			return nil
		}
		if !progress {
			var err error
			if pending, err = r.waitForRegion(ctx, failed); err != nil {
				return err
			}
			retry.Reset()
			continue
		}
		r.resume()
		pending = r.giveUp(failed)
		if len(pending) == 0 {
			return nil
		}
		if !retry.Sleep(ctx) {
			return ctx.Err()
		}
	}
	return nil
}

// resume clears the paused state.
func (r *Replayer) resume() {
	if r.paused.Swap(false) {
		r.log.Info("hints: region reachable again, resuming replay")
	}
}

// giveUp gives a dead-letter reason to the failed items that used up their
// attempts and returns the others.
func (r *Replayer) giveUp(failed []*item) []*item {
	limit := r.cfg.MaxHintAttempts
	var keep []*item
	for _, it := range failed {
		if limit > 0 && it.attempts >= limit {
			it.reason = ReasonRejected
			it.err = fmt.Errorf("hints: applying the hint failed %d times while the region was reachable (MaxHintAttempts); last error: %w", it.attempts, it.err)
			continue
		}
		keep = append(keep, it)
	}
	return keep
}

// reachable reports whether the region answers, as far as it can tell
// without it: the Applier's Probe of it if the Applier has one; otherwise
// a fresh apply of the witness — the hint this replayer applied last,
// applied again (replay is idempotent, and an older version never
// overwrites a newer one). Without either it cannot tell and says no.
func (r *Replayer) reachable(ctx context.Context, it *item) bool {
	if p, ok := r.cfg.Applier.(Prober); ok {
		return p.Probe(ctx, it.hint) == nil
	}
	w := r.witness.Load()
	if w == nil {
		return false
	}
	if r.expired(*w) != nil {
		r.witness.CompareAndSwap(w, nil)
		return false
	}
	err := r.cfg.Applier.Apply(ctx, *w)
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrExpired) {
		r.witness.CompareAndSwap(w, nil) // useless as a witness now
	}
	return err == nil
}

// waitForRegion pauses replay while the region is unreachable. It backs
// off and checks whether the region answers: with reachable, or, when that
// cannot tell (an Applier without Probe that has applied nothing yet), by
// applying the failed hints alone, one at a time in turn, so that one bad
// hint cannot hold the check. It returns the items still to apply once the
// region answers; items that expire meanwhile are settled and dropped.
func (r *Replayer) waitForRegion(ctx context.Context, failed []*item) ([]*item, error) {
	if !r.paused.Swap(true) {
		r.log.Warn("hints: region unreachable, pausing replay", "failed", len(failed), "err", failed[0].err)
	}
	_, canProbe := r.cfg.Applier.(Prober)
	b := r.backoff()
	for next := 0; ; {
		if !b.Sleep(ctx) {
			return nil, ctx.Err()
		}
		// Hints that expired during the pause are settled without the
		// region.
		live := failed[:0]
		for _, it := range failed {
			if err := r.expired(it.hint); err != nil {
				it.reason, it.err = ReasonExpired, err
				continue
			}
			live = append(live, it)
		}
		failed = live
		if len(failed) == 0 {
			return nil, nil
		}
		it := failed[next%len(failed)]
		next++
		if canProbe || r.witness.Load() != nil {
			if r.reachable(ctx, it) {
				return failed, nil
			}
			continue
		}
		if r.applyOne(ctx, it) != outcomeFailed {
			return slices.DeleteFunc(failed, func(x *item) bool { return x == it }), nil
		}
	}
}

// outcome is the result of one attempt at a hint.
type outcome int

const (
	outcomeApplied outcome = iota // written to the region
	outcomeSettled                // given a dead-letter reason
	outcomeFailed                 // failed; may succeed later
)

// applyRound applies items concurrently. It returns those that failed and
// may succeed later, and whether the round made progress: a hint was
// applied, or a failure counted against its hint. A failure counts
// (item.attempts) when the region is demonstrably reachable for that hint:
// with a Prober, its Probe of the hint succeeds; without, another hint of
// the round was applied, or else the witness applies again (reachable).
func (r *Replayer) applyRound(ctx context.Context, items []*item) (failed []*item, progress bool) {
	_, canProbe := r.cfg.Applier.(Prober)
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		applied int
		counted int
	)
	sem := make(chan struct{}, r.cfg.Concurrency)
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out := r.applyOne(ctx, it)
			count := out == outcomeFailed && canProbe && ctx.Err() == nil && r.reachable(ctx, it)
			mu.Lock()
			defer mu.Unlock()
			switch out {
			case outcomeApplied:
				applied++
			case outcomeFailed:
				failed = append(failed, it)
				if count {
					it.attempts++
					counted++
				}
			}
		}()
	}
	wg.Wait()
	if !canProbe && len(failed) > 0 && ctx.Err() == nil && (applied > 0 || r.reachable(ctx, failed[0])) {
		for _, it := range failed {
			it.attempts++
			counted++
		}
	}
	return failed, applied > 0 || counted > 0
}

// applyOne makes one attempt at it.
func (r *Replayer) applyOne(ctx context.Context, it *item) outcome {
	if err := r.expired(it.hint); err != nil {
		it.reason, it.err = ReasonExpired, err
		return outcomeSettled
	}
	if err := r.throttle(ctx, len(it.msg.Value)); err != nil {
		it.err = err
		return outcomeFailed
	}
	err := r.cfg.Applier.Apply(ctx, it.hint)
	switch {
	case err == nil:
		r.metrics.replayed.Inc()
		w := it.hint // a copy: the witness must not keep the whole batch alive
		r.witness.Store(&w)
		return outcomeApplied
	case errors.Is(err, ErrExpired):
		it.reason, it.err = ReasonExpired, err
		return outcomeSettled
	case errors.Is(err, ErrPermanent):
		it.reason, it.err = ReasonRejected, err
		return outcomeSettled
	default:
		if ctx.Err() == nil {
			r.metrics.applyFailures.Inc()
		}
		it.err = err
		return outcomeFailed
	}
}

// throttle waits for the rate limits (MaxHintsPerSecond,
// MaxBytesPerSecond) to allow one hint of n bytes.
func (r *Replayer) throttle(ctx context.Context, n int) error {
	if err := wait.Tokens(ctx, r.hintLimit, 1); err != nil {
		return err
	}
	return wait.Tokens(ctx, r.byteLimit, n)
}
