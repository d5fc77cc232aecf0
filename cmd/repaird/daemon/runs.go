package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// Kinds of run.
const (
	kindFull    = "full"
	kindPartial = "partial"
)

func kindOf(sc repair.Scope) string {
	if sc.Partial() {
		return kindPartial
	}
	return kindFull
}

// activeRun is a run this daemon works on.
type activeRun struct {
	ns      string
	scope   repair.Scope
	ctl     *repair.Control
	started time.Time
	begun   chan struct{} // closed once the run is joined or created, or ended
	over    chan struct{} // closed once the run's result is recorded
	ended   chan struct{} // closed once the run is over and has left the board

	mu    sync.Mutex
	info  repair.RunInfo
	prog  repair.Progress
	rep   *repair.Report
	err   error
	once  sync.Once
	oonce sync.Once
	eonce sync.Once
}

func (a *activeRun) begin(ri repair.RunInfo) {
	a.mu.Lock()
	a.info = ri
	a.mu.Unlock()
	a.once.Do(func() { close(a.begun) })
}

func (a *activeRun) progress(p repair.Progress) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prog = p
}

func (a *activeRun) end(rep *repair.Report, err error) {
	a.mu.Lock()
	a.rep, a.err = rep, err
	a.mu.Unlock()
	a.once.Do(func() { close(a.begun) })
	a.oonce.Do(func() { close(a.over) })
}

// isOver reports whether the run's result is recorded (over is closed).
func (a *activeRun) isOver() bool {
	select {
	case <-a.over:
		return true
	default:
		return false
	}
}

func (a *activeRun) snapshot() (repair.RunInfo, repair.Progress, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info, a.prog, a.err
}

// runBoard holds the runs this daemon works on, one per namespace and
// kind, and the goroutines of the partial runs started through the API.
type runBoard struct {
	mu   sync.Mutex
	runs map[string]*activeRun
	ctx  context.Context // the daemon's, once it runs
	wg   sync.WaitGroup
}

func newRunBoard() *runBoard { return &runBoard{runs: map[string]*activeRun{}} }

func boardKey(ns, kind string) string { return ns + "|" + kind }

// add registers a new run of ns with scope; errRunActive when one of that
// kind is under way.
func (b *runBoard) add(ns string, sc repair.Scope) (*activeRun, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := boardKey(ns, kindOf(sc))
	if old := b.runs[k]; old != nil {
		info, _, _ := old.snapshot()
		return nil, fmt.Errorf("%w: %s run %s of %q", errRunActive, kindOf(sc), info.ID, ns)
	}
	a := &activeRun{ns: ns, scope: sc, ctl: repair.NewControl(), started: time.Now(), begun: make(chan struct{}), over: make(chan struct{}), ended: make(chan struct{})}
	b.runs[k] = a
	return a, nil
}

func (b *runBoard) remove(a *activeRun) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := boardKey(a.ns, kindOf(a.scope))
	if b.runs[k] == a {
		delete(b.runs, k)
	}
	// Closed here, not in end: whoever waits for the end (an abort)
	// then finds the board free for the next run.
	a.once.Do(func() { close(a.begun) })
	a.oonce.Do(func() { close(a.over) })
	a.eonce.Do(func() { close(a.ended) })
}

func (b *runBoard) get(ns, kind string) *activeRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[boardKey(ns, kind)]
}

// byID returns the active run with that ID, if this daemon works on it.
func (b *runBoard) byID(ns, id string) *activeRun {
	for _, kind := range []string{kindFull, kindPartial} {
		if a := b.get(ns, kind); a != nil {
			if info, _, _ := a.snapshot(); info.ID == id {
				return a
			}
		}
	}
	return nil
}

// wait is the worker that owns the partial runs' goroutines: it gives
// them the daemon's context and, at shutdown, waits for them.
func (b *runBoard) wait(ctx context.Context) error {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
	<-ctx.Done()
	b.wg.Wait()
	return nil
}

// goRun runs f under the daemon's context; false when the daemon does
// not run (yet, or any more).
func (b *runBoard) goRun(f func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == nil || b.ctx.Err() != nil {
		return false
	}
	ctx := b.ctx
	b.wg.Go(func() { f(ctx) })
	return true
}

// holdWait bounds how long a pause or an abort waits for this daemon's
// part of the run to hold or end before answering.
const holdWait = 10 * time.Second

// resumeWait is how long a resume waits for the run to have the run slot
// back: longer, another namespace's run has it.
const resumeWait = time.Second

