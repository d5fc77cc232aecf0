package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/tidemark/tidemark/hints"
)

// Store is a handle on a multi-region deployment: one Executor and one
// circuit breaker per region, the hybrid logical clock, the hint sink and a
// bounded pool of background workers. It is safe for concurrent use. Make
// one per process with Open and Close it on shutdown.
type Store struct {
	cfg     Config
	regions []*region // index 0 is the home region
	clock   *clock
	sink    HintSink
	log     *slog.Logger
	metrics *Metrics

	// Background work: a fixed pool of workers reading queue. pending and
	// pendingBytes count queued jobs for the bounds.
	queue        chan job
	pending      atomic.Int64
	pendingBytes atomic.Int64
	workers      sync.WaitGroup

	// Hints of background writes run in goroutines of their own, at most
	// cap(hintSlots) at once holding at most MaxPendingBytes; hinters is
	// waited for after the workers, which start them.
	hintSlots chan struct{}
	hintBytes atomic.Int64
	hinters   sync.WaitGroup

	// mu guards closed; calls tracks running calls and bg the goroutines
	// they leave behind (late synchronous region requests).
	mu     sync.RWMutex
	closed bool
	calls  sync.WaitGroup
	bg     sync.WaitGroup

	// abortCtx is canceled (cause errAborted) when CloseContext's context
	// ends: every region request in flight is canceled and the workers turn
	// the writes still queued into hints. drainCtx, set just before, bounds
	// all the hints made from then on (Config.HintTimeout in total);
	// closeLost counts the writes that could not be hinted in that time.
	abortCtx  context.Context
	abort     context.CancelCauseFunc
	drainMu   sync.Mutex
	drainCtx  context.Context
	closeLost atomic.Int64

	// closers are the goroutines closing the regions' Executors; they may
	// outlive CloseContext when its context ends first.
	closers sync.WaitGroup

	nsMu       sync.Mutex
	retentions map[string]time.Duration
}

// region is one region as the Store sees it.
type region struct {
	idx     int
	name    string
	exec    Executor
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}] // nil when disabled
}

// Open connects to every region and returns a Store. It validates cfg
// first, reporting every problem at once (errors wrap ErrInvalidConfig),
// and creates the keyspace in each region when cfg.CreateKeyspace is set.
// Open fails if any region cannot be connected to: a Store always knows all
// of its regions (a region that goes down later is handled by breakers and
// hints).
func Open(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	s := &Store{
		cfg:        cfg,
		clock:      newClock(cfg.Now, cfg.MaxClockDrift),
		sink:       cfg.HintSink,
		log:        cfg.Logger,
		queue:      make(chan job, cfg.MaxPendingWrites),
		retentions: make(map[string]time.Duration),
	}
	s.abortCtx, s.abort = context.WithCancelCause(context.Background())
	s.metrics = newMetrics(
		func() float64 { return float64(s.pending.Load()) },
		func() float64 { return float64(s.pendingBytes.Load()) })

	// Home first, then the others in Config order.
	ordered := make([]RegionConfig, 0, len(cfg.Regions))
	for _, r := range cfg.Regions {
		if r.Name == cfg.Home {
			ordered = append(ordered, r)
		}
	}
	for _, r := range cfg.Regions {
		if r.Name != cfg.Home {
			ordered = append(ordered, r)
		}
	}
	ecfg := ExecutorConfig{Timeout: cfg.Timeout, ConnectTimeout: cfg.ConnectTimeout, Logger: cfg.Logger}
	for i, rc := range ordered {
		cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
		ex, err := cfg.NewExecutor(cctx, rc, cfg.Keyspace, ecfg)
		cancel()
		if err != nil {
			s.closeOpened()
			s.abort(nil)
			return nil, fmt.Errorf("store: open region %q: %w", rc.Name, err)
		}
		r := &region{idx: i, name: rc.Name, exec: ex}
		if !cfg.Breaker.Disabled {
			r.breaker = s.newBreaker(rc.Name)
		}
		s.metrics.setBreaker(rc.Name, gobreaker.StateClosed)
		s.regions = append(s.regions, r)
	}
	if cfg.CreateKeyspace {
		for i, r := range s.regions {
			cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			err := r.exec.CreateKeyspace(cctx, cfg.Keyspace, ordered[i].ReplicationFactor)
			cancel()
			if err != nil {
				s.closeOpened()
				s.abort(nil)
				return nil, fmt.Errorf("store: create keyspace %q in region %q: %w", cfg.Keyspace, r.name, err)
			}
		}
	}
	s.hintSlots = make(chan struct{}, cfg.HintConcurrency)
	for range cfg.RemoteConcurrency {
		s.workers.Add(1)
		go s.worker()
	}
	return s, nil
}

