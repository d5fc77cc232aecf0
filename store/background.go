package store

import (
	"context"
	"log/slog"
	"time"
)

// Background work: remote writes of calls that do not wait for their
// region, late synchronous writes and read repairs, run by a fixed pool of
// Config.RemoteConcurrency workers from a queue bounded in count and bytes.

// job is one unit of background work: a write of m to region, either a
// remote write of a call (a hint on failure) or a read repair (dropped on
// failure, left to anti-entropy repair).
type job struct {
	region  *region
	m       *mutation
	timeout time.Duration
	repair  bool
	bytes   int64
}

// enqueue hands j to the workers. It reports false when the queue is at
// its count bound (the channel's capacity, Config.MaxPendingWrites) or its
// byte bound (MaxPendingBytes; one job larger than the byte bound still
// enters an empty queue, so that a big value is not hinted just for its
// size) and stays there for wait: wait > 0 is backpressure, slowing the
// caller a little instead of turning a write to a healthy region into a
// hint.
//
// Waiting for a slot is a blocking send on the queue, so waiters are served
// first come, first served: a slot a worker frees goes to the oldest
// waiter (the runtime hands it the slot as the worker receives), never to a
// caller that just arrived. With polling instead, new arrivals took the
// freed slots while the waiters' QueueWait ran out, and a healthy region's
// writes became hints under a burst (docs/benchmarks.md, "burst").
func (s *Store) enqueue(j job, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for poll := time.Millisecond; !s.queued.take(j.bytes); poll = min(2*poll, 10*time.Millisecond) {
		// The byte bound: rare (MaxPendingBytes of queued values), so a poll.
		if time.Until(deadline) <= 0 {
			return false
		}
		time.Sleep(min(poll, time.Until(deadline)))
	}
	select {
	case s.queue <- j:
		return true
	default:
	}
	if wait > 0 {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case s.queue <- j:
			return true
		case <-t.C:
		}
	}
	s.queued.release(j.bytes)
	return false
}

func (s *Store) worker() {
	defer s.workers.Done()
	for j := range s.queue {
		s.queued.release(j.bytes)
		if s.abortCtx.Err() != nil {
			s.abandon(j)
			continue
		}
		s.runJob(j)
	}
}

func (s *Store) runJob(j job) {
	err := s.writeRegion(context.Background(), j.region, j.m, j.timeout)
	switch {
	case j.repair && err == nil:
		s.metrics.readRepairs.WithLabelValues(j.region.name, "ok").Inc()
	case j.repair:
		s.metrics.readRepairs.WithLabelValues(j.region.name, "error").Inc()
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "store: read repair failed; left to anti-entropy repair",
			slog.String("region", j.region.name), slog.Any("error", err))
	case err == nil:
		j.m.wm.settle(j.region.idx, len(j.m.rows))
	case hintable(err):
		s.hintAsync(j.region, j.m, err)
	default:
		s.rejected(j.region, j.m, err, true)
		j.m.wm.stick(j.region.idx, len(j.m.rows))
	}
}

// abandon handles a queued job that CloseContext gave up on before it
// started: a remote write becomes a hint, a read repair is dropped.
func (s *Store) abandon(j job) {
	if j.repair {
		s.metrics.readRepairs.WithLabelValues(j.region.name, "dropped").Inc()
		return
	}
	s.hint(j.region, j.m, errAborted)
}

// rejected accounts for a region that refused a write with an error that is
// not an availability failure: counted and logged, not hinted (a replay
// would be refused too). A background region's refusal reaches no caller,
// so it is logged at error level; a synchronous region's may (when it
// decides the call), so it is logged at warning level.
func (s *Store) rejected(r *region, m *mutation, err error, background bool) {
	s.metrics.writesRejected.WithLabelValues(r.name, m.op, errorKind(err)).Inc()
	level, msg := slog.LevelWarn, "store: region rejected a write; not hinted"
	if background {
		level, msg = slog.LevelError, "store: region rejected a background write; not hinted, the region lacks it until the cause is fixed and repair runs"
	}
	s.log.LogAttrs(context.Background(), level, msg,
		slog.String("region", r.name), slog.String("namespace", m.ns), slog.String("op", m.op),
		slog.Int64("ts", m.rows[0].Timestamp), slog.Any("error", err))
}

// remote sends m to region r in the background. A region known to be
// unavailable (not connected, or its breaker open) is not queued at all:
// its hint is stored by the hint pool at once. A healthy region's write
// waits up to Config.QueueWait for room in a full queue (backpressure),
// and only then becomes a hint. Neither path blocks the caller for longer.
func (s *Store) remote(r *region, m *mutation, timeout time.Duration) {
	if !r.available() {
		s.metrics.regionErrors.WithLabelValues(r.name, m.op, errorKind(ErrCircuitOpen)).Inc()
		s.hintAsync(r, m, ErrCircuitOpen)
		return
	}
	if s.enqueue(job{region: r, m: m, timeout: timeout, bytes: m.size}, s.cfg.QueueWait) {
		return
	}
	s.metrics.regionErrors.WithLabelValues(r.name, m.op, "queue_full").Inc()
	s.hintAsync(r, m, errQueueFull)
}