// control applies d to the run id of ns: recorded in the progress store
// (so that every process working on the run obeys it within its poll
// interval), and at once to this daemon's part of it. A pause waits until
// this daemon writes no more rows, an abort until its part has ended (at
// most holdWait each).
func (d *Daemon) control(ctx context.Context, ns, id string, dir repair.Directive) (RunView, error) {
	if err := dir.Validate(); err != nil {
		return RunView{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	store, run, err := d.findRun(ctx, ns, id)
	if err != nil {
		return RunView{}, err
	}
	cs, ok := store.(repair.ControlStore)
	if !ok {
		return RunView{}, errors.New("the progress store keeps no directives")
	}
	dir.By, dir.At = d.owner, time.Now().UTC().Truncate(time.Millisecond)
	if err := cs.SetDirective(ctx, run, dir); err != nil {
		return RunView{}, fmt.Errorf("record the directive: %w", err)
	}
	if dir.State == repair.StateAborted {
		if err := store.Abandon(ctx, run); err != nil {
			return RunView{}, fmt.Errorf("abandon the run: %w", err)
		}
	}
	a := d.runs.byID(ns, run.ID)
	if a != nil {
		a.ctl.Apply(dir)
		wait := holdWait
		if dir.State == repair.StateRunning {
			wait = resumeWait
		}
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			changed := a.ctl.Changed() // before the state: a change between them is not missed
			st := a.ctl.State()
			// A pause answers once nothing is written; a resume once the
			// run has the run slot back (shareSlot), unless another run
			// has it: then the view says "run slot".
			waiting := dir.State == repair.StatePaused && !st.Holding ||
				dir.State == repair.StateRunning && slices.Equal(st.Holds, []string{holdSlot})
			if waiting {
				select {
				case <-changed:
					continue
				case <-deadline.C:
				case <-ctx.Done():
				}
			}
			break
		}
		if dir.State == repair.StateAborted {
			select {
			case <-a.ended:
			case <-deadline.C:
			case <-ctx.Done():
			}
		}
	}
	d.log.Info("repaird: run control", "namespace", ns, "run", run.ID, "state", dir.State, "intensity", dir.Intensity,
		"rows_per_second", dir.RowsPerSecond, "here", a != nil)
	return d.runView(ctx, store, ns, run, dir.State != repair.StateAborted), nil
}

// StartRequest is the body of POST /v1/namespaces/{ns}/runs: empty for a
// full run now, or a token range and/or regions for a partial run.
type StartRequest struct {
	// TokenRange limits the run to the tokens t with start < t <= end.
	TokenRange *struct {
		Start *int64 `json:"start"`
		End   *int64 `json:"end"`
	} `json:"token_range,omitempty"`
	// Regions limits the run to these regions (at least two).
	Regions []string `json:"regions,omitempty"`
}

// startWait bounds how long a start waits for the run to begin.
const startWait = 15 * time.Second

// start starts a run of ns now: a full run through the namespace's
// schedule (which joins the unfinished run, if any), or a partial one of
// its own. It waits for the run to begin (startWait at most).
func (d *Daemon) start(ctx context.Context, ns string, req StartRequest) (RunView, bool, error) {
	if _, ok := d.cfg.Namespace(ns); !ok {
		return RunView{}, false, fmt.Errorf("%w: namespace %q is not configured (namespaces: %v)", errNoRun, ns, d.cfg.Names())
	}
	var sc repair.Scope
	if tr := req.TokenRange; tr != nil {
		if tr.Start == nil || tr.End == nil {
			return RunView{}, false, fmt.Errorf("%w: token_range needs start and end (the run repairs start < token <= end)", errBadRequest)
		}
		if *tr.End <= *tr.Start {
			return RunView{}, false, fmt.Errorf("%w: token_range (%d, %d] is empty: end must be greater than start", errBadRequest, *tr.Start, *tr.End)
		}
		sc.Range = &repair.TokenRange{Start: *tr.Start, End: *tr.End}
	}
	if len(req.Regions) > 0 {
		sc.Regions = req.Regions
		if len(req.Regions) < 2 {
			return RunView{}, false, fmt.Errorf("%w: regions names %d region; name at least two: the one to repair and one to repair it from", errBadRequest, len(req.Regions))
		}
		for i, r := range req.Regions {
			if _, ok := d.cfg.Region(r); !ok {
				return RunView{}, false, fmt.Errorf("%w: region %q is not configured", errBadRequest, r)
			}
			if slices.Contains(req.Regions[:i], r) {
				return RunView{}, false, fmt.Errorf("%w: regions: %q is listed twice; name each region once", errBadRequest, r)
			}
		}
	}
	var a *activeRun
	if sc.Partial() {
		var err error
		if a, err = d.runs.add(ns, sc); err != nil {
			return RunView{}, false, fmt.Errorf("%w: %v", errConflict, err)
		}
		if !d.runs.goRun(func(ctx context.Context) {
			defer d.runs.remove(a)
			_, _ = d.runRepair(ctx, a, false)
		}) {
			d.runs.remove(a)
			return RunView{}, false, errors.New("the daemon is not running")
		}
	} else {
		if a := d.runs.get(ns, kindFull); a != nil {
			select {
			case <-a.over:
				// Ending this very moment: the schedule takes the trigger
				// once it is done.
			default:
				info, _, _ := a.snapshot()
				return RunView{}, false, fmt.Errorf("%w: this daemon is already running full run %s of %q", errConflict, info.ID, ns)
			}
		}
		select {
		case d.triggers[ns] <- struct{}{}:
		default:
		}
		// The schedule picks the trigger up; wait for its run (not one
		// that is ending).
		deadline := time.Now().Add(startWait)
		fresh := func() *activeRun {
			a := d.runs.get(ns, kindFull)
			if a != nil {
				select {
				case <-a.over:
					return nil
				default:
				}
			}
			return a
		}
		for a = fresh(); a == nil; a = fresh() {
			if time.Now().After(deadline) {
				return RunView{Namespace: ns, Kind: kindFull, State: "queued"}, false, nil
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return RunView{}, false, ctx.Err()
			}
		}
	}
	select {
	case <-a.begun:
	case <-time.After(startWait):
		return RunView{Namespace: ns, Kind: kindOf(sc), Scope: sc.String(), State: "starting"}, false, nil
	case <-ctx.Done():
		return RunView{}, false, ctx.Err()
	}
	info, _, err := a.snapshot()
	if info.ID == "" && err != nil {
		return RunView{}, false, err
	}
	store, err := d.progressStore(ctx)
	if err != nil {
		return RunView{}, false, err
	}
	return d.runView(ctx, store, ns, info, true), true, nil
}
