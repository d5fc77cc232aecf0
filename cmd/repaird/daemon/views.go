package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// RegionView is one region's counts in a RunView.
type RegionView struct {
	Region string `json:"region"`
	RowCounts
}

// RunView is one run as the API lists it.
type RunView struct {
	Namespace string `json:"namespace"`
	RunID     string `json:"run_id"`
	// Kind is "full" or "partial" (Scope says which part).
	Kind  string `json:"kind"`
	Scope string `json:"scope,omitempty"`
	// State is running, pausing (paused, row writes still finishing),
	// paused, aborted, unfinished (no process seen working on it lately)
	// or finished.
	State string `json:"state"`
	// Holds names what pauses it here: operator, window, or run slot
	// (resumed, it waits for the daemon's one slot for scheduled runs).
	Holds []string `json:"holds,omitempty"`
	// Here is true when this daemon works on the run.
	Here bool `json:"here"`
	// RunCounts add up the segments done, by every process.
	RunCounts
	// Regions are this daemon's counts per region in the run.
	Regions    []RegionView `json:"regions,omitempty"`
	StartedAt  time.Time    `json:"started_at"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
	// ETA is an estimate of the end, from the pace of the segments done.
	ETA           time.Time `json:"eta,omitzero"`
	Intensity     *float64  `json:"intensity,omitempty"`
	RowsPerSecond *float64  `json:"rows_per_second,omitempty"`
	// ControlledBy and ControlledAt say who last steered the run.
	ControlledBy string    `json:"controlled_by,omitempty"`
	ControlledAt time.Time `json:"controlled_at,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// runView describes run of ns: from the store (segments done, counts,
// directive), and from this daemon when it works on it.
func (d *Daemon) runView(ctx context.Context, store repair.ProgressStore, ns string, run repair.RunInfo, current bool) RunView {
	kind := kindFull
	if run.Namespace == repair.PartialKey(ns) {
		kind = kindPartial
	}
	v := RunView{Namespace: ns, RunID: run.ID, Kind: kind, RunCounts: RunCounts{Segments: run.Segments}, StartedAt: run.StartedAt, FinishedAt: run.FinishedAt}
	var lastDone time.Time
	if recs, err := store.Segments(ctx, run); err == nil {
		for _, r := range recs {
			if r.Done {
				v.SegmentsDone++
				v.RowsScanned += r.RowsScanned
				v.RowsDiffering += r.RowsDiffering
				v.RowsWritten += r.RowsWritten
				if r.FinishedAt.After(lastDone) {
					lastDone = r.FinishedAt
				}
			}
		}
	} else {
		v.Error = err.Error()
	}
	var dir repair.Directive
	if cs, ok := store.(repair.ControlStore); ok {
		if dd, err := cs.Directive(ctx, run); err == nil {
			dir = dd
		}
	}
	v.Scope, v.Intensity, v.RowsPerSecond, v.ControlledBy, v.ControlledAt = dir.Scope, dir.Intensity, dir.RowsPerSecond, dir.By, dir.At
	if !current {
		v.State = "finished"
		if run.FinishedAt.IsZero() {
			v.State = "abandoned"
			if dir.State == repair.StateAborted {
				v.State = "aborted"
			}
		}
		if a := d.runs.byID(ns, run.ID); a != nil && v.State == "finished" && !a.isOver() {
			// Finished in the progress store, but this daemon has not
			// recorded the run's result yet, and would refuse a start as
			// a run in progress: it is still running here, for a moment.
			v.State, v.Here = "running", true
		}
		return v
	}
	a := d.runs.byID(ns, run.ID)
	switch {
	case dir.State == repair.StateAborted:
		v.State = "aborted"
	case a != nil:
		v.Here = true
		st := a.ctl.State()
		v.Holds = st.Holds
		if len(v.Holds) > 1 {
			// The run slot is given up while something else holds the
			// run (shareSlot): it is news only once it alone holds it.
			v.Holds = slices.DeleteFunc(slices.Clone(v.Holds), func(h string) bool { return h == holdSlot })
		}
		switch {
		case st.Holding:
			v.State = "paused"
		case st.Paused:
			v.State = "pausing"
		default:
			v.State = "running"
		}
		_, p, _ := a.snapshot()
		for _, r := range p.Regions {
			v.Regions = append(v.Regions, RegionView{Region: r.Region, RowCounts: RowCounts{r.RowsScanned, r.RowsDiffering, r.RowsWritten}})
		}
		if p.SegmentsDone > v.SegmentsDone {
			v.SegmentsDone = p.SegmentsDone
		}
	case dir.State == repair.StatePaused:
		v.State = "paused"
	case time.Since(lastDone) < 2*d.leaseTTL():
		v.State = "running"
	default:
		v.State = "unfinished"
	}
	if left := v.Segments - v.SegmentsDone; v.SegmentsDone > 0 && left > 0 && (v.State == "running") {
		elapsed := time.Since(run.StartedAt)
		v.ETA = time.Now().Add(time.Duration(float64(elapsed) / float64(v.SegmentsDone) * float64(left))).Truncate(time.Second)
	}
	return v
}

func (d *Daemon) leaseTTL() time.Duration {
	if d.cfg.Repair.LeaseTTL > 0 {
		return d.cfg.Repair.LeaseTTL
	}
	return repair.DefaultLeaseTTL
}

// listRuns lists the runs of ns: its unfinished full and partial runs,
// then the history, newest first (at most limit runs of each kind).
func (d *Daemon) listRuns(ctx context.Context, ns string, limit int) ([]RunView, error) {
	store, err := d.progressStore(ctx)
	if err != nil {
		return nil, err
	}
	lister, ok := store.(repair.RunLister)
	if !ok {
		return nil, errors.New("the progress store cannot list runs")
	}
	var out []RunView
	for _, key := range []string{ns, repair.PartialKey(ns)} {
		cur, hasCur, err := lister.Current(ctx, key)
		if err != nil {
			return nil, err
		}
		if hasCur {
			cur.Namespace = key
			out = append(out, d.runView(ctx, store, ns, cur, true))
		}
		hist, err := lister.Runs(ctx, key, limit+1)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, h := range hist {
			if hasCur && h.ID == cur.ID || n >= limit {
				continue
			}
			n++
			h.Namespace = key
			out = append(out, d.runView(ctx, store, ns, h, false))
		}
	}
	// Unfinished runs first, then the newest.
	ended := func(v RunView) bool { return v.State == "finished" || v.State == "abandoned" || v.State == "aborted" }
	slices.SortStableFunc(out, func(a, b RunView) int {
		if ended(a) != ended(b) {
			if ended(b) {
				return -1
			}
			return 1
		}
		return b.StartedAt.Compare(a.StartedAt)
	})
	return out, nil
}

// errNoRun, errRunEnded, errBadRequest and errConflict classify API
// failures.
var (
	errNoRun      = errors.New("no such run")
	errRunEnded   = errors.New("the run has ended")
	errBadRequest = errors.New("bad request")
	errConflict   = errors.New("conflict")
)

// findRun returns the unfinished run id of ns ("current": the unfinished
// full run).
func (d *Daemon) findRun(ctx context.Context, ns, id string) (repair.ProgressStore, repair.RunInfo, error) {
	if !slices.Contains(d.cfg.Names(), ns) {
		return nil, repair.RunInfo{}, fmt.Errorf("%w: namespace %q is not configured (namespaces: %v)", errNoRun, ns, d.cfg.Names())
	}
	store, err := d.progressStore(ctx)
	if err != nil {
		return nil, repair.RunInfo{}, err
	}
	lister, ok := store.(repair.RunLister)
	if !ok {
		return nil, repair.RunInfo{}, errors.New("the progress store cannot list runs")
	}
	for _, key := range []string{ns, repair.PartialKey(ns)} {
		cur, has, err := lister.Current(ctx, key)
		if err != nil {
			return nil, repair.RunInfo{}, err
		}
		cur.Namespace = key
		if has && (cur.ID == id || id == "current" && key == ns) {
			return store, cur, nil
		}
		if id == "current" {
			continue
		}
		hist, err := lister.Runs(ctx, key, 100)
		if err != nil {
			return nil, repair.RunInfo{}, err
		}
		for _, h := range hist {
			if h.ID == id {
				return nil, repair.RunInfo{}, fmt.Errorf("%w: run %s of %q is no longer current (finished, aborted or abandoned)", errRunEnded, id, ns)
			}
		}
	}
	if id == "current" {
		return nil, repair.RunInfo{}, fmt.Errorf("%w: namespace %q has no unfinished full run", errNoRun, ns)
	}
	return nil, repair.RunInfo{}, fmt.Errorf("%w: namespace %q has no run %q", errNoRun, ns, id)
}
