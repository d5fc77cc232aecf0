// Package daemon is `repaird serve`: workers under a supervisor (scheduled
// repair of every namespace, the HTTP endpoints, and whatever else is added
// with AddWorker, such as a hint replayer), lazily connected region
// sessions, and the status the HTTP endpoints report.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/repair"
)

// Worker is one long-running part of the daemon. Run must return when ctx
// is cancelled; a non-nil error other than ctx's stops the whole daemon.
type Worker struct {
	Name string
	Run  func(ctx context.Context) error
}

// DefaultShutdownGrace is how long a Supervisor waits, by default, for its
// workers to return once shutdown has begun. With the sessions' close bound
// (DefaultSessionCloseTimeout) it fits in Kubernetes' default 30s
// termination grace period.
const DefaultShutdownGrace = 15 * time.Second

// DefaultRetryDelay bounds the default Options.RetryDelay: a namespace
// whose run failed is tried again after min(repair.interval, 1m).
const DefaultRetryDelay = time.Minute

// MaxReconnectDelay bounds the wait between two attempts to reach a
// region or the progress store from a worker that cannot start without
// it (a hint replayer, the restore of the last full repairs).
const MaxReconnectDelay = 10 * time.Second

// ErrStillClosing is matched (errors.Is) by the error of a shutdown that
// stopped waiting: workers that had not returned when the shutdown grace
// period ended. The error is a *StillClosingError whose Stragglers name
// them. It is wait.ErrStillClosing, the bounded-close error of every
// Tidemark package (store.ErrStillClosing, hints.ErrStillClosing).
var ErrStillClosing = wait.ErrStillClosing

// StillClosingError is the error of a shutdown that stopped waiting (see
// [ErrStillClosing]); errors.As gives its Stragglers.
type StillClosingError = wait.StillClosingError

// Supervisor runs workers. The zero value is ready to use.
type Supervisor struct {
	// Grace bounds the wait for the workers once ctx is done or a worker
	// failed: workers still running then are left behind (named in the log
	// and in the error) so that the process can exit. Zero or negative means
	// DefaultShutdownGrace.
	Grace time.Duration
	// Logger receives the names of workers that did not stop; nil discards.
	Logger *slog.Logger
}

// Supervise runs the workers with a zero Supervisor (DefaultShutdownGrace).
func Supervise(ctx context.Context, workers []Worker) error {
	return Supervisor{}.Run(ctx, workers)
}

// Run runs the workers until ctx is cancelled or one of them fails, then
// cancels the others and waits for all of them, at most Grace. It returns
// the first failure (named after its worker), a *StillClosingError
// (ErrStillClosing) naming the workers still running after Grace (joined
// with the failure, if any), or nil after a clean shutdown.
func (s Supervisor) Run(ctx context.Context, workers []Worker) error {
	grace, log := s.Grace, s.Logger
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopped := make([]wait.Closer, len(workers))
	for i, w := range workers {
		done := make(chan struct{})
		stopped[i] = wait.Done(w.Name, done)
		go func() {
			defer close(done)
			err := w.Run(ctx)
			if err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("worker %s: %w", w.Name, err))
			}
		}()
	}
	<-ctx.Done()
	var err error
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		err = c
	}
	gctx, gcancel := context.WithTimeoutCause(context.WithoutCancel(ctx), grace,
		fmt.Errorf("%w: workers did not stop within the shutdown grace period %v", context.DeadlineExceeded, grace))
	defer gcancel()
	if werr := wait.CloseAll(gctx, 0, "repaird: shutdown", stopped, nil); werr != nil {
		var sc *StillClosingError
		if errors.As(werr, &sc) {
			log.Error("repaird: workers did not stop within the shutdown grace period; leaving them behind",
				"workers", sc.Stragglers, "grace", grace)
		}
		err = errors.Join(err, werr)
	}
	return err
}

// ConnectFunc opens a session to a region (cluster.Connect by default).
type ConnectFunc func(ctx context.Context, r cluster.Region, keyspace string) (*gocql.Session, error)