// closeOpened closes the regions Open has connected to when it fails,
// waiting for them at most ConnectionCloseTimeout.
func (s *Store) closeOpened() {
	ctx, cancel := context.WithTimeout(context.Background(), ConnectionCloseTimeout)
	defer cancel()
	if err := s.closeExecutors(ctx); err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "store: open failed; closing the regions already connected to",
			slog.Any("error", err))
	}
}

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

// Metrics returns the Store's metrics, to register with a Prometheus
// registry.
func (s *Store) Metrics() *Metrics { return s.metrics }

// Home returns the name of the home region.
func (s *Store) Home() string { return s.regions[0].name }

// Regions returns the region names, home first.
func (s *Store) Regions() []string {
	out := make([]string, len(s.regions))
	for i, r := range s.regions {
		out[i] = r.name
	}
	return out
}

// ConnectionCloseTimeout bounds how long Close waits for the regions'
// connections to close once the background work has finished. Closing a
// region's driver session can block for tens of seconds when the region is
// unreachable (the driver waits for its control connection's last request or
// reconnection attempt); the regions are closed concurrently, and those not
// closed in this time go on closing in the background.
const ConnectionCloseTimeout = 10 * time.Second

// Close closes the Store like CloseContext with a context that never ends,
// except that it waits at most ConnectionCloseTimeout for the regions'
// connections to close.
//
// It waits, however long it takes, for running calls and for all background
// work (writes to the other regions, late synchronous writes, hints, read
// repairs) to finish. Each background write is bounded by Config.Timeout,
// but with a backlog of queued writes to regions that time out (and breakers
// disabled) draining can take many timeouts; use CloseContext to bound it.
// Then it closes every region's connections, all at once, and waits for them
// at most ConnectionCloseTimeout: if some are still closing then, it returns
// an error naming those regions (wrapping ErrStillClosing and
// context.DeadlineExceeded) and they finish closing in the background.
func (s *Store) Close() error {
	return s.close(context.Background(), ConnectionCloseTimeout)
}

// CloseContext closes the Store. Calls made after it starts return
// ErrClosed. It waits for running calls and for all background work to
// finish, then closes every region's connections, all regions concurrently,
// waits for them, and returns nil (or the errors from closing connections,
// each naming its region).
//
// If ctx ends first, CloseContext stops waiting: every region request still
// in flight is canceled (a write may still have been applied in its region),
// and the writes that were canceled or still queued and never started are
// handed to the hint sink instead, as writes the region missed. Since ctx
// has already ended, those hints are bounded by one Config.HintTimeout in
// total; the writes not hinted in that time are counted in
// hints_failed_total and left to anti-entropy repair. Queued read repairs
// are dropped. The region connections are then closed and CloseContext
// returns an error wrapping ctx's error.
//
// The wait for the region connections is bounded by ctx too: when ctx ends
// (or has ended) before every region has closed its connections,
// CloseContext returns then (if ctx had already ended, after at most one
// second more for the healthy regions) with an error wrapping
// ErrStillClosing and ctx's error that names the regions still closing;
// those go on closing in the background and their goroutines end when the
// Executor's Close returns. So with a ctx that ends, CloseContext returns
// within ctx's deadline plus at most one Config.HintTimeout and a second. Every other goroutine the Store started has
// stopped when CloseContext returns.
//
// The Executor must honour the cancellation of its requests' contexts for
// this to be prompt. CloseContext is idempotent: later calls return nil at
// once.
func (s *Store) CloseContext(ctx context.Context) error {
	return s.close(ctx, 0)
}

