package repair

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Run control: pause, resume, abort and retune a run while it works.
//
// A [Control] steers the runs of one Repairer in this process. The
// Repairer consults it between segments, at every page of a digest scan
// (every few hundred rows) and before every row it writes: while the
// Control is paused nothing new is scanned or written (the segments being
// repaired keep their leases, renewed, and resume where they stopped);
// once it is aborted the run stops, releases its leases and is abandoned;
// its intensity and rows per second replace the Options' at once.
//
// Processes that work on one run obey one [Directive], kept by the
// progress store when it is a [ControlStore] (CQLProgress and MemProgress
// are): every Options.ControlPoll the Repairer reads its run's directive
// and applies it to its Control, so a pause recorded by any process stops
// the run in every process within about that interval.

// RunState is what an operator asked of a run.
type RunState string

// The states of a run a Directive can ask for.
const (
	// StateRunning is a run that works (the default; a resume).
	StateRunning RunState = "running"
	// StatePaused is a run that holds: no row scanned or written.
	StatePaused RunState = "paused"
	// StateAborted is a run that stops for good: its leases are released
	// and it is abandoned, so the next run of the namespace starts fresh.
	StateAborted RunState = "aborted"
)

// ErrAborted is wrapped by the error of a run that was aborted (by
// Control.Abort or a Directive with StateAborted).
var ErrAborted = errors.New("repair run aborted")

// ErrScopeMismatch reports a partial run (Options.Scope) that cannot start
// because an unfinished partial run of the namespace has another scope:
// abort that run first, or repeat its scope to resume it.
var ErrScopeMismatch = errors.New("another partial run of the namespace is unfinished")

// Directive is what an operator asked of one run: its state and, when
// set, the intensity and rows per second that replace the configured
// ones. A ControlStore keeps one per run; SetDirective writes only the
// fields that are set, so concurrent requests (a pause here, a new rate
// there) do not undo each other.
type Directive struct {
	// State is the state asked for; "" leaves it unchanged (running).
	State RunState `json:"state,omitempty"`
	// Intensity, when set, replaces Options.Intensity: in (0, 1].
	Intensity *float64 `json:"intensity,omitempty"`
	// RowsPerSecond, when set, replaces Options.RowsPerSecond (0 means
	// unlimited).
	RowsPerSecond *float64 `json:"rows_per_second,omitempty"`
	// Scope is the run's scope (Scope.String) for a partial run, recorded
	// when the run begins; "" for a full run.
	Scope string `json:"scope,omitempty"`
	// By names who asked last, At when.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at,omitzero"`
}

// Validate checks the values a directive sets.
func (d Directive) Validate() error {
	switch d.State {
	case "", StateRunning, StatePaused, StateAborted:
	default:
		return fmt.Errorf("repair: unknown run state %q (want %s, %s or %s)", d.State, StateRunning, StatePaused, StateAborted)
	}
	if d.Intensity != nil && (*d.Intensity <= 0 || *d.Intensity > 1) {
		return fmt.Errorf("repair: intensity must be in (0, 1] (got %v)", *d.Intensity)
	}
	if d.RowsPerSecond != nil && *d.RowsPerSecond < 0 {
		return fmt.Errorf("repair: rows_per_second must not be negative (got %v; 0 means unlimited)", *d.RowsPerSecond)
	}
	return nil
}

// ControlStore is implemented by a ProgressStore that keeps runs'
// directives, so that every process working on a run obeys one.
type ControlStore interface {
	// Directive returns the run's directive (the zero Directive if none
	// was recorded).
	Directive(ctx context.Context, run RunInfo) (Directive, error)
	// SetDirective records the fields of d that are set (State, Intensity,
	// RowsPerSecond, Scope; By and At always).
	SetDirective(ctx context.Context, run RunInfo, d Directive) error
}

// RunLister is implemented by a ProgressStore that can list runs without
// creating one.
type RunLister interface {
	// Current returns the namespace's unfinished run, if there is one.
	Current(ctx context.Context, namespace string) (RunInfo, bool, error)
	// Runs returns the namespace's most recent runs (finished or not),
	// newest first, at most limit.
	Runs(ctx context.Context, namespace string, limit int) ([]RunInfo, error)
}

// Hold reasons of a Control's pause.
const (
	// HoldOperator is a pause an operator asked for (Directive or
	// Control.Pause from an API).
	HoldOperator = "operator"
	// HoldWindow is a pause because the run is outside its time window.
	HoldWindow = "window"
)

