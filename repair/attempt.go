// One segment attempt: its lease, the guard that renews it and
// abandons an attempt that makes no progress, and its tracker.

package repair

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/internal/wait"
)

// attempt leases, repairs and records one segment (or what is left of a
// split one).
func (r *Repairer) attempt(ctx context.Context, store ProgressStore, run RunInfo, ns string, t segTask, acc *accum, ctl *Control) segOutcome {
	out := segOutcome{task: t}
	if err := ctl.Wait(ctx); err != nil {
		out.err = err
		return out
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	trk := newTracker()
	var renew func(context.Context) (bool, error)
	if !r.opts.DryRun {
		ok, err := store.Acquire(ctx, run, t.seg.Index, r.opts.Owner, r.opts.LeaseTTL)
		if err != nil {
			out.err = fmt.Errorf("acquire lease: %w", err)
			return out
		}
		if !ok {
			out.leased = true
			recs, err := store.Segments(ctx, run)
			out.done = err == nil && recs[t.seg.Index].Done
			return out
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
			defer cancel()
			_ = store.Release(rctx, run, t.seg.Index, r.opts.Owner)
		}()
		// The segment may have been finished by another process since we
		// read the progress.
		recs, err := store.Segments(ctx, run)
		if err != nil {
			out.err = fmt.Errorf("read progress: %w", err)
			return out
		}
		if recs[t.seg.Index].Done {
			out.done, out.leased = true, true
			return out
		}
		renew = func(c context.Context) (bool, error) {
			return store.Renew(c, run, t.seg.Index, r.opts.Owner, r.opts.LeaseTTL)
		}
	}
	guardDone := make(chan struct{})
	go r.guard(sctx, cancel, renew, trk, ctl, guardDone)
	pieces := t.pieces
	if pieces == nil {
		pieces = []piece{{TokenRange: t.seg}}
	}
	start := time.Now()
	var st segStats
	var err error
	for len(pieces) > 0 {
		var ps segStats
		ps, err = r.repairSegment(sctx, ns, pieces[0].TokenRange, acc, ctl, trk)
		st.rows, st.differing, st.written = st.rows+ps.rows, st.differing+ps.differing, st.written+ps.written
		if err != nil {
			break
		}
		pieces = pieces[1:]
		if len(pieces) > 0 {
			out.progressed = true
		}
	}
	out.dur = time.Since(start)
	cause := context.Cause(sctx)
	cancel(nil)
	<-guardDone
	if err != nil {
		switch {
		case errors.Is(cause, ErrLeaseLost):
			err = ErrLeaseLost
		case errors.Is(cause, ErrSegmentTimeout):
			err = fmt.Errorf("%w: segment %s, no row scanned or written for %v (Options.SegmentTimeout)", ErrSegmentTimeout, t.seg, r.opts.SegmentTimeout)
		}
		out.err = err
		if t.pieces != nil {
			out.pieces = pieces
		}
		r.opts.Metrics.observeSegment(ns, out.dur, false)
		return out
	}
	r.opts.Metrics.observeSegment(ns, out.dur, true)
	if !r.opts.DryRun {
		rec := SegmentRecord{Index: t.seg.Index, Done: true, FinishedAt: time.Now(), Owner: r.opts.Owner,
			RowsScanned: st.rows, RowsDiffering: st.differing, RowsWritten: st.written, Attempts: t.attempts + 1}
		if err := store.Record(ctx, run, rec); err != nil {
			out.err = fmt.Errorf("record progress: %w", err)
			return out
		}
	}
	out.done = true
	intensity, _ := ctl.tuning(&r.opts)
	if p := intensityPause(out.dur, intensity); p > 0 {
		wait.Sleep(ctx, p)
	}
	return out
}

// guard renews the segment's lease every LeaseTTL/3 (renew nil: no lease)
// and abandons the attempt when the lease is lost (ErrLeaseLost) or when
// it makes no progress for SegmentTimeout while neither paused nor
// throttled (ErrSegmentTimeout); it returns when ctx ends.
func (r *Repairer) guard(ctx context.Context, cancel context.CancelCauseFunc, renew func(context.Context) (bool, error), trk *tracker, ctl *Control, done chan struct{}) {
	defer close(done)
	var renewTick <-chan time.Time
	if renew != nil {
		t := time.NewTicker(r.opts.LeaseTTL / 3)
		defer t.Stop()
		renewTick = t.C
	}
	watch := time.NewTicker(min(r.opts.SegmentTimeout/4, time.Second))
	defer watch.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-renewTick:
			ok, err := renew(ctx)
			if err == nil && !ok {
				cancel(ErrLeaseLost)
				return
			}
		case <-watch.C:
			if ctl.State().Paused {
				trk.touch()
			} else if trk.idle() > r.opts.SegmentTimeout {
				cancel(ErrSegmentTimeout)
				return
			}
		}
	}
}

// tracker is when a segment attempt last made progress; while held
// (waiting for a paused run or for the rate limiter) it is not idle.
type tracker struct {
	last  atomic.Int64 // unix nanoseconds
	holds atomic.Int32
}

func newTracker() *tracker {
	t := &tracker{}
	t.touch()
	return t
}

func (t *tracker) touch() { t.last.Store(time.Now().UnixNano()) }

func (t *tracker) hold()    { t.holds.Add(1) }
func (t *tracker) release() { t.touch(); t.holds.Add(-1) }

// idle is how long the attempt has made no progress (0 while held).
func (t *tracker) idle() time.Duration {
	if t.holds.Load() > 0 {
		return 0
	}
	return time.Since(time.Unix(0, t.last.Load()))
}