// close is CloseContext; connBound > 0 also bounds the wait for the region
// connections to close (Close's ConnectionCloseTimeout).
func (s *Store) close(ctx context.Context, connBound time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s.calls.Wait()
		s.bg.Wait()
		close(s.queue)
		s.workers.Wait()
		s.hinters.Wait()
	}()
	var ctxErr error
	select {
	case <-drained:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		select {
		case <-drained: // finished at the same moment
		default:
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.HintTimeout)
			defer cancel()
			s.drainMu.Lock()
			s.drainCtx = dctx
			s.drainMu.Unlock()
			s.abort(errAborted)
			<-drained
		}
	}
	s.abort(nil) // every request has ended; release the abort context
	var errs []error
	if ctxErr != nil {
		if n := s.closeLost.Load(); n > 0 {
			s.log.LogAttrs(context.Background(), slog.LevelError,
				"store: closed before some missed writes could be hinted; left to anti-entropy repair",
				slog.Int64("rows", n), slog.Any("error", ctxErr))
		}
		errs = append(errs, fmt.Errorf("store: close: stopped waiting for background work, handing the writes canceled or still queued to the hint sink: %w", ctxErr))
	}
	cctx := ctx
	if connBound > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeoutCause(ctx, connBound,
			fmt.Errorf("%w: Close waits at most %s for the region connections to close", context.DeadlineExceeded, connBound))
		defer cancel()
	}
	if err := s.closeExecutors(cctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// regionClose is the outcome of closing one region's Executor.
type regionClose struct {
	done      chan struct{} // closed when Executor.Close has returned
	mu        sync.Mutex
	finished  bool  // Executor.Close has returned
	err       error // its error
	abandoned bool  // closeExecutors stopped waiting for it
}

// closeGrace is how long closeExecutors waits for the regions when its ctx
// has already ended.
const closeGrace = time.Second

// closeExecutors closes every region's Executor, each in a goroutine of its
// own, and waits for them until ctx ends (at most closeGrace if it already
// has). It returns the errors of the closes that finished, each naming its
// region, and, if ctx ended first, an error wrapping ErrStillClosing that
// names the regions still closing, which go on in the background
// (s.closers counts them).
func (s *Store) closeExecutors(ctx context.Context) error {
	outs := make([]*regionClose, len(s.regions))
	for i, r := range s.regions {
		out := &regionClose{done: make(chan struct{})}
		outs[i] = out
		s.closers.Go(func() {
			err := r.exec.Close()
			out.mu.Lock()
			out.finished, out.err = true, err
			abandoned := out.abandoned
			out.mu.Unlock()
			close(out.done)
			if abandoned {
				attrs := []slog.Attr{slog.String("region", r.name)}
				level := slog.LevelInfo
				if err != nil {
					level = slog.LevelWarn
					attrs = append(attrs, slog.Any("error", err))
				}
				s.log.LogAttrs(context.Background(), level,
					"store: region connections finished closing after Close stopped waiting", attrs...)
			}
		})
	}
	// A ctx that ran out while draining still leaves healthy regions a
	// moment to close, so that only the ones that hang are reported.
	wctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
		defer cancel()
	}
wait:
	for _, out := range outs {
		select {
		case <-out.done:
		case <-wctx.Done():
			break wait
		}
	}
	var errs []error
	var pending []string
	for i, out := range outs {
		out.mu.Lock()
		if !out.finished {
			out.abandoned = true
			pending = append(pending, fmt.Sprintf("%q", s.regions[i].name))
		} else if out.err != nil {
			errs = append(errs, fmt.Errorf("store: close region %q: %w", s.regions[i].name, out.err))
		}
		out.mu.Unlock()
	}
	if len(pending) > 0 {
		noun := "region"
		if len(pending) > 1 {
			noun = "regions"
		}
		errs = append(errs, fmt.Errorf("%w: stopped waiting for the connections of %s %s to close (they go on closing in the background): %w",
			ErrStillClosing, noun, strings.Join(pending, ", "), ctxCause(ctx)))
	}
	return errors.Join(errs...)
}

// ctxCause is ctx's error, or its cause when that says more: the cause
// itself if it wraps the error, both otherwise.
func ctxCause(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	switch {
	case cause == nil || cause == err:
		return err
	case errors.Is(cause, err):
		return cause
	default:
		return fmt.Errorf("%w: %w", err, cause)
	}
}

// begin registers a call; the returned function ends it.
func (s *Store) begin() (func(), error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.calls.Add(1)
	return s.calls.Done, nil
}

