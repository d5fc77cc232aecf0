package store

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store/driver"
)

// Store is a handle on a multi-region deployment: one executor and one
// circuit breaker per region, the hybrid logical clock, the hint sink and a
// bounded pool of background workers. It is safe for concurrent use. Make
// one per process with Open and Close it on shutdown.
//
// Its parts live in files of their own: the region requests and breakers
// (region.go), the background queue and its workers (background.go), the
// hints of missed writes (hint.go), the namespaces' retentions
// (retention.go) and shutdown (close.go).
type Store struct {
	cfg     Config
	regions []*region // index 0 is the home region
	clock   *clock
	sink    HintSink
	log     *slog.Logger
	metrics *Metrics

	// Background work: a fixed pool of workers reading queue; queued holds
	// the count and bytes of the jobs waiting in it.
	queue   chan job
	queued  *budget
	workers sync.WaitGroup

	// Hints of background writes wait in hintQueue (hintQueued holds
	// their count and bytes: Config.MaxPendingHints, MaxPendingBytes) for
	// Config.HintConcurrency hint workers; hinters is waited for after the
	// remote-write workers, which queue hints.
	hintQueue  chan hintJob
	hintQueued *budget
	hinters    sync.WaitGroup
	// hintsPending counts the jobs queued in hintQueue or being stored by
	// a hint worker (the hints_pending gauge).
	hintsPending atomic.Int64
	// debt records the writes no hint will bring their region (debt.go);
	// nil when Config.MaxPendingDebt is negative.
	debt *debtLog
	// logs rate-limits the logs a burst of failures repeats.
	logs logLimits

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
	abortCtx context.Context
	abort    context.CancelCauseFunc
	drain    drainState

	// closers are the goroutines closing the regions' executors; they may
	// outlive CloseContext when its context ends first.
	closers sync.WaitGroup

	// The background connections of regions Open could not reach
	// (connect.go), stopped by Close.
	lifecycle

	// retentions holds the namespaces' tombstone retentions, read from
	// their tables (retention.go).
	retentions *schema.Retentions

	// conflicts records the conflicts read repair finds (conflict.go);
	// nil: none.
	conflicts *conflicts.Log

	// track holds the writes not yet settled in each region, and wm sends
	// the heartbeats built from it (watermark.go); both nil when the Store
	// takes no part in the convergence watermark.
	track *tracker
	wm    *watermarker
}

// region is one region as the Store sees it.
type region struct {
	idx     int
	name    string
	exec    atomic.Pointer[execHolder] // nil until connected (connect.go)
	conn    connState
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}] // nil when disabled
}

// Open validates cfg, connects to every region concurrently and returns a
// Store. Configuration problems are reported all at once (errors wrap
// ErrInvalidConfig). With cfg.CreateKeyspace set it creates the keyspace in
// each region; otherwise it checks that the keyspace exists.
//
// A region Open cannot reach — its nodes are down or its network is cut,
// the home region included — does not fail Open: the Store starts with that
// region unconnected and connects it in the background, with back-off, until
// it answers (Health reports it; region_connected is 0 meanwhile). Until
// then every request to it fails at once with ErrNotConnected (an
// ErrUnavailable, as for an open breaker): calls that need it fail fast
// with a ConsistencyError naming it, and its share of every write becomes a
// hint — a write at Any succeeds with the home region down if its hint is
// durable. Open fails only for what waiting cannot heal: an invalid
// configuration, credentials or certificates a region refuses, a keyspace
// that does not exist; and when ctx ends.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	s := &Store{
		cfg:        cfg,
		clock:      newClock(cfg.Now, cfg.MaxClockDrift, cfg.WriterID),
		sink:       cfg.HintSink,
		log:        cfg.Logger,
		queue:      make(chan job, cfg.MaxPendingWrites),
		queued:     newBudget(math.MaxInt, cfg.MaxPendingBytes), // bytes only: the queue's capacity bounds the count
		hintQueue:  make(chan hintJob, cfg.MaxPendingHints),
		hintQueued: newBudget(cfg.MaxPendingHints, cfg.MaxPendingBytes),
		logs:       newLogLimits(),
	}
	s.retentions = schema.NewRetentions(s.readRetention, schema.DefaultRetentionRefresh, 0, cfg.Now)
	s.abortCtx, s.abort = context.WithCancelCause(context.Background())
	s.lifeCtx, s.lifeStop = context.WithCancel(context.Background())
	s.metrics = newMetrics(gauges{
		depth: func() float64 { return float64(len(s.queue)) },
		bytes: func() float64 { _, b := s.queued.held(); return float64(b) },
		hints: func() float64 { return float64(s.hintsPending.Load()) },
		debt:  func() float64 { return float64(s.debt.pendingCount()) },
	})
	s.conflicts = s.newConflictLog()

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
	for i, rc := range ordered {
		r := &region{idx: i, name: rc.Name}
		if !cfg.Breaker.Disabled {
			r.breaker = s.newBreaker(rc.Name)
		}
		s.metrics.setBreaker(rc.Name, gobreaker.StateOpen)
		s.metrics.setConnected(rc.Name, false)
		s.metrics.initRegion(rc.Name)
		s.regions = append(s.regions, r)
	}
	if err := s.connectAll(ctx, ordered); err != nil {
		s.lifeStop()
		s.closeOpened()
		s.abort(nil)
		return nil, err
	}
	for range cfg.RemoteConcurrency {
		s.workers.Add(1)
		go s.worker()
	}
	for range cfg.HintConcurrency {
		s.hinters.Add(1)
		go s.hintWorker()
	}
	if cfg.MaxPendingDebt > 0 {
		s.debt = newDebtLog(s, cfg.MaxPendingDebt)
		go s.debt.run()
	}
	s.wm = newWatermarker(ctx, s)
	return s, nil
}

// connect makes the executor of one region: Config.NewExecutor's, or the
// default CQL one.
func (s *Store) connect(ctx context.Context, rc RegionConfig, reach *driver.Reach) (driver.Executor, error) {
	if reach == nil {
		reach = driver.NewReach() // a reconnection: nobody waits on it
	}
	dc := driver.Config{Region: rc.Name, Keyspace: s.cfg.Keyspace, Timeout: s.cfg.Timeout,
		ConnectTimeout: s.cfg.ConnectTimeout, Logger: s.cfg.Logger, Reach: reach}
	if s.cfg.NewExecutor != nil {
		return s.cfg.NewExecutor(ctx, dc)
	}
	return dialCQL(ctx, rc, dc, s.cfg.ConfigureCQL)
}

// Metrics returns the Store's metrics, to register with a Prometheus
// registry.
func (s *Store) Metrics() *Metrics { return s.metrics }

// WriterID returns the writer id that the lowest bits of every timestamp
// this Store issues carry (Config.WriterID, or the one drawn at Open).
func (s *Store) WriterID() int { return int(s.clock.id) }

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