// Control steers the runs of a Repairer (Options.Control): pause and
// resume (for named reasons: a run works only when nothing holds it),
// abort, and the intensity and rows per second. It is safe for concurrent
// use; the zero value is not: use NewControl.
type Control struct {
	mu        sync.Mutex
	holds     map[string]bool
	aborted   error
	intensity *float64
	rps       *float64
	active    int           // row writes under way
	changed   chan struct{} // closed and replaced at every change
}

// NewControl returns a Control that lets runs work.
func NewControl() *Control {
	return &Control{holds: map[string]bool{}, changed: make(chan struct{})}
}

// notify wakes the waiters; c.mu is held.
func (c *Control) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Pause holds the run for reason (HoldOperator, HoldWindow, …) until
// Resume(reason).
func (c *Control) Pause(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holds[reason] {
		c.holds[reason] = true
		c.notify()
	}
}

// Resume lifts the hold of reason; the run works again when no other
// reason holds it.
func (c *Control) Resume(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds[reason] {
		delete(c.holds, reason)
		c.notify()
	}
}

// Abort stops the run for good; cause (nil: none) is wrapped in its
// error with ErrAborted. Later calls do nothing.
func (c *Control) Abort(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted != nil {
		return
	}
	if cause == nil {
		c.aborted = ErrAborted
	} else {
		c.aborted = fmt.Errorf("%w: %w", ErrAborted, cause)
	}
	c.notify()
}

// SetIntensity replaces the run's intensity, in (0, 1].
func (c *Control) SetIntensity(v float64) error { return c.tune(Directive{Intensity: &v}) }

// SetRowsPerSecond replaces the run's scan rate (0 = unlimited).
func (c *Control) SetRowsPerSecond(v float64) error { return c.tune(Directive{RowsPerSecond: &v}) }

// tune takes the intensity and rate d sets, once they are valid.
func (c *Control) tune(d Directive) error {
	if err := d.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.Intensity != nil {
		c.intensity = d.Intensity
	}
	if d.RowsPerSecond != nil {
		c.rps = d.RowsPerSecond
	}
	c.notify()
	return nil
}

// Apply obeys a directive: the operator's hold, abort, and the tuning it
// sets. A directive without a state (none recorded) leaves the state as
// it is.
func (c *Control) Apply(d Directive) {
	switch d.State {
	case "":
	case StatePaused:
		c.Pause(HoldOperator)
	case StateAborted:
		by := ""
		if d.By != "" {
			by = " by " + d.By
		}
		c.Abort(fmt.Errorf("asked%s at %s", by, d.At.UTC().Format(time.RFC3339)))
	case StateRunning:
		c.Resume(HoldOperator)
	}
	if d.Intensity != nil {
		_ = c.SetIntensity(*d.Intensity)
	}
	if d.RowsPerSecond != nil {
		_ = c.SetRowsPerSecond(*d.RowsPerSecond)
	}
}

// ControlState is a snapshot of a Control.
type ControlState struct {
	// Paused is true while a reason holds the run; Holds names them.
	Paused bool     `json:"paused"`
	Holds  []string `json:"holds,omitempty"`
	// Holding is true when the run is paused and no row write is under
	// way: from then on nothing is written until it is resumed.
	Holding bool `json:"holding"`
	// Aborted is true once the run was aborted.
	Aborted bool `json:"aborted"`
	// Intensity and RowsPerSecond are the overrides, if any.
	Intensity     *float64 `json:"intensity,omitempty"`
	RowsPerSecond *float64 `json:"rows_per_second,omitempty"`
}

// State returns a snapshot.
func (c *Control) State() ControlState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ControlState{Paused: len(c.holds) > 0, Aborted: c.aborted != nil, Intensity: c.intensity, RowsPerSecond: c.rps}
	for h := range c.holds {
		s.Holds = append(s.Holds, h)
	}
	sort.Strings(s.Holds)
	s.Holding = s.Paused && c.active == 0
	return s
}

// Changed returns a channel closed at the next change.
func (c *Control) Changed() <-chan struct{} {
	ch, _ := c.watch()
	return ch
}

// Err returns the abort error, or nil.
func (c *Control) Err() error {
	_, err := c.watch()
	return err
}

// watch returns the channel of the next change and the abort error.
func (c *Control) watch() (<-chan struct{}, error) {
	c.mu.Lock()
	ch, err := c.changed, c.aborted
	c.mu.Unlock()
	return ch, err
}