// goBackground runs f in a goroutine that Close waits for. It must be called
// while a call is registered (between begin and its end).
func (s *Store) goBackground(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// allow asks a region's breaker whether a request may go; the returned
// function reports the request's error to the breaker.
func (r *region) allow() (func(error), error) {
	if r.breaker == nil {
		return func(error) {}, nil
	}
	done, err := r.breaker.Allow()
	if err != nil {
		return nil, ErrCircuitOpen
	}
	return done, nil
}

// --- region requests -------------------------------------------------------

// requestCtx makes the context of one region request: parent's values,
// parent's cancellation too unless detach (a request the caller stopped
// waiting for still completes), the timeout (none if timeout <= 0), and
// cancellation with cause errAborted when CloseContext gives up waiting.
func (s *Store) requestCtx(parent context.Context, detach bool, timeout time.Duration) (context.Context, context.CancelFunc) {
	if detach {
		parent = context.WithoutCancel(parent)
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

// writeRegion writes m to one region through its breaker, with its own
// timeout detached from the caller's context (a write the caller stopped
// waiting for still completes, or becomes a hint).
func (s *Store) writeRegion(parent context.Context, r *region, m *mutation, timeout time.Duration) error {
	ctx, cancel := s.requestCtx(parent, true, timeout)
	defer cancel()
	return s.writeRegionCtx(ctx, r, m.op, m.level.String(), m.request(s.cfg.Keyspace, s.cfg.Now()))
}

func (s *Store) writeRegionCtx(ctx context.Context, r *region, op, level string, w WriteRequest) error {
	if len(w.Rows) == 0 {
		return nil // everything expired while waiting: nothing to write
	}
	done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, op, errorKind(err)).Inc()
		return err
	}
	start := time.Now()
	err = s.abortedErr(classify(ctx, r.exec.Write(ctx, w)))
	done(err)
	s.metrics.observeRegion(r.name, op, level, time.Since(start), err)
	return err
}

func (s *Store) readRegion(ctx context.Context, r *region, level string, q ReadRequest) (Row, error) {
	done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, opGet, errorKind(err)).Inc()
		return Row{}, err
	}
	start := time.Now()
	row, err := r.exec.Read(ctx, q)
	err = s.abortedErr(classify(ctx, err))
	done(err)
	if isNotFound(err) {
		s.metrics.observeRegion(r.name, opGet, level, time.Since(start), nil)
	} else {
		s.metrics.observeRegion(r.name, opGet, level, time.Since(start), err)
	}
	return row, err
}

