package daemon

import (
	"context"
	"time"

	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/repair"
)

// IncrementalStatus is a namespace's last incremental run (docs/repair.md,
// "Incremental runs"), or why the last one due did not run.
type IncrementalStatus struct {
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// Since is the run's cutoff: the least published watermark. Below it
	// the watermark vouches for the regions; the run compared the rest.
	Since    time.Time `json:"since,omitzero"`
	Complete bool      `json:"complete"`
	// Segments and SegmentsUnchanged: the run's segments, and those whose
	// rows at or above Since agreed everywhere (nothing else read).
	Segments          int `json:"segments"`
	SegmentsUnchanged int `json:"segments_unchanged"`
	RowCounts
	Error string `json:"error,omitempty"`
	// Skipped says why the run due at StartedAt did not run.
	Skipped string `json:"skipped,omitempty"`
}

// Reasons an incremental run due does not run.
const (
	skipWindow    = "outside the repair window"
	skipFull      = "a full run of the namespace is under way in this daemon"
	skipWatermark = "no watermark is published for every region yet"
)

// runIncrementals is the "incremental/<ns>" worker: every
// Schedule(ns).Incremental it runs an incremental repair of ns.
func (d *Daemon) runIncrementals(ctx context.Context, ns string) error {
	for wait.Sleep(ctx, d.cfg.Schedule(ns).Incremental) {
		d.incrementalPass(ctx, ns)
	}
	return nil
}

// incrementalPass runs one incremental repair of ns from the cutoff, unless
// the namespace's window is closed, a full run of it is under way here
// (which compares everything anyway), or some region has no published
// watermark. It takes no run slot: its reads are the rows not yet settled
// everywhere, and a segment that differs is compared as a full run would.
func (d *Daemon) incrementalPass(ctx context.Context, ns string) {
	now := d.now()
	skip := func(reason string) {
		d.status.incremental(ns, &IncrementalStatus{StartedAt: now, Skipped: reason})
		d.log.Debug("repaird: incremental run skipped", "namespace", ns, "reason", reason)
	}
	if w := d.cfg.Schedule(ns).Window; !w.Open(now) {
		skip(skipWindow)
		return
	}
	if d.runs.get(ns, kindFull) != nil {
		skip(skipFull)
		return
	}
	since, ok := d.cutoff()
	if !ok {
		skip(skipWatermark)
		return
	}
	st := &IncrementalStatus{StartedAt: now, Since: time.UnixMicro(since).UTC()}
	rep, err := d.incrementalRun(ctx, ns, since)
	st.EndedAt = d.now()
	if rep != nil {
		st.Complete, st.Segments, st.SegmentsUnchanged = rep.Complete, rep.Segments, rep.SegmentsUnchanged
		st.RowsScanned, st.RowsDiffering, st.RowsWritten = rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten
	}
	if err != nil {
		st.Error = err.Error()
		if ctx.Err() == nil {
			d.log.Warn("repaird: incremental run failed", "namespace", ns, "since", st.Since, "err", err)
		}
	}
	d.status.incremental(ns, st)
}

// incrementalRun runs one incremental repair of ns with cutoff since.
func (d *Daemon) incrementalRun(ctx context.Context, ns string, since int64) (*repair.Report, error) {
	regions, err := d.openRegions(ctx)
	if err != nil {
		return nil, err
	}
	store, err := d.progressStore(ctx)
	if err != nil {
		return nil, err
	}
	opts := RepairOptions(d.cfg, ns)
	opts.Owner, opts.Progress, opts.Metrics, opts.Logger = d.owner, store, d.metrics, d.log
	opts.Since = since
	r, err := repair.New(regions, opts)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx, ns)
}

// cutoff is the least of the watermarks this daemon knows published for
// its regions (µs): every region holds every write a store acknowledged
// below it. false while some region has none.
func (d *Daemon) cutoff() (int64, bool) {
	regions := d.regionNames()
	d.wm.mu.Lock()
	defer d.wm.mu.Unlock()
	var least int64
	for _, r := range regions {
		v := d.wm.last[r]
		if v <= 0 {
			return 0, false
		}
		if least == 0 || v < least {
			least = v
		}
	}
	return least, least > 0
}

// incremental records the namespace's last incremental run (or skip).
func (b *statusBoard) incremental(name string, st *IncrementalStatus) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ns(name).LastIncremental = st
}
