package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/repair"
)

// Status is what /status returns.
type Status struct {
	StartedAt time.Time `json:"started_at"`
	Stopping  bool      `json:"stopping"`
	// Owner is the name this daemon holds leases under; Control is true
	// when the control API is enabled (a bearer token is configured).
	Owner      string                      `json:"owner,omitempty"`
	Control    bool                        `json:"control"`
	Regions    map[string]RegionStatus     `json:"regions"`
	Namespaces map[string]*NamespaceStatus `json:"namespaces"`
	// Replaying lists the regions whose hints this daemon is replaying now.
	Replaying map[string]bool `json:"replaying,omitempty"`
	// Hints is the hint replay of every region in hints.regions: lag,
	// oldest hint's age, rate, dead letters.
	Hints []HintView `json:"hints,omitempty"`
	// Debt is the repair debt in the home region's keyspace per region
	// that lacks the keys: pending keys, oldest age, overflows.
	Debt []DebtView `json:"debt,omitempty"`
	// Watermarks is each region's convergence watermark (docs/design.md,
	// "The convergence watermark"), when the daemon computes them.
	Watermarks []WatermarkView `json:"watermarks,omitempty"`
	// Warnings need the operator: unsigned hints accepted, a last full
	// repair close to the retention.
	Warnings []string `json:"warnings,omitempty"`
}

// RegionStatus is one region's connection state.
type RegionStatus struct {
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}

// NamespaceStatus is one namespace's repair state.
type NamespaceStatus struct {
	Running bool `json:"running"`
	// Current is the run in progress, LastRun the last one that ended.
	Current *RunStatus `json:"current,omitempty"`
	LastRun *RunStatus `json:"last_run,omitempty"`
	// LastFullRepair is when the last complete run STARTED: every delete
	// made before it has reached every region (a row scanned early in a
	// long run may have missed later deletes, so the finish time proves
	// nothing more). It is read back from the progress store at startup.
	LastFullRepair time.Time `json:"last_full_repair,omitzero"`
	// LastFullRepairRun and LastFullRepairEnded are that run's ID and
	// finish time.
	LastFullRepairRun   string    `json:"last_full_repair_run,omitempty"`
	LastFullRepairEnded time.Time `json:"last_full_repair_ended,omitzero"`
	NextRun             time.Time `json:"next_run,omitzero"`
	Interval            string    `json:"interval"`
	// Window is when runs may work ("01:00-06:00" UTC; "" always).
	Window    string `json:"window,omitempty"`
	Retention string `json:"retention,omitempty"`
	// LastFullRepairAge is the age of the last full repair, and
	// BudgetUsed that age divided by the tombstone retention (a warning
	// past 0.9).
	LastFullRepairAge string  `json:"last_full_repair_age,omitempty"`
	BudgetUsed        float64 `json:"budget_used,omitempty"`
	// Warning is set when the interval is not comfortably shorter than the
	// tombstone retention, or the last full repair is close to it.
	Warning string `json:"warning,omitempty"`
	// Incremental is the time between incremental runs ("" none), and
	// LastIncremental the last one due: run, or skipped and why.
	Incremental     string             `json:"incremental,omitempty"`
	LastIncremental *IncrementalStatus `json:"last_incremental,omitempty"`
	// retention is the tables' retention read by the last run.
	retention time.Duration
}