func (s *Store) scanRegion(ctx context.Context, r *region, level string, q ScanRequest) ([]Row, error) {
	done, err := r.allow()
	if err != nil {
		s.metrics.regionErrors.WithLabelValues(r.name, opScan, errorKind(err)).Inc()
		return nil, err
	}
	start := time.Now()
	rows, err := r.exec.Scan(ctx, q)
	err = s.abortedErr(classify(ctx, err))
	done(err)
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

// --- hints -------------------------------------------------------------------

// hint stores the rows of m that region r missed, one hint per row. It
// reports whether every hint is durable; failures are counted as left to
// repair. It never uses the caller's context: the hint must be attempted
// even when the caller has gone. Once CloseContext has given up waiting,
// hints share its drain deadline, and rows past it are counted without
// calling the sink.
func (s *Store) hint(r *region, m *mutation, cause error) bool {
	s.drainMu.Lock()
	base := s.drainCtx
	s.drainMu.Unlock()
	draining := base != nil
	if !draining {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, s.cfg.HintTimeout)
	defer cancel()
	now := s.cfg.Now()
	ok := true
	for i, row := range m.rows {
		if base.Err() != nil {
			ok = false
			s.metrics.hintsFailed.WithLabelValues(r.name).Inc()
			s.closeLost.Add(1)
			continue
		}
		h := hints.Hint{
			Target:    r.name,
			Origin:    s.regions[0].name,
			Namespace: m.ns,
			PK:        m.pk,
			CK:        row.CK,
			Value:     row.Value,
			Deleted:   row.Deleted,
			Timestamp: row.Timestamp,
			ExpiresAt: m.expires[i],
			CreatedAt: now,
		}
		if err := s.sink.Hint(ctx, h); err != nil {
			ok = false
			s.metrics.hintsFailed.WithLabelValues(r.name).Inc()
			if draining {
				s.closeLost.Add(1)
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

// --- background work ---------------------------------------------------------

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

// enqueue hands j to the workers. It reports false, without blocking, when
// the queue is at its count or byte bound or the Store is closing.
func (s *Store) enqueue(j job) bool {
	if s.pending.Add(1) > int64(s.cfg.MaxPendingWrites) {
		s.pending.Add(-1)
		return false
	}
	// One job larger than the byte bound is still accepted into an empty
	// queue, so that a big value is not hinted just for its size.
	if nb := s.pendingBytes.Add(j.bytes); nb > s.cfg.MaxPendingBytes && nb != j.bytes {
		s.pending.Add(-1)
		s.pendingBytes.Add(-j.bytes)
		return false
	}
	select {
	case s.queue <- j:
		return true
	default:
		s.pending.Add(-1)
		s.pendingBytes.Add(-j.bytes)
		return false
	}
}

func (s *Store) worker() {
	defer s.workers.Done()
	for j := range s.queue {
		s.pending.Add(-1)
		s.pendingBytes.Add(-j.bytes)
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
	case hintable(err):
		s.hintAsync(j.region, j.m, err)
	default:
		s.rejected(j.region, j.m, err, true)
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

// remote sends m to region r in the background; when the queue is full it
// goes straight to the hint sink.
func (s *Store) remote(r *region, m *mutation, timeout time.Duration) {
	if s.enqueue(job{region: r, m: m, timeout: timeout, bytes: m.size}) {
		return
	}
	s.metrics.regionErrors.WithLabelValues(r.name, m.op, "queue_full").Inc()
	// The Store is overloaded: storing the hint here slows the caller down
	// (backpressure) instead of queueing more.
	s.hint(r, m, errQueueFull)
}

// hintAsync stores the hint of a background write in a goroutine of its own
// when the hint pool has room (count and bytes), so that the remote-write
// workers do not wait for the hint sink (with a region cut or its breaker
// open, every write to it becomes a hint); otherwise it stores it in the
// current goroutine.
func (s *Store) hintAsync(r *region, m *mutation, cause error) {
	select {
	case s.hintSlots <- struct{}{}:
	default:
		s.hint(r, m, cause)
		return
	}
	if nb := s.hintBytes.Add(m.size); nb > s.cfg.MaxPendingBytes && nb != m.size {
		s.hintBytes.Add(-m.size)
		<-s.hintSlots
		s.hint(r, m, cause)
		return
	}
	s.hinters.Add(1)
	go func() {
		defer s.hinters.Done()
		defer func() { s.hintBytes.Add(-m.size); <-s.hintSlots }()
		s.hint(r, m, cause)
	}()
}

// tableRetention returns the tombstone retention of namespace ns: given
// with WithRetention, learned by CreateNamespace, or read from the table in
// the first region that answers (home first, then the others in order). A
// retention once known is cached, since it never changes for a table. It
// never guesses: a marker shorter-lived than the table's retention could
// expire before repair brings it to every region, and the deleted row would
// come back. If no region answers it fails, wrapping ErrUnavailable when
// every region failed for availability.
func (s *Store) tableRetention(ctx context.Context, op, ns string, timeout time.Duration) (time.Duration, error) {
	s.nsMu.Lock()
	d, ok := s.retentions[ns]
	s.nsMu.Unlock()
	if ok {
		return d, nil
	}
	var errs []error
	unavailable := true
	for _, r := range s.regions {
		d, err := s.readRetention(ctx, r, ns, timeout)
		if err == nil {
			s.rememberRetention(ns, d)
			return d, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("store: %s %s: reading the namespace's tombstone retention: %w", op, ns, ctx.Err())
		}
		errs = append(errs, &RegionError{Region: r.name, Op: "read tombstone retention", Err: err})
		if !isAvailability(err) {
			unavailable = false
		}
	}
	if unavailable {
		return 0, fmt.Errorf("%w: %s %s: no region could tell the namespace's tombstone retention, which a deletion marker's TTL must equal (retry once a region is reachable, or give Store.Namespace WithRetention): %w",
			ErrUnavailable, op, ns, errorList(errs))
	}
	return 0, fmt.Errorf("store: %s %s: cannot read the namespace's tombstone retention (was the namespace created with CreateNamespace?): %w",
		op, ns, errorList(errs))
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

// readRetention reads a namespace's retention from one region, through its
// breaker.
func (s *Store) readRetention(ctx context.Context, r *region, ns string, timeout time.Duration) (time.Duration, error) {
	done, err := r.allow()
	if err != nil {
		return 0, err
	}
	rctx, cancel := s.requestCtx(ctx, false, timeout)
	defer cancel()
	d, err := r.exec.TableRetention(rctx, s.cfg.Keyspace, ns)
	err = s.abortedErr(classify(rctx, err))
	done(err)
	if err == nil && d <= 0 {
		err = fmt.Errorf("table %s.%s records a tombstone retention of %v, which is not positive", s.cfg.Keyspace, ns, d)
	}
	return d, err
}

func (s *Store) rememberRetention(ns string, d time.Duration) {
	s.nsMu.Lock()
	s.retentions[ns] = d
	s.nsMu.Unlock()
}
