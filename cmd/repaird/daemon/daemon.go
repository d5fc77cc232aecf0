// Package daemon is `repaird serve`: workers under a supervisor (scheduled
// repair of every namespace, the HTTP endpoints, and whatever else is added
// with AddWorker, such as a hint replayer), lazily connected region
// sessions, and the status the HTTP endpoints report.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/internal/watermark"
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
	dmetrics *daemonMetrics
	sessions *Sessions
	status   *statusBoard
	workers  []Worker
	retry    time.Duration
	grace    time.Duration
	runSem   chan struct{}
	// owner names this process in leases and directives: the configured
	// owner made unique per process (UniqueOwner).
	owner string
	// token is the bearer token of the control API ("" refuses it).
	token string
	// runs are the runs this daemon works on; triggers start a
	// namespace's full run now.
	runs     *runBoard
	triggers map[string]chan struct{}
	hints    *hintBoard
	// debt is the repair debt worker's state (debt.go).
	debt *debtBoard
	// wm is the convergence watermark worker's state (watermark.go).
	wm *watermarks
	// kafkaTLS and kafkaSASL are how the replayers reach the brokers.
	kafkaTLS  *tls.Config
	kafkaSASL *hints.SASL
	// now is the clock of schedules and windows (tests replace it).
	now func() time.Time
	// addr is the address Run listens on, once it does.
	addr atomic.Pointer[string]

	// locator keeps the progress in the one progress region; openProgress
	// opens the progress store (tests replace them).
	locator      *ProgressLocator
	openProgress func(ctx context.Context) (repair.ProgressStore, error)
	// openRegions returns the regions a run repairs (the sessions' CQL
	// regions; tests replace it).
	openRegions func(ctx context.Context) ([]repair.Region, error)
	// exitDebt writes an unclean exit's overflow entries and markExited
	// marks its session exited in every region (exits.go; tests replace
	// them).
	exitDebt   func(ctx context.Context, home string, namespaces []string, at time.Time) error
	markExited func(ctx context.Context, e watermark.Session, recorded string, at time.Time) error
	progMu     sync.Mutex
	progress   repair.ProgressStore
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
	token, err := cfg.HTTP.Token()
	if err != nil {
		return nil, err
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
		owner:    UniqueOwner(cfg.Repair.Owner),
		token:    token,
		runs:     newRunBoard(),
		triggers: map[string]chan struct{}{},
		hints:    newHintBoard(),
		debt:     newDebtBoard(),
		wm:       newWatermarks(),
		now:      time.Now,
	}
	d.dmetrics = newDaemonMetrics(d)
	if err := opts.Registry.Register(d.dmetrics); err != nil {
		return nil, fmt.Errorf("register repaird metrics: %w", err)
	}
	d.exitDebt, d.markExited = d.addExitDebt, d.markSessionExited
	d.locator = NewProgressLocator(cfg, SessionRecorder(d.sessions, cfg.Keyspace), opts.Logger)
	d.openProgress = d.cqlProgress
	d.openRegions = func(ctx context.Context) ([]repair.Region, error) {
		regions, _, err := d.sessions.Regions(ctx)
		return regions, err
	}
	if len(cfg.Namespaces) > 0 {
		d.workers = append(d.workers, Worker{Name: "restore-last-full-repair", Run: d.restoreLastFullRepairs},
			Worker{Name: "retention-guard", Run: d.guardRetention})
	}
	for _, ns := range cfg.Names() {
		d.triggers[ns] = make(chan struct{}, 1)
		d.workers = append(d.workers, Worker{Name: "repair/" + ns, Run: func(ctx context.Context) error { return d.schedule(ctx, ns) }})
		if cfg.Schedule(ns).Incremental > 0 {
			d.workers = append(d.workers, Worker{Name: "incremental/" + ns, Run: func(ctx context.Context) error { return d.runIncrementals(ctx, ns) }})
		}
	}
	d.workers = append(d.workers, Worker{Name: "api-runs", Run: d.runs.wait})
	if debtInterval(cfg) > 0 && len(cfg.Regions) >= 2 {
		d.workers = append(d.workers, Worker{Name: "repair-debt", Run: d.drainDebt})
	}
	if cfg.Watermark.Every() > 0 {
		d.workers = append(d.workers, Worker{Name: "watermark", Run: d.runWatermarks})
	}
	if err := d.addReplayers(); err != nil {
		return nil, err
	}
	if w := cfg.Hints.UnsignedWarning(); w != "" {
		d.log.Warn("repaird: WARNING: " + w)
	}
	return d, nil
}