// RunStatus summarises one run.
type RunStatus struct {
	RunID     string    `json:"run_id,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	Complete  bool      `json:"complete"`
	RunCounts
	SegmentsFailed int      `json:"segments_failed"`
	Errors         []string `json:"errors,omitempty"`
	// RunStarted is when the repair run was created (earlier than
	// StartedAt when it was resumed); Resumed says this call resumed it.
	RunStarted time.Time `json:"run_started,omitzero"`
	Resumed    bool      `json:"resumed,omitempty"`
	// AbandonedRun is the unfinished run abandoned for this one (too old).
	AbandonedRun string `json:"abandoned_run,omitempty"`
	// Warnings did not stop the run but need the operator: a table comment
	// whose retention cannot be read, an abandoned run.
	Warnings []string `json:"warnings,omitempty"`
}

// RunCounts are a run's segments and segments done, and its rows.
type RunCounts struct {
	Segments     int `json:"segments"`
	SegmentsDone int `json:"segments_done"`
	RowCounts
}

// RowCounts are the rows a run scanned, found differing and wrote.
type RowCounts struct {
	RowsScanned   int64 `json:"rows_scanned"`
	RowsDiffering int64 `json:"rows_differing"`
	RowsWritten   int64 `json:"rows_written"`
}

type statusBoard struct {
	mu       sync.Mutex
	interval time.Duration
	s        Status
}

func newStatusBoard(cfg *config.Config) *statusBoard {
	b := &statusBoard{interval: cfg.Repair.Interval, s: Status{StartedAt: time.Now(), Namespaces: map[string]*NamespaceStatus{}}}
	for _, ns := range cfg.Names() {
		sc := cfg.Schedule(ns)
		b.s.Namespaces[ns] = &NamespaceStatus{Interval: sc.Interval.String(), Window: sc.Window.String()}
		if sc.Incremental > 0 {
			b.s.Namespaces[ns].Incremental = sc.Incremental.String()
		}
	}
	if w := cfg.Hints.UnsignedWarning(); w != "" {
		b.s.Warnings = append(b.s.Warnings, w)
	}
	return b
}

// runBegun records the ID of the run the namespace's current run joined
// or created.
func (b *statusBoard) runBegun(name string, ri repair.RunInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.ns(name)
	if n.Current != nil {
		n.Current.RunID, n.Current.Segments, n.Current.RunStarted, n.Current.Resumed = ri.ID, ri.Segments, ri.StartedAt, ri.Resumed
	}
}

// lastFull returns the namespace's last full repair and the retention its
// tables recorded at the last run (0 if unknown).
func (b *statusBoard) lastFull(name string) (time.Time, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.ns(name)
	return n.LastFullRepair, n.retention
}

func (b *statusBoard) startedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.s.StartedAt
}

func (b *statusBoard) ns(name string) *NamespaceStatus {
	n := b.s.Namespaces[name]
	if n == nil {
		n = &NamespaceStatus{Interval: b.interval.String()}
		b.s.Namespaces[name] = n
	}
	return n
}

func (b *statusBoard) begin(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.ns(name)
	n.Running = true
	n.Current = &RunStatus{StartedAt: time.Now()}
}

func (b *statusBoard) progress(name string, p repair.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.ns(name)
	if n.Current == nil {
		n.Current = &RunStatus{StartedAt: time.Now()}
	}
	c := n.Current
	c.RunID, c.Segments, c.SegmentsDone, c.SegmentsFailed = p.RunID, p.Segments, p.SegmentsDone, p.SegmentsFail
	c.RowsScanned, c.RowsDiffering, c.RowsWritten = p.RowsScanned, p.RowsDiffering, p.RowsWritten
	if p.Err != nil && len(c.Errors) < 20 {
		c.Errors = append(c.Errors, "segment "+p.Last.String()+": "+p.Err.Error())
	}
}

func (b *statusBoard) fail(name string, err error) {
	b.finish(name, nil, err, "")
}

func (b *statusBoard) finish(name string, rep *repair.Report, err error, warning string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.ns(name)
	c := n.Current
	if c == nil {
		c = &RunStatus{StartedAt: time.Now()}
	}
	c.EndedAt = time.Now()
	if rep != nil {
		c.RunID, c.Segments, c.SegmentsDone, c.SegmentsFailed = rep.RunID, rep.Segments, rep.SegmentsDone, rep.SegmentsFailed
		c.RowsScanned, c.RowsDiffering, c.RowsWritten, c.Complete = rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten, rep.Complete
		c.RunStarted, c.Resumed, c.AbandonedRun = rep.RunStarted, rep.Resumed, rep.AbandonedRun
		c.Warnings = append([]string(nil), rep.Warnings...)
		if rep.Retention > 0 {
			n.Retention = rep.Retention.String()
			n.retention = rep.Retention
			n.Warning = warning
		}
		if rep.Complete && !rep.DryRun {
			n.fullRepair(rep.RunID, rep.RunStarted, c.EndedAt)
		}
	}
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
	}
	n.Running, n.Current, n.LastRun = false, nil, c
}

// fullRepair records a complete run that started at started, unless a
// later one is already recorded.
func (n *NamespaceStatus) fullRepair(runID string, started, ended time.Time) {
	if started.IsZero() || !started.After(n.LastFullRepair) {
		return
	}
	n.LastFullRepair, n.LastFullRepairRun, n.LastFullRepairEnded = started, runID, ended
}

// restored records the last complete run read from the progress store.
func (b *statusBoard) restored(name string, run repair.RunInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ns(name).fullRepair(run.ID, run.StartedAt, run.FinishedAt)
}

func (b *statusBoard) setNext(name string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ns(name).NextRun = at
}

func (b *statusBoard) setStopping() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Stopping = true
}

// snapshot returns a deep copy.
func (b *statusBoard) snapshot() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.s
	out.Warnings = append([]string(nil), b.s.Warnings...)
	if b.s.Replaying != nil {
		out.Replaying = make(map[string]bool, len(b.s.Replaying))
		for k, v := range b.s.Replaying {
			out.Replaying[k] = v
		}
	}
	out.Namespaces = make(map[string]*NamespaceStatus, len(b.s.Namespaces))
	for k, v := range b.s.Namespaces {
		c := *v
		if v.Current != nil {
			cur := *v.Current
			cur.Errors = append([]string(nil), v.Current.Errors...)
			cur.Warnings = append([]string(nil), v.Current.Warnings...)
			c.Current = &cur
		}
		if v.LastRun != nil {
			last := *v.LastRun
			last.Errors = append([]string(nil), v.LastRun.Errors...)
			last.Warnings = append([]string(nil), v.LastRun.Warnings...)
			c.LastRun = &last
		}
		if v.LastIncremental != nil {
			inc := *v.LastIncremental
			c.LastIncremental = &inc
		}
		out.Namespaces[k] = &c
	}
	return out
}

// Status returns the daemon's current status.
func (d *Daemon) Status() Status {
	s := d.status.snapshot()
	s.Regions = d.sessions.State()
	s.Owner, s.Control = d.owner, d.token != ""
	if len(d.cfg.Hints.Brokers) > 0 {
		s.Hints = d.hintViews()
	}
	if debtInterval(d.cfg) > 0 && len(d.cfg.Regions) >= 2 {
		s.Debt = d.debt.views(d.cfg, d.now())
	}
	if d.cfg.Watermark.Every() > 0 {
		s.Watermarks = d.wm.snapshot(d.regionNames())
	}
	for name, n := range s.Namespaces {
		b := d.budget(name)
		if b.known {
			n.LastFullRepairAge = b.age.Round(time.Second).String()
			n.BudgetUsed = b.ratio
		}
		if b.overdue {
			w := budgetWarning(name, b)
			n.Warning = w
			s.Warnings = append(s.Warnings, w)
		}
	}
	return s
}

// budgetWarning says that the namespace's last full repair is close to
// its tombstone retention.
func budgetWarning(ns string, b budgetState) string {
	if !b.known {
		return fmt.Sprintf("namespace %q: no full repair is recorded and the daemon has run for more than %.0f%% of the tombstone retention %v: deleted rows may resurrect; check why runs do not complete",
			ns, 100*BudgetWarning, b.retention)
	}
	return fmt.Sprintf("namespace %q: the last full repair started %v ago, %.0f%% of the tombstone retention %v: a full repair must complete before the retention passes or deleted rows may resurrect",
		ns, b.age.Round(time.Minute), 100*b.ratio, b.retention)
}

// guardRetention logs, every minute it holds and at most every 6 hours
// per namespace, a warning when a namespace's last full repair passed 90%
// of its tombstone retention (also in /status and
// tidemark_repaird_full_repair_overdue).
func (d *Daemon) guardRetention(ctx context.Context) error {
	warned := map[string]time.Time{}
	for {
		for _, ns := range d.cfg.Names() {
			b := d.budget(ns)
			if !b.overdue {
				delete(warned, ns)
				continue
			}
			if time.Since(warned[ns]) > 6*time.Hour {
				warned[ns] = time.Now()
				d.log.Warn("repaird: WARNING: "+budgetWarning(ns, b), "namespace", ns)
			}
		}
		if !wait.Sleep(ctx, time.Minute) {
			return nil
		}
	}
}

// replaying records whether region's hint replayer runs.
func (d *Daemon) replaying(region string, on bool) {
	b := d.status
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s.Replaying == nil {
		b.s.Replaying = map[string]bool{}
	}
	b.s.Replaying[region] = on
}
