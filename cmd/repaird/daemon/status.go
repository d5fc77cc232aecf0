package daemon

import (
	"sync"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/repair"
)

// Status is what /status returns.
type Status struct {
	StartedAt  time.Time                   `json:"started_at"`
	Stopping   bool                        `json:"stopping"`
	Regions    map[string]RegionStatus     `json:"regions"`
	Namespaces map[string]*NamespaceStatus `json:"namespaces"`
	// Replaying lists the regions whose hints this daemon is replaying now.
	Replaying map[string]bool `json:"replaying,omitempty"`
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
	Retention           string    `json:"retention,omitempty"`
	// Warning is set when the interval is not comfortably shorter than the
	// tombstone retention.
	Warning string `json:"warning,omitempty"`
}

// RunStatus summarises one run.
type RunStatus struct {
	RunID          string    `json:"run_id,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	EndedAt        time.Time `json:"ended_at,omitzero"`
	Complete       bool      `json:"complete"`
	Segments       int       `json:"segments"`
	SegmentsDone   int       `json:"segments_done"`
	SegmentsFailed int       `json:"segments_failed"`
	RowsScanned    int64     `json:"rows_scanned"`
	RowsDiffering  int64     `json:"rows_differing"`
	RowsWritten    int64     `json:"rows_written"`
	Errors         []string  `json:"errors,omitempty"`
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

type statusBoard struct {
	mu       sync.Mutex
	interval time.Duration
	s        Status
}

func newStatusBoard(cfg *config.Config) *statusBoard {
	b := &statusBoard{interval: cfg.Repair.Interval, s: Status{StartedAt: time.Now(), Namespaces: map[string]*NamespaceStatus{}}}
	for _, ns := range cfg.Namespaces {
		b.s.Namespaces[ns] = &NamespaceStatus{Interval: cfg.Repair.Interval.String()}
	}
	return b
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
		out.Namespaces[k] = &c
	}
	return out
}

// Status returns the daemon's current status.
func (d *Daemon) Status() Status {
	s := d.status.snapshot()
	s.Regions = d.sessions.State()
	return s
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