// UniqueOwner makes a lease owner name unique to this process: the
// configured name (default the host name) with the process id and 4
// random bytes, so that two daemons given the same repair.owner never
// both hold one segment. A restarted daemon is another owner: a crashed
// one's segments are free again after repair.lease_ttl.
func UniqueOwner(name string) string {
	if name == "" {
		name, _ = os.Hostname()
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d-%s", name, os.Getpid(), hex.EncodeToString(b[:]))
}

// Addr returns the address Run listens on ("" before it does).
func (d *Daemon) Addr() string {
	if a := d.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Owner returns the name this daemon holds leases under.
func (d *Daemon) Owner() string { return d.owner }

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
	a := srv.addr()
	d.addr.Store(&a)
	workers := append([]Worker{{Name: "http", Run: srv.run}}, d.workers...)
	d.log.Info("repaird: serving", "listen", srv.addr(), "tls", srv.tls, "namespaces", d.cfg.Names(), "regions", len(d.cfg.Regions),
		"owner", d.owner, "control_api", d.token != "")
	if d.token != "" && !srv.tls && !loopback(srv.addr()) {
		d.log.Warn("repaird: the control API's bearer token crosses the network in clear text: set http.tls, or listen on localhost", "listen", srv.addr())
	}
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
	left := d.cfg.Names()
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

// schedule repairs one namespace: a full run is due at the start of the
// last complete run plus the namespace's interval (read back from the
// progress store, so a daemon that starts does not begin a run when the
// last one is recent), at once when an unfinished run waits to be resumed,
// sooner after a failure, and at once when the API asks (trigger). Inside
// the namespace's window only: outside it no run starts and a running one
// is paused. After an aborted run the next waits a whole interval. A
// progress location conflict (ErrProgressLocation) stops the daemon.
func (d *Daemon) schedule(ctx context.Context, ns string) error {
	var retryAt time.Time
	for {
		due := retryAt
		if due.IsZero() {
			due = d.nextDue(ctx, ns)
		}
		d.status.setNext(ns, due)
		manual, ok := d.sleepUntil(ctx, ns, due)
		if !ok {
			return nil
		}
		win := d.cfg.Schedule(ns).Window
		for !manual && !win.Open(d.now()) {
			next := win.Next(d.now())
			d.status.setNext(ns, next)
			d.log.Info("repaird: outside the repair window; waiting", "namespace", ns, "window", win.String(), "opens", next)
			if manual, ok = d.sleepUntil(ctx, ns, next); !ok {
				return nil
			}
		}
		select {
		case d.runSem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		err := d.runFull(ctx, ns, manual, true) // gives the slot back
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrProgressLocation) {
			return err
		}
		retryAt = time.Time{}
		switch {
		case errors.Is(err, repair.ErrAborted):
			// An operator stopped it: the next run waits a whole interval
			// (`repaird start` begins one sooner).
			retryAt = d.now().Add(d.cfg.Schedule(ns).Interval)
			d.log.Warn("repaird: run aborted; the next scheduled run waits a whole interval", "namespace", ns, "next", retryAt, "err", err)
		case err != nil && !errors.Is(err, errRunActive):
			d.log.Error("repaird: repair failed", "namespace", ns, "err", err)
			retryAt = d.now().Add(d.retry)
		}
	}
}

// sleepUntil waits until at, or until the API asks for a run of ns now
// (manual); ok is false when ctx ended.
func (d *Daemon) sleepUntil(ctx context.Context, ns string, at time.Time) (manual, ok bool) {
	t := time.NewTimer(max(at.Sub(d.now()), 0))
	defer t.Stop()
	select {
	case <-t.C:
		return false, true
	case <-d.triggers[ns]:
		return true, true
	case <-ctx.Done():
		return false, false
	}
}

// nextDue is when the namespace's next full run is due: now when an
// unfinished run waits or nothing is known, else the start of the last
// complete run plus the interval.
func (d *Daemon) nextDue(ctx context.Context, ns string) time.Time {
	now := d.now()
	store, err := d.progressStore(ctx)
	if err != nil {
		return now
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if l, ok := store.(repair.RunLister); ok {
		if _, unfinished, err := l.Current(bctx, ns); err != nil || unfinished {
			return now
		}
	}
	last, ok, err := store.LastFinished(bctx, ns)
	if err != nil || !ok {
		return now
	}
	due := last.StartedAt.Add(d.cfg.Schedule(ns).Interval)
	if due.Before(now) {
		return now
	}
	return due
}

// RunOnce connects (if needed) and runs one full repair of ns now,
// recording it in the status. Every region must record this daemon's
// progress region first (ProgressLocator.CheckAll): an error wrapping
// ErrProgressLocation says one records another.
func (d *Daemon) RunOnce(ctx context.Context, ns string) error {
	return d.runFull(ctx, ns, true, false)
}

// errRunActive reports a run started while this daemon already works on
// that kind of run of the namespace.
var errRunActive = errors.New("this daemon already works on a run of that kind of the namespace")

// runFull runs one full repair of ns; manual runs (RunOnce, the API) work
// whatever the window. slotted: the caller took the daemon's run slot
// (runSem) for it, which the run shares while paused (shareSlot) and
// gives back when it ends.
func (d *Daemon) runFull(ctx context.Context, ns string, manual, slotted bool) error {
	release := func() {}
	if slotted {
		release = func() { <-d.runSem }
	}
	defer func() { release() }()
	ar, err := d.runs.add(ns, repair.Scope{})
	if err != nil {
		return err
	}
	defer d.runs.remove(ar)
	if slotted {
		release = d.shareSlot(ar.ctl)
	}
	_, err = d.runRepair(ctx, ar, !manual)
	return err
}

// holdSlot is the hold (repair.Control) of a run waiting for the
// daemon's run slot.
const holdSlot = "run slot"

// shareSlot lets a run that holds the daemon's run slot give it up while
// anything else holds the run (an operator's pause, its window), so that
// a paused run keeps no other namespace from its repairs, and take it
// back before it works again: the run is held by holdSlot from before it
// gives the slot up until it has it again. done stops the sharing and
// gives the slot back if the run has it.
func (d *Daemon) shareSlot(ctl *repair.Control) (done func()) {
	stop, stopped := make(chan struct{}), make(chan struct{})
	have := true
	go func() {
		defer close(stopped)
		for {
			changed := ctl.Changed()
			held := slices.ContainsFunc(ctl.State().Holds, func(h string) bool { return h != holdSlot })
			switch {
			case held && have:
				ctl.Pause(holdSlot)
				<-d.runSem
				have = false
			case !held && !have:
				select {
				case d.runSem <- struct{}{}:
					have = true
					ctl.Resume(holdSlot)
				case <-changed: // held again meanwhile
				case <-stop:
					return
				}
				continue
			}
			select {
			case <-changed:
			case <-stop:
				return
			}
		}
	}()
	return func() {
		close(stop)
		<-stopped
		if have {
			<-d.runSem
		}
	}
}

// runRepair runs ar (a full or partial run of ar.ns) to its end. With
// windowed, the namespace's window pauses it outside.
func (d *Daemon) runRepair(ctx context.Context, ar *activeRun, windowed bool) (*repair.Report, error) {
	ns, full := ar.ns, !ar.scope.Partial()
	if full {
		d.status.begin(ns)
	}
	fail := func(err error) (*repair.Report, error) {
		ar.end(nil, err)
		if full {
			d.status.fail(ns, err)
		}
		return nil, err
	}
	regions, err := d.openRegions(ctx)
	if err != nil {
		return fail(err)
	}
	store, err := d.progressStore(ctx)
	if err == nil && d.locator != nil {
		err = d.locator.CheckAll(ctx)
	}
	if err != nil {
		return fail(err)
	}
	sched := d.cfg.Schedule(ns)
	opts := RepairOptions(d.cfg, ns)
	opts.Owner, opts.Progress, opts.Metrics, opts.Logger = d.owner, store, d.metrics, d.log
	opts.Scope, opts.Control = ar.scope, ar.ctl
	opts.OnRun = func(ri repair.RunInfo) {
		ar.begin(ri)
		if full {
			d.status.runBegun(ns, ri)
		}
	}
	opts.OnProgress = func(p repair.Progress) {
		ar.progress(p)
		if full {
			d.status.progress(ns, p)
		}
	}
	if windowed && sched.Window.IsSet() {
		stop := d.watchWindow(ar.ctl, sched.Window)
		defer stop()
	}
	r, err := repair.New(regions, opts)
	if err != nil {
		return fail(err)
	}
	rep, err := r.Run(ctx, ns)
	ar.end(rep, err)
	if full {
		warning := config.RetentionWarning(sched.Interval, rep.Retention)
		if cerr := config.CycleFits(sched.Interval, rep.Retention); cerr != nil {
			warning = cerr.Error()
			d.log.Error("repaird: "+warning, "namespace", ns)
		}
		d.status.finish(ns, rep, err, warning)
	}
	return rep, err
}

// watchWindow pauses ctl outside w (repair.HoldWindow) until stop is
// called.
func (d *Daemon) watchWindow(ctl *repair.Control, w config.Window) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if w.Open(d.now()) {
				ctl.Resume(repair.HoldWindow)
			} else {
				ctl.Pause(repair.HoldWindow)
			}
			t := time.NewTimer(max(w.Next(d.now()).Sub(d.now()), time.Second))
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// RepairOptions maps the configuration to the repair.Options of namespace
// ns: the repair section, with the namespace's own settings over it.
func RepairOptions(cfg *config.Config, ns string) repair.Options {
	r, s := cfg.Repair, cfg.Schedule(ns)
	return repair.Options{
		Segments: s.Segments, RowsPerSegment: s.RowsPerSegment, RowsPerSecond: s.RowsPerSecond,
		Intensity: s.Intensity, Parallelism: s.Parallelism, Concurrency: r.Concurrency,
		PageSize: r.PageSize, MaxAttempts: r.MaxAttempts, LeaseTTL: r.LeaseTTL, Owner: r.Owner,
		MaxRunAge: r.MaxRunAge, SegmentTimeout: r.SegmentTimeout, Conflicts: r.Conflicts.Options(),
		DisableFingerprints: r.DisableFingerprints,
	}
}