// Wait returns at once while the run may work; while it is paused it
// blocks until it is resumed, aborted (the abort error, wrapping
// ErrAborted) or ctx ends (ctx's error).
func (c *Control) Wait(ctx context.Context) error {
	for {
		c.mu.Lock()
		aborted, paused, ch := c.aborted, len(c.holds) > 0, c.changed
		c.mu.Unlock()
		switch {
		case aborted != nil:
			return aborted
		case !paused:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// beginWrite waits as Wait and counts a row write under way; endWrite
// ends it. State.Holding is false while writes are under way.
func (c *Control) beginWrite(ctx context.Context) error {
	for {
		if err := c.Wait(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		if c.aborted == nil && len(c.holds) == 0 {
			c.active++
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
	}
}

func (c *Control) endWrite() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
	if c.active == 0 && len(c.holds) > 0 {
		c.notify()
	}
}

// tuning returns the intensity and rows per second in force.
func (c *Control) tuning(opts *Options) (intensity, rps float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	intensity, rps = opts.Intensity, opts.RowsPerSecond
	if c.intensity != nil {
		intensity = *c.intensity
	}
	if c.rps != nil {
		rps = *c.rps
	}
	return intensity, rps
}

// Scope limits a run to part of a namespace: a token range, some of the
// Repairer's regions, or both. A run with a scope is partial: it is not a
// full repair (it never moves the last full repair), it has its own
// progress (PartialKey) apart from the namespace's full runs, and only one
// partial run of a namespace is unfinished at a time.
type Scope struct {
	// Range, when set, is the token range repaired: (Start, End], split
	// into segments of about the width of a full run's.
	Range *TokenRange `json:"range,omitempty"`
	// Regions, when set, are the regions compared and written (at least
	// two of the Repairer's): the run makes them identical, reading no
	// other region — "repair the region that was down" from one that was
	// not.
	Regions []string `json:"regions,omitempty"`
}

// Partial reports whether the scope limits the run.
func (s Scope) Partial() bool { return s.Range != nil || len(s.Regions) > 0 }

// String describes the scope, e.g. "range (-100, 100] regions a,c"; ""
// for a full run.
func (s Scope) String() string {
	out := ""
	if s.Range != nil {
		open := "("
		if s.Range.IncludesStart() {
			open = "["
		}
		out = fmt.Sprintf("range %s%d, %d]", open, s.Range.Start, s.Range.End)
	}
	if len(s.Regions) > 0 {
		if out != "" {
			out += " "
		}
		regions := slices.Clone(s.Regions)
		slices.Sort(regions)
		out += "regions " + joinNames(regions)
	}
	return out
}

func joinNames(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ","
		}
		s += n
	}
	return s
}

// PartialSuffix ends the progress key of a namespace's partial runs
// (PartialKey): namespace names cannot contain it.
const PartialSuffix = "~partial"

// PartialKey is the progress key (RunInfo.Namespace) of a namespace's
// partial runs.
func PartialKey(namespace string) string { return namespace + PartialSuffix }

// IncrementalSuffix ends the progress key of a namespace's incremental
// runs (IncrementalKey): namespace names cannot contain it.
const IncrementalSuffix = "~incremental"

// IncrementalKey is the progress key (RunInfo.Namespace) of a namespace's
// incremental runs (Options.Since): they resume and share segments among
// themselves, apart from the full runs whose completion they never
// record.
func IncrementalKey(namespace string) string { return namespace + IncrementalSuffix }

// validate checks the scope against the Repairer's regions.
func (s Scope) validate(regions []Region) error {
	if s.Range != nil && s.Range.End <= s.Range.Start {
		return fmt.Errorf("repair: scope range (%d, %d] is empty: its end must be greater than its start", s.Range.Start, s.Range.End)
	}
	if len(s.Regions) == 0 {
		return nil
	}
	if len(s.Regions) < 2 {
		return fmt.Errorf("%w: the scope names %d region (%v); name at least two, the one to repair and one to repair it from", ErrTooFewRegions, len(s.Regions), s.Regions)
	}
	seen := map[string]bool{}
	for _, name := range s.Regions {
		if seen[name] {
			return fmt.Errorf("repair: the scope names region %q twice", name)
		}
		seen[name] = true
		if !slices.ContainsFunc(regions, func(r Region) bool { return r.Name == name }) {
			return fmt.Errorf("repair: the scope names region %q, which is not one of the regions %v", name, regionNamesOf(regions))
		}
	}
	return nil
}

func regionNamesOf(regions []Region) []string {
	out := make([]string, len(regions))
	for i, r := range regions {
		out[i] = r.Name
	}
	return out
}
