package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/schema"
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

	// mu guards closed; calls tracks running calls and bg the goroutines
	// they leave behind (late synchronous region requests).
	mu     sync.RWMutex
	closed bool
	calls  sync.WaitGroup
	bg     sync.WaitGroup

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
			s.closeExecutors()
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
				s.closeExecutors()
				return nil, fmt.Errorf("store: create keyspace %q in region %q: %w", cfg.Keyspace, r.name, err)
			}
		}
	}
	for range cfg.RemoteConcurrency {
		s.workers.Add(1)
		go s.worker()
	}
	return s, nil
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
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
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

// Close waits for running calls and for all background work (writes to the
// other regions, late synchronous writes, hints, read repairs) to finish,
// then closes every region's connections. Calls made after Close return
// ErrClosed. Background writes are bounded by Config.Timeout each, so Close
// returns within a bounded time even when regions are down (their breakers
// open and the remaining writes become hints). Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
	s.bg.Wait()
	close(s.queue)
	s.workers.Wait()
	return s.closeExecutors()
}

func (s *Store) closeExecutors() error {
	var errs []error
	for _, r := range s.regions {
		if err := r.exec.Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: close region %q: %w", r.name, err))
		}
	}
	return errors.Join(errs...)
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

// writeRegion writes m to one region through its breaker, with its own
// timeout detached from the caller's context (a write the caller stopped
// waiting for still completes, or becomes a hint).
func (s *Store) writeRegion(parent context.Context, r *region, m *mutation, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), timeout)
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
	err = classify(ctx, r.exec.Write(ctx, w))
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
	err = classify(ctx, err)
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
	err = classify(ctx, err)
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
// even when the caller has gone.
func (s *Store) hint(r *region, m *mutation, cause error) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HintTimeout)
	defer cancel()
	now := s.cfg.Now()
	ok := true
	for i, row := range m.rows {
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
	case err != nil:
		s.hint(j.region, j.m, err)
	}
}

// remote sends m to region r in the background; when the queue is full it
// goes straight to the hint sink.
func (s *Store) remote(r *region, m *mutation, timeout time.Duration) {
	if s.enqueue(job{region: r, m: m, timeout: timeout, bytes: m.size}) {
		return
	}
	s.metrics.regionErrors.WithLabelValues(r.name, m.op, "queue_full").Inc()
	s.hint(r, m, errQueueFull)
}

// tableRetention returns the tombstone retention of a namespace: given with
// WithRetention, remembered from CreateNamespace, or read from the table
// (home region first). If no region can tell, it falls back to
// schema.DefaultRetention and logs a warning: a marker that lives longer
// than the table's retention is harmless, only a shorter one is not.
func (s *Store) tableRetention(ctx context.Context, ns string, timeout time.Duration) time.Duration {
	s.nsMu.Lock()
	d, ok := s.retentions[ns]
	s.nsMu.Unlock()
	if ok {
		return d
	}
	var errs []error
	for _, r := range s.regions {
		if r.breaker != nil && r.breaker.State() == gobreaker.StateOpen {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		d, err := r.exec.TableRetention(cctx, s.cfg.Keyspace, ns)
		cancel()
		if err == nil && d > 0 {
			s.rememberRetention(ns, d)
			return d
		}
		errs = append(errs, fmt.Errorf("region %q: %w", r.name, err))
		if ctx.Err() != nil {
			break
		}
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "store: could not read the namespace's tombstone retention; using the default",
		slog.String("namespace", ns), slog.Duration("default", schema.DefaultRetention), slog.Any("error", errors.Join(errs...)))
	return schema.DefaultRetention
}

func (s *Store) rememberRetention(ns string, d time.Duration) {
	s.nsMu.Lock()
	s.retentions[ns] = d
	s.nsMu.Unlock()
}