// Options configure a Daemon.
type Options struct {
	// Logger receives the daemon's logs; nil discards them.
	Logger *slog.Logger
	// Registry is where the daemon's metrics are registered and what
	// /metrics serves; nil creates a new one (with Go and process
	// collectors).
	Registry *prometheus.Registry
	// Connect opens region sessions; nil means cluster.Connect.
	Connect ConnectFunc
	// RetryDelay is the wait before retrying a namespace whose run failed
	// (default min(repair.interval, DefaultRetryDelay)). Waits for a
	// region or the progress store to come back (the hint replayers, the
	// restore of the last full repairs) are min(RetryDelay,
	// MaxReconnectDelay).
	RetryDelay time.Duration
	// ShutdownGrace bounds how long Run waits for its workers once it is
	// stopping (default DefaultShutdownGrace); Run then closes the sessions
	// (at most DefaultSessionCloseTimeout more) and returns an error naming
	// the workers that did not stop.
	ShutdownGrace time.Duration
}

// Daemon is the repaird server.
type Daemon struct {
	cfg      *config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *repair.Metrics
	sessions *Sessions
	status   *statusBoard
	workers  []Worker
	retry    time.Duration
	grace    time.Duration
	runSem   chan struct{}

	// locator keeps the progress in the one progress region; openProgress
	// opens the progress store (tests replace them).
	locator      *ProgressLocator
	openProgress func(ctx context.Context) (repair.ProgressStore, error)
	progMu       sync.Mutex
	progress     repair.ProgressStore
}

// New builds a daemon for a validated configuration.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.Connect == nil {
		opts.Connect = cluster.Connect
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = min(cfg.Repair.Interval, DefaultRetryDelay)
	}
	m := repair.NewMetrics()
	if err := opts.Registry.Register(m); err != nil {
		return nil, fmt.Errorf("register repair metrics: %w", err)
	}
	d := &Daemon{
		cfg: cfg, log: opts.Logger, reg: opts.Registry, metrics: m,
		sessions: NewSessions(cfg, opts.Connect, opts.Logger),
		status:   newStatusBoard(cfg),
		retry:    opts.RetryDelay,
		grace:    opts.ShutdownGrace,
		runSem:   make(chan struct{}, 1),
	}
	d.locator = NewProgressLocator(cfg, SessionRecorder(d.sessions, cfg.Keyspace), opts.Logger)
	d.openProgress = d.cqlProgress
	if len(cfg.Namespaces) > 0 {
		d.workers = append(d.workers, Worker{Name: "restore-last-full-repair", Run: d.restoreLastFullRepairs})
	}
	for _, ns := range cfg.Namespaces {
		d.workers = append(d.workers, Worker{Name: "repair/" + ns, Run: func(ctx context.Context) error { return d.schedule(ctx, ns) }})
	}
	if err := d.addReplayers(); err != nil {
		return nil, err
	}
	return d, nil
}

// AddWorker adds a worker to run under the supervisor (before Run).
func (d *Daemon) AddWorker(w Worker) { d.workers = append(d.workers, w) }

// Registry returns the daemon's metrics registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Sessions returns the daemon's region sessions, for added workers.
func (d *Daemon) Sessions() *Sessions { return d.sessions }

// Logger returns the daemon's logger.
func (d *Daemon) Logger() *slog.Logger { return d.log }

// Run serves HTTP on the configured address and runs every worker until
// ctx is cancelled (SIGINT/SIGTERM in repaird) or a worker fails; then it
// waits for all of them (at most Options.ShutdownGrace) and closes the
// sessions (at most DefaultSessionCloseTimeout).
func (d *Daemon) Run(ctx context.Context) error {
	srv, err := d.listen()
	if err != nil {
		return err
	}
	defer d.sessions.Close()
	workers := append([]Worker{{Name: "http", Run: srv.run}}, d.workers...)
	d.log.Info("repaird: serving", "listen", srv.addr(), "namespaces", d.cfg.Namespaces, "regions", len(d.cfg.Regions))
	err = Supervisor{Grace: d.grace, Logger: d.log}.Run(ctx, workers)
	d.status.setStopping()
	d.log.Info("repaird: stopped", "err", err)
	return err
}

// cqlProgress opens the progress tables in the progress region's keyspace
// (the same for every daemon, whatever its home), having recorded that
// region in every region it reaches (ProgressLocator.Open).
func (d *Daemon) cqlProgress(ctx context.Context) (repair.ProgressStore, error) {
	return OpenProgress(ctx, d.locator, d.sessions)
}

// progressStore returns the progress store, opening it on first use.
func (d *Daemon) progressStore(ctx context.Context) (repair.ProgressStore, error) {
	d.progMu.Lock()
	defer d.progMu.Unlock()
	if d.progress != nil {
		return d.progress, nil
	}
	p, err := d.openProgress(ctx)
	if err != nil {
		return nil, err
	}
	d.progress = p
	return p, nil
}

// restoreLastFullRepairs publishes, for every namespace, the start of its
// last complete run as recorded in the progress store (gauge
// tidemark_repair_last_full_repair_timestamp_seconds and /status), so that
// the series and the status survive a restart. It needs only the progress
// region, retries until every namespace is read, and then returns; a
// progress location conflict (ErrProgressLocation) stops the daemon.
func (d *Daemon) restoreLastFullRepairs(ctx context.Context) error {
	left := append([]string(nil), d.cfg.Namespaces...)
	for attempt := 0; ; attempt++ {
		var failed []string
		var lastErr error
		store, err := d.progressStore(ctx)
		if errors.Is(err, ErrProgressLocation) {
			return err
		}
		if err != nil {
			failed, lastErr = left, err
		} else {
			for _, ns := range left {
				run, ok, err := store.LastFinished(ctx, ns)
				switch {
				case err != nil:
					failed, lastErr = append(failed, ns), err
				case ok:
					d.metrics.SetLastFullRepair(ns, run.StartedAt)
					d.status.restored(ns, run)
					d.log.Info("repaird: last full repair", "namespace", ns, "run", run.ID, "started", run.StartedAt, "finished", run.FinishedAt)
				default:
					d.log.Info("repaird: no full repair recorded yet", "namespace", ns)
				}
			}
		}
		if len(failed) == 0 || ctx.Err() != nil {
			return nil
		}
		left = failed
		if attempt == 0 {
			d.log.Warn("repaird: cannot read the last full repairs yet; retrying", "namespaces", left, "err", lastErr)
		}
		if !d.sleepRetry(ctx) {
			return nil
		}
	}
}

// sleepRetry waits before trying a region or the progress store again:
// min(RetryDelay, MaxReconnectDelay), or until ctx ends; it reports
// whether ctx is still live.
func (d *Daemon) sleepRetry(ctx context.Context) bool {
	return wait.Sleep(ctx, min(d.retry, MaxReconnectDelay))
}

// schedule repairs one namespace at the configured interval (between run
// starts), retrying sooner after a failure; a progress location conflict
// (ErrProgressLocation) stops the daemon.
func (d *Daemon) schedule(ctx context.Context, ns string) error {
	for {
		select {
		case d.runSem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		start := time.Now()
		err := d.RunOnce(ctx, ns)
		<-d.runSem
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrProgressLocation) {
			return err
		}
		next := start.Add(d.cfg.Repair.Interval)
		if err != nil {
			d.log.Error("repaird: repair failed", "namespace", ns, "err", err)
			next = time.Now().Add(d.retry)
		}
		d.status.setNext(ns, next)
		if !wait.Sleep(ctx, time.Until(next)) {
			return nil
		}
	}
}

// RunOnce connects (if needed) and runs one repair of ns, recording it in
// the status. Every region must record this daemon's progress region
// first (ProgressLocator.CheckAll): an error wrapping ErrProgressLocation
// says one records another.
func (d *Daemon) RunOnce(ctx context.Context, ns string) error {
	d.status.begin(ns)
	regions, _, err := d.sessions.Regions(ctx)
	if err != nil {
		d.status.fail(ns, err)
		return err
	}
	store, err := d.progressStore(ctx)
	if err == nil {
		err = d.locator.CheckAll(ctx)
	}
	if err != nil {
		d.status.fail(ns, err)
		return err
	}
	opts := RepairOptions(d.cfg)
	opts.Progress, opts.Metrics, opts.Logger = store, d.metrics, d.log
	opts.OnProgress = func(p repair.Progress) { d.status.progress(ns, p) }
	r, err := repair.New(regions, opts)
	if err != nil {
		d.status.fail(ns, err)
		return err
	}
	rep, err := r.Run(ctx, ns)
	d.status.finish(ns, rep, err, config.RetentionWarning(d.cfg.Repair.Interval, rep.Retention))
	return err
}

// RepairOptions maps the configuration's repair section to repair.Options.
func RepairOptions(cfg *config.Config) repair.Options {
	r := cfg.Repair
	return repair.Options{
		Segments: r.Segments, RowsPerSegment: r.RowsPerSegment, RowsPerSecond: r.RowsPerSecond,
		Intensity: r.Intensity, Parallelism: r.Parallelism, Concurrency: r.Concurrency,
		PageSize: r.PageSize, MaxAttempts: r.MaxAttempts, LeaseTTL: r.LeaseTTL, Owner: r.Owner,
		MaxRunAge: r.MaxRunAge,
	}
}
