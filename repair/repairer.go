package repair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
)

// Progress is a snapshot of a run, passed to Options.OnProgress.
type Progress struct {
	// Namespace and RunID identify the run.
	Namespace, RunID string
	// Segments is the run's segment count; SegmentsDone counts those done
	// (by anyone, including before this call) and SegmentsFail those this
	// call gave up on.
	Segments, SegmentsDone, SegmentsFail int
	// RowsScanned, RowsDiffering and RowsWritten count this call's work.
	RowsScanned, RowsDiffering, RowsWritten int64
	// Regions are this call's counts per region, in configuration order.
	Regions []RegionStats
	// Last is the segment just attempted, Outcome what became of it, and
	// Err its error, if any.
	Last    TokenRange
	Outcome Outcome
	Err     error
}

// Outcome is what became of one segment attempt.
type Outcome string

// The outcomes of a segment attempt (Progress.Outcome).
const (
	// OutcomeRepaired: this process repaired the segment.
	OutcomeRepaired Outcome = "repaired"
	// OutcomeDoneElsewhere: another process had finished it.
	OutcomeDoneElsewhere Outcome = "done by another process"
	// OutcomeLeased: another process holds its lease; skipped for now and
	// asked again later (the done count does not move).
	OutcomeLeased Outcome = "skipped: leased by another process"
	// OutcomeRetry: the attempt failed; the segment is tried again.
	OutcomeRetry Outcome = "failed, will retry"
	// OutcomeFailed: the attempt failed and the segment is given up for
	// this run.
	OutcomeFailed Outcome = "failed"
	// OutcomeStopped: the run was interrupted or aborted meanwhile.
	OutcomeStopped Outcome = "stopped"
)

// RegionStats are one region's counts in a Report.
type RegionStats struct {
	Region string
	// RowsScanned is rows read by digest scans.
	RowsScanned int64
	// RowsDiffering is rows where the region lacked the winning version.
	RowsDiffering int64
	// RowsWritten is rows repair wrote to the region.
	RowsWritten int64
	// BytesRead is payload bytes read from the region (digest scans and
	// value fetches: column values and their 4-byte lengths).
	BytesRead int64
	// ValueFetches is point reads of values from the region.
	ValueFetches int64
	// FingerprintQueries is aggregate queries (RangeFingerprint) sent to
	// the region; their answers count in BytesRead.
	FingerprintQueries int64
	// FingerprintsBackfilled is rows of the region given the fingerprint
	// they lacked (Backfiller); the backfill's reads count in BytesRead.
	FingerprintsBackfilled int64
}

// PairStat counts the rows on which two regions differ (dry runs).
type PairStat struct {
	// A and B are the regions' names.
	A, B string
	// Rows is the number of rows on which they differ.
	Rows int64
}

// Report is what one Run did. Counts cover the segments this call
// repaired (including failed attempts), not segments done earlier.
type Report struct {
	Namespace string
	RunID     string
	DryRun    bool
	// RunStarted is when the run was created: earlier than Started when the
	// run was resumed. For a complete run it is the time of the full
	// repair: every delete made before it has reached every region.
	RunStarted time.Time
	// Resumed is true when this call joined an unfinished run instead of
	// creating one.
	Resumed bool
	// AbandonedRun is the ID of the unfinished run this call abandoned (too
	// old, or Options.Fresh), if any.
	AbandonedRun string
	// Retention is the shortest tombstone retention recorded by the regions'
	// tables (0 if none is recorded).
	Retention time.Duration
	// Segments is the number of segments of the run.
	Segments int
	// SegmentsDone counts the run's finished segments, by anyone.
	SegmentsDone int
	// SegmentsResumed counts segments that were already done when this call
	// began (a resumed run).
	SegmentsResumed int
	// SegmentsRepaired counts segments this call finished.
	SegmentsRepaired int
	// SegmentsFailed counts segments this call gave up on.
	SegmentsFailed int
	// RowsScanned is the number of distinct rows merged (by digest scans).
	RowsScanned int64
	// SegmentsInSync counts the segments (or pieces) whose fingerprints
	// were equal in every region: nothing of them was scanned.
	SegmentsInSync int
	// RowsInSync counts the rows of ranges found in sync by their
	// fingerprints (each range counted once, as one region holds it): not
	// scanned, not in RowsScanned.
	RowsInSync int64
	// FingerprintsBackfilled counts rows given the fingerprint they lacked
	// (written before the fp column existed), in every region: the ranges
	// holding them are in sync by fingerprints from the next run on.
	FingerprintsBackfilled int64
	// SegmentsScannedOutright counts the segments (or pieces) digest-scanned
	// without asking their fingerprints, because the segments before them
	// were mostly scanned anyway (dense divergence: see docs/repair.md,
	// "Fingerprints").
	SegmentsScannedOutright int
	// SegmentsUnchanged counts, in an incremental run, the segments
	// whose rows at or above Since agree in every region (also counted
	// in SegmentsInSync, their rows in RowsInSync): nothing else of them
	// was read.
	SegmentsUnchanged int
	// IndexedFailures counts, in an incremental run, the segments whose
	// indexed aggregate failed in some region (other than an index not
	// built yet): they were compared in full.
	IndexedFailures int
	// SegmentsComparedOutright counts, in an incremental run, the
	// segments compared in full without the indexed question, because
	// most of the segments asked before them differed.
	SegmentsComparedOutright int
	// RangesScanned counts the digest scans (one per region each) of
	// segments, pieces or the sub-ranges whose fingerprints differed.
	RangesScanned int64
	// RowsDiffering is the number of rows not identical in every region.
	RowsDiffering int64
	// RowsWritten is the number of rows written (to one region or more).
	// Without concurrent writes or expiring rows it equals RowsDiffering.
	RowsWritten int64
	// RowsSkipped is differing rows not written because the winner had
	// expired (at the scan, with an older version live elsewhere, or
	// before it was written) or changed during the repair (the next run
	// sees them again).
	RowsSkipped int64
	// Ties counts rows whose newest versions had equal timestamps and
	// expiries and could not be told apart by digests — values with
	// different digests, or deletion markers beside values (values were
	// fetched to decide).
	Ties int64
	// Conflicts counts the losing versions found conflicting with their
	// row's winner (Options.Conflicts): written by another writer within
	// the conflict window. Each is in the conflict log unless the log's
	// rate limit or a failed write dropped it (see the metrics).
	Conflicts int64
	// Regions holds per-region counts, in configuration order.
	Regions []RegionStats
	// Pairs counts differing rows per pair of regions.
	Pairs []PairStat
	// Samples describes some differing rows.
	Samples []string
	// Complete is true when every segment of the run is done.
	Complete bool
	// Started is when this call began; Duration how long it took.
	Started  time.Time
	Duration time.Duration
	// Partial is true for a run limited by Options.Scope (Scope describes
	// it): a partial run is not a full repair.
	Partial bool
	Scope   string
	// Since is Options.Since: > 0 for an incremental run, which is not a
	// full repair either.
	Since int64
	// Aborted is true when the run was aborted (Control, Directive).
	Aborted bool
	// SegmentsSplit counts the segments this call split into pieces after
	// repeated failures.
	SegmentsSplit int
	// Errors lists the segments this call gave up on.
	Errors []*SegmentError
	// Warnings are problems that did not stop the run but need the
	// operator: a table comment whose retention cannot be read (the
	// retention checks then fall back to defaults), an abandoned run.
	Warnings []string
}

// Repairer runs anti-entropy repair over a fixed set of regions.
type Repairer struct {
	regions []Region
	opts    Options
	lim     *rate.Limiter // nil: no limit
	log     *slog.Logger
	// conflicts records the conflicts repair sees; nil: none.
	conflicts *conflicts.Log
	// indexWarn logs once per run that the version index cannot answer.
	indexWarn *sync.Once
}

// New returns a Repairer for regions (at least two, distinct names, each
// with a Reader, and a Writer unless opts.DryRun).
func New(regions []Region, opts Options) (*Repairer, error) {
	if len(regions) < 2 {
		return nil, fmt.Errorf("%w (got %d)", ErrTooFewRegions, len(regions))
	}
	seen := map[string]bool{}
	for _, r := range regions {
		if r.Name == "" || seen[r.Name] {
			return nil, fmt.Errorf("repair: region names must be unique and non-empty (got %q twice or empty)", r.Name)
		}
		seen[r.Name] = true
		if r.Reader == nil || (r.Writer == nil && !opts.DryRun) {
			return nil, fmt.Errorf("repair: region %q needs a Reader and, unless DryRun, a Writer", r.Name)
		}
	}
	if bad := opts.Conflicts.WithDefaults().Validate(); len(bad) > 0 {
		return nil, fmt.Errorf("repair: Options.Conflicts: %s", strings.Join(bad, "; "))
	}
	opts.setDefaults()
	r := newRepairer(regions, opts)
	if opts.Since < 0 {
		return nil, fmt.Errorf("%w: Options.Since %d is negative (0 is a full run)", ErrIncrementalUnsupported, opts.Since)
	}
	if opts.Since > 0 && (opts.DisableFingerprints || r.fingerprinters() == nil || r.incrementals() == nil) {
		return nil, fmt.Errorf("%w: an incremental run (Options.Since) needs fingerprints enabled and every region's reader an IncrementalFingerprinter", ErrIncrementalUnsupported)
	}
	if opts.Since > 0 && opts.Scope.Partial() {
		return nil, fmt.Errorf("%w: an incremental run (Options.Since) cannot be limited by a Scope", ErrIncrementalUnsupported)
	}
	return r, nil
}

func newRepairer(regions []Region, opts Options) *Repairer {
	lim := newLimiter(opts.RowsPerSecond, len(regions))
	if lim == nil {
		lim = rate.NewLimiter(rate.Inf, 1) // retuned by the Control
	}
	r := &Repairer{regions: append([]Region(nil), regions...), opts: opts, lim: lim, log: opts.Logger, indexWarn: new(sync.Once)}
	r.conflicts = r.conflictLog()
	return r
}

// accum gathers a run's counts from concurrent segment workers.
type accum struct {
	mu      sync.Mutex
	rep     *Report
	pairs   []int64
	samples int
	density density
	// changed records, in an incremental run, which segments' indexed
	// aggregates differed (share 1) or agreed (0): once most differ, the
	// next segments are compared in full without asking, one in
	// densityProbeEvery still asking.
	changed density
}

func (a *accum) do(f func(r *Report)) {
	a.mu.Lock()
	f(a.rep)
	a.mu.Unlock()
}

// Describe checks every region concurrently and returns the shortest
// retention recorded, or the errors (one per failing region, joined).
func (r *Repairer) Describe(ctx context.Context, namespace string) (time.Duration, error) {
	ret, _, err := r.describe(ctx, namespace)
	return ret, err
}

// describe is Describe with the warnings about unreadable retentions.
func (r *Repairer) describe(ctx context.Context, namespace string) (time.Duration, []string, error) {
	if err := schema.ValidateName("namespace", namespace); err != nil {
		return 0, nil, err
	}
	errs := make([]error, len(r.regions))
	infos := make([]TableInfo, len(r.regions))
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		wg.Go(func() {
			info, err := reg.Reader.Describe(ctx, namespace)
			if err != nil {
				errs[i] = &RegionError{Region: reg.Name, Op: "describe", Err: err}
			}
			infos[i] = info
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, err
	}
	var ret time.Duration
	var warnings []string
	for i, in := range infos {
		if in.Retention > 0 && (ret == 0 || in.Retention < ret) {
			ret = in.Retention
		}
		if in.RetentionErr != nil {
			warnings = append(warnings, fmt.Sprintf("region %q: %v; the tombstone retention is unknown there, so the repair interval is not checked against it: fix the table comment",
				r.regions[i].Name, in.RetentionErr))
		}
	}
	return ret, warnings, nil
}

// maxRunAge is how old an unfinished run may be and still be resumed.
func (r *Repairer) maxRunAge(retention time.Duration) time.Duration {
	if r.opts.MaxRunAge > 0 {
		return r.opts.MaxRunAge
	}
	if retention <= 0 {
		retention = schema.DefaultRetention
	}
	return retention / 2
}

// begin joins or creates the namespace's run, abandoning an unfinished run
// that is too old (or any, with Fresh).
func (r *Repairer) begin(ctx context.Context, store ProgressStore, rep *Report, namespace, key string, retention time.Duration) (RunInfo, error) {
	segments := r.segmentCount(ctx, namespace)
	if rg := r.opts.Scope.Range; rg != nil {
		whole := TokenRange{Start: rg.Start, End: rg.End}
		segments = len(SplitRange(whole, RangeSegments(whole, segments)))
	}
	run, err := store.Begin(ctx, key, segments)
	if err != nil || !run.Resumed || r.opts.DryRun {
		return run, err
	}
	var why string
	age, maxAge := r.opts.Now().Sub(run.StartedAt), r.maxRunAge(retention)
	switch {
	case r.opts.Fresh:
		why = "a fresh run was requested"
	case !run.StartedAt.IsZero() && age > maxAge:
		why = fmt.Sprintf("it started %v ago, more than %v (repair.max_run_age, default half the tombstone retention): finishing it would not prove that recent deletes reached every region",
			age.Round(time.Second), maxAge)
	default:
		return run, nil
	}
	if err := store.Abandon(ctx, run); err != nil {
		return RunInfo{}, fmt.Errorf("abandon run %s: %w", run.ID, err)
	}
	old := run
	if run, err = store.Begin(ctx, key, segments); err != nil {
		return RunInfo{}, err
	}
	rep.AbandonedRun = old.ID
	msg := fmt.Sprintf("abandoned unfinished run %s of %q (started %s, %d segments) because %s; started run %s",
		old.ID, namespace, old.StartedAt.UTC().Format(time.RFC3339), old.Segments, why, run.ID)
	rep.Warnings = append(rep.Warnings, msg)
	r.log.Warn("repair: "+msg, "namespace", namespace, "abandoned", old.ID, "run", run.ID)
	return run, nil
}

func (r *Repairer) segmentCount(ctx context.Context, namespace string) int {
	if r.opts.RowsPerSegment <= 0 {
		return r.opts.Segments
	}
	var est int64
	for _, reg := range r.regions {
		e, ok := reg.Reader.(Estimator)
		if !ok {
			continue
		}
		n, err := e.EstimateRows(ctx, namespace)
		if err != nil {
			r.log.Warn("repair: no size estimate", "region", reg.Name, "err", err)
			continue
		}
		est = max(est, n)
	}
	return SegmentCount(est, r.opts.RowsPerSegment, r.opts.Segments)
}

// ErrSegmentLeased reports a segment that another owner kept leased, without
// finishing it, for longer than Options.LeaseWait.
var ErrSegmentLeased = errors.New("segment leased by another owner for too long")

// LeaseInspector is implemented by a ProgressStore that can tell who holds a
// segment's lease. It is optional: Run uses it only to name the owner in the
// error of a segment leased for longer than Options.LeaseWait.
type LeaseInspector interface {
	// LeaseOwner returns the owner of the segment's live lease, or false if
	// the segment is not leased.
	LeaseOwner(ctx context.Context, run RunInfo, segment int) (owner string, ok bool, err error)
}

type segTask struct {
	seg       TokenRange
	attempts  int
	notBefore time.Time
	// backoff spaces the retries of a failing segment; made at its first
	// failure. Only Run's loop uses it.
	backoff *wait.Backoff
	// leasedSince is when the segment was first refused by another owner's
	// lease since its last own attempt; zero when it is not being refused.
	leasedSince time.Time
	// pieces are what is left of a segment split after repeated failures
	// (nil: the whole segment); failures counts consecutive failed
	// attempts that finished no piece.
	pieces   []piece
	failures int
}

// piece is part of a split segment, at its depth of splitting.
type piece struct {
	TokenRange
	depth int
}

// leaseHeldError describes a segment refused for longer than LeaseWait,
// naming the lease's owner when the store can tell.
func (r *Repairer) leaseHeldError(ctx context.Context, store ProgressStore, run RunInfo, seg TokenRange, waited time.Duration) error {
	owner := "unknown owner"
	if li, ok := store.(LeaseInspector); ok {
		lctx, cancel := context.WithTimeout(ctx, bookkeepingTimeout)
		who, held, err := li.LeaseOwner(lctx, run, seg.Index)
		cancel()
		switch {
		case err != nil:
			owner = fmt.Sprintf("unknown owner (lookup failed: %v)", err)
		case held:
			owner = fmt.Sprintf("owner %q", who)
		}
	}
	return fmt.Errorf("%w: segment %s of run %s held by %s for %v without being finished, more than the lease wait %v (Options.LeaseWait, default 10 × LeaseTTL): check that process",
		ErrSegmentLeased, seg, run.ID, owner, waited.Round(time.Millisecond), r.opts.LeaseWait)
}

type segOutcome struct {
	task   segTask
	done   bool // finished (by us, or found done)
	leased bool // someone else holds the lease
	err    error
	dur    time.Duration
	// pieces are the pieces left when the attempt failed; progressed says
	// it finished at least one piece of a split segment.
	pieces     []piece
	progressed bool
}

// Run repairs one namespace: it joins the namespace's unfinished run (or
// starts one) and repairs the segments not yet done, sharing them with other
// processes through leases. It returns when every segment is done, when the
// segments left failed MaxAttempts times (ErrIncomplete; a segment that
// another owner keeps leased for longer than Options.LeaseWait counts as
// failing, and one that a region refused fails after that one attempt, see
// RegionError.Refused), or when ctx ends (the progress made is kept and a
// later Run resumes). The Report is never nil after the namespace was
// checked.
func (r *Repairer) Run(ctx context.Context, namespace string) (*Report, error) {
	sc := r.opts.Scope
	if sc.Partial() {
		if err := sc.validate(r.regions); err != nil {
			return &Report{Namespace: namespace, Partial: true, Scope: sc.String(), Started: time.Now()}, err
		}
		if len(sc.Regions) > 0 {
			var sub []Region
			for _, reg := range r.regions {
				if slices.Contains(sc.Regions, reg.Name) {
					sub = append(sub, reg)
				}
			}
			return newRepairer(sub, r.opts).run(ctx, namespace)
		}
	}
	return r.run(ctx, namespace)
}

// stopCause is why a run stopped early: its abort, or ctx's end; nil
// while it goes on.
func stopCause(ctx context.Context, ctl *Control) error {
	if err := ctl.Err(); err != nil {
		return err
	}
	return ctx.Err()
}

func (r *Repairer) run(parent context.Context, namespace string) (*Report, error) {
	started := time.Now()
	sc := r.opts.Scope
	rep := &Report{Namespace: namespace, DryRun: r.opts.DryRun, Started: started, Partial: sc.Partial(), Scope: sc.String(), Since: r.opts.Since}
	for _, reg := range r.regions {
		rep.Regions = append(rep.Regions, RegionStats{Region: reg.Name})
	}
	defer func() { rep.Duration = time.Since(started) }()
	ret, warnings, err := r.describe(parent, namespace)
	if err != nil {
		return rep, err
	}
	rep.Retention, rep.Warnings = ret, warnings
	if err := r.upgrade(parent, namespace); err != nil {
		return rep, fmt.Errorf("repair: upgrade the tables: %w", err)
	}
	if err := r.ensureIndexes(parent, namespace); err != nil {
		return rep, fmt.Errorf("repair: the version index: %w", err)
	}
	for _, w := range warnings {
		r.log.Warn("repair: "+w, "namespace", namespace)
	}
	store := r.opts.Progress
	if store == nil || r.opts.DryRun {
		store = NewMemProgress()
	}
	key := namespace
	switch {
	case sc.Partial():
		key = PartialKey(namespace)
	case r.opts.Since > 0:
		key = IncrementalKey(namespace)
	}
	run, err := r.begin(parent, store, rep, namespace, key, ret)
	if err != nil {
		return rep, fmt.Errorf("repair: begin run: %w", err)
	}
	rep.RunID, rep.Segments, rep.RunStarted, rep.Resumed = run.ID, run.Segments, run.StartedAt, run.Resumed
	cs, _ := store.(ControlStore)
	if r.opts.DryRun {
		cs = nil
	}
	ctl := r.opts.Control
	if ctl == nil {
		ctl = NewControl()
	}
	if cs != nil {
		if err := r.checkScope(parent, cs, run, sc); err != nil {
			return rep, err
		}
		// Obey the run's directive before the first segment: a run
		// paused (or aborted) elsewhere holds here too.
		bctx, cancel := context.WithTimeout(parent, bookkeepingTimeout)
		d, err := cs.Directive(bctx, run)
		cancel()
		if err != nil {
			r.log.Warn("repair: cannot read the run's directive yet", "namespace", namespace, "run", run.ID, "err", err)
		} else {
			ctl.Apply(d)
		}
	}
	if r.opts.OnRun != nil {
		r.opts.OnRun(run)
	}
	full := !sc.Partial() && !r.opts.DryRun && r.opts.Since == 0
	kind := "full"
	switch {
	case sc.Partial():
		kind = "partial"
	case r.opts.Since > 0:
		kind = "incremental"
	}
	r.opts.Metrics.runStarted(namespace, kind)
	ctx, cancelRun := context.WithCancelCause(parent)
	defer cancelRun(nil)
	steerDone := make(chan struct{})
	stopSteer := make(chan struct{})
	go r.steer(ctx, cancelRun, ctl, cs, run, stopSteer, steerDone)
	defer func() { close(stopSteer); <-steerDone }()

	recs, err := store.Segments(ctx, run)
	if err != nil {
		r.opts.Metrics.runFinished(namespace, kind, "failed")
		return rep, fmt.Errorf("repair: read progress of run %s: %w", run.ID, err)
	}
	var queue []segTask
	for _, s := range r.runSegments(run) {
		if recs[s.Index].Done {
			rep.SegmentsResumed++
			continue
		}
		queue = append(queue, segTask{seg: s})
	}
	rep.SegmentsDone = rep.SegmentsResumed
	if full {
		r.opts.Metrics.setSegments(namespace, rep.Segments, rep.SegmentsDone)
	}
	if run.Resumed {
		r.log.Info("repair: resuming run", "namespace", namespace, "run", run.ID, "started", run.StartedAt,
			"done", rep.SegmentsResumed, "segments", run.Segments)
	}
	n := len(r.regions)
	acc := &accum{rep: rep, pairs: make([]int64, n*(n-1)/2)}
	defer func() {
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if c := acc.pairs[PairIndex(i, j, n)]; c > 0 {
					rep.Pairs = append(rep.Pairs, PairStat{A: r.regions[i].Name, B: r.regions[j].Name, Rows: c})
				}
			}
		}
	}()

	results := make(chan segOutcome)
	inflight := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for len(queue) > 0 || inflight > 0 {
		// The channel of the next change is taken before the state is
		// read: a resume between the two would otherwise be missed, and a
		// run read as paused would sleep until some later change (a
		// resume only signals when it lifts a hold) — for good.
		changed := ctl.Changed()
		now := time.Now()
		var wake time.Time
		paused := ctl.State().Paused
		if paused {
			// Time paused is not time another owner kept a lease.
			for k := range queue {
				queue[k].leasedSince = time.Time{}
			}
		}
		for k := 0; !paused && k < len(queue) && inflight < r.opts.Parallelism && stopCause(ctx, ctl) == nil; {
			t := queue[k]
			if t.notBefore.After(now) {
				if wake.IsZero() || t.notBefore.Before(wake) {
					wake = t.notBefore
				}
				k++
				continue
			}
			queue = append(queue[:k], queue[k+1:]...)
			inflight++
			wg.Go(func() { results <- r.attempt(ctx, store, run, namespace, t, acc, ctl) })
		}
		if inflight == 0 {
			if stopCause(ctx, ctl) != nil {
				break
			}
			var tick <-chan time.Time
			if !paused && !wake.IsZero() {
				timer.Reset(time.Until(wake))
				tick = timer.C
			}
			select {
			case <-tick:
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		var o segOutcome
		select {
		case o = <-results:
		case <-changed:
			continue
		}
		inflight--
		t := o.task
		stopped := stopCause(ctx, ctl) != nil
		switch {
		case !o.leased || o.done:
			t.leasedSince = time.Time{}
		case stopped:
		case t.leasedSince.IsZero():
			t.leasedSince = time.Now()
		default:
			if waited := time.Since(t.leasedSince); waited > r.opts.LeaseWait {
				// Refused for too long: count it as a failed attempt.
				o.leased = false
				o.err = r.leaseHeldError(ctx, store, run, t.seg, waited)
			}
		}
		var outcome Outcome
		switch {
		case o.done:
			rep.SegmentsDone++
			outcome = OutcomeDoneElsewhere
			if o.err == nil && !o.leased {
				rep.SegmentsRepaired++
				outcome = OutcomeRepaired
			}
			if full {
				r.opts.Metrics.setSegments(namespace, rep.Segments, rep.SegmentsDone)
			}
		case stopped:
			// interrupted or aborted: leave the segment for a later run
			outcome = OutcomeStopped
		case o.leased:
			outcome = OutcomeLeased
			t.notBefore = time.Now().Add(min(r.opts.LeaseTTL/4, leasePollMax))
			queue = append(queue, t)
		default:
			outcome = r.failed(ctx, store, run, namespace, &t, o, rep)
			if outcome == OutcomeRetry {
				queue = append(queue, t)
			}
		}
		if r.opts.OnProgress != nil {
			var p Progress
			acc.do(func(rp *Report) {
				p = Progress{Namespace: namespace, RunID: run.ID, Segments: run.Segments, SegmentsDone: rp.SegmentsDone,
					SegmentsFail: rp.SegmentsFailed, RowsScanned: rp.RowsScanned, RowsDiffering: rp.RowsDiffering,
					RowsWritten: rp.RowsWritten, Regions: slices.Clone(rp.Regions), Last: t.seg, Outcome: outcome, Err: o.err}
			})
			r.opts.OnProgress(p)
		}
	}
	if err := ctl.Err(); err != nil {
		rep.Aborted = true
		r.opts.Metrics.runFinished(namespace, kind, "aborted")
		if !r.opts.DryRun {
			actx, cancel := context.WithTimeout(context.WithoutCancel(parent), bookkeepingTimeout)
			aerr := store.Abandon(actx, run)
			cancel()
			if aerr != nil {
				r.log.Warn("repair: could not abandon the aborted run", "namespace", namespace, "run", run.ID, "err", aerr)
			}
		}
		r.log.Warn("repair: run aborted", "namespace", namespace, "run", run.ID, "done", rep.SegmentsDone, "segments", rep.Segments, "err", err)
		return rep, fmt.Errorf("repair of %q, run %s, stopped with %d of %d segments done (leases released, run abandoned): %w",
			namespace, run.ID, rep.SegmentsDone, rep.Segments, err)
	}
	if err := parent.Err(); err != nil {
		r.opts.Metrics.runFinished(namespace, kind, "interrupted")
		return rep, fmt.Errorf("repair of %q interrupted with %d of %d segments done (progress kept; run again to resume): %w",
			namespace, rep.SegmentsDone, rep.Segments, err)
	}
	if rep.SegmentsFailed > 0 {
		r.opts.Metrics.runFinished(namespace, kind, "incomplete")
		errs := make([]error, 0, len(rep.Errors))
		for _, e := range rep.Errors {
			errs = append(errs, e)
		}
		return rep, fmt.Errorf("%w: %d of %d segments of %q failed (progress kept; run again to resume); first: %w",
			ErrIncomplete, rep.SegmentsFailed, rep.Segments, namespace, errs[0])
	}
	rep.Complete = true
	if !r.opts.DryRun {
		if err := store.Finish(ctx, run, r.opts.Now()); err != nil {
			r.opts.Metrics.runFinished(namespace, kind, "failed")
			return rep, fmt.Errorf("repair: finish run %s: %w", run.ID, err)
		}
		if full {
			// What bounds resurrection is when the run started: a segment
			// scanned early in a long run may have missed later deletes.
			r.opts.Metrics.SetLastFullRepair(namespace, run.StartedAt)
		}
	}
	r.opts.Metrics.runFinished(namespace, kind, "complete")
	r.log.Info("repair: run complete", "namespace", namespace, "run", run.ID, "run_started", run.StartedAt,
		"scope", rep.Scope, "differing", rep.RowsDiffering, "written", rep.RowsWritten)
	return rep, nil
}

// failed handles a failed attempt of t: it records it, splits the failing
// range after repeated failures, and says whether the segment is retried
// (OutcomeRetry, t updated) or given up (OutcomeFailed, in rep).
func (r *Repairer) failed(ctx context.Context, store ProgressStore, run RunInfo, namespace string, t *segTask, o segOutcome, rep *Report) Outcome {
	t.attempts++
	if o.pieces != nil {
		t.pieces = o.pieces
	}
	if o.progressed {
		t.failures = 0
	}
	t.failures++
	// A region that refused the attempt (no permission, an invalid
	// statement, a missing table) refuses it again: a retry cannot help,
	// so the segment fails at once.
	isRefused := refused(o.err)
	giveUp := isRefused || t.failures >= r.opts.MaxAttempts
	r.log.Warn("repair: segment failed", "namespace", namespace, "segment", t.seg.String(), "attempt", t.attempts,
		"retry", !giveUp, "err", o.err)
	if !r.opts.DryRun {
		_ = store.Record(ctx, run, SegmentRecord{Index: t.seg.Index, Owner: r.opts.Owner, Attempts: t.attempts, LastError: o.err.Error()})
	}
	if giveUp {
		rep.SegmentsFailed++
		rep.Errors = append(rep.Errors, &SegmentError{Segment: t.seg, Attempts: t.attempts, Err: o.err})
		return OutcomeFailed
	}
	if r.opts.SplitAfter > 0 && t.failures%r.opts.SplitAfter == 0 && !errors.Is(o.err, ErrLeaseLost) && !errors.Is(o.err, ErrSegmentLeased) {
		if t.pieces == nil {
			t.pieces = []piece{{TokenRange: t.seg}}
		}
		if p := t.pieces[0]; p.depth < MaxSplitDepth {
			if parts := SplitRange(p.TokenRange, SplitInto); len(parts) > 1 {
				split := make([]piece, 0, len(parts)+len(t.pieces)-1)
				for _, part := range parts {
					split = append(split, piece{TokenRange: part, depth: p.depth + 1})
				}
				t.pieces = append(split, t.pieces[1:]...)
				if p.depth == 0 {
					rep.SegmentsSplit++
				}
				r.log.Warn("repair: segment keeps failing; splitting it", "namespace", namespace, "segment", t.seg.String(),
					"range", p.TokenRange.String(), "pieces", len(parts), "depth", p.depth+1)
			}
		}
	}
	if t.backoff == nil {
		t.backoff = wait.NewBackoff(r.opts.RetryBackoff, RetryBackoffCeiling*r.opts.RetryBackoff)
	}
	t.notBefore = time.Now().Add(t.backoff.Next())
	return OutcomeRetry
}

// runSegments returns the segments of run: the ring's split, or for a
// partial run over a token range, the range's.
func (r *Repairer) runSegments(run RunInfo) []TokenRange {
	if rg := r.opts.Scope.Range; rg != nil {
		out := SplitRange(TokenRange{Start: rg.Start, End: rg.End}, run.Segments)
		for i := range out {
			out[i].Index = i
		}
		return out
	}
	return Segments(run.Segments)
}

// checkScope records a new partial run's scope, or checks that the
// partial run being resumed has the same one.
func (r *Repairer) checkScope(ctx context.Context, cs ControlStore, run RunInfo, sc Scope) error {
	if !sc.Partial() {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, bookkeepingTimeout)
	defer cancel()
	if !run.Resumed {
		return cs.SetDirective(bctx, run, Directive{Scope: sc.String(), By: r.opts.Owner, At: time.Now()})
	}
	d, err := cs.Directive(bctx, run)
	if err != nil {
		return fmt.Errorf("repair: read the scope of partial run %s: %w", run.ID, err)
	}
	if d.Scope != "" && d.Scope != sc.String() {
		return fmt.Errorf("%w: run %s repairs %s, not %s: abort it first (or repeat its scope to resume it)",
			ErrScopeMismatch, run.ID, d.Scope, sc.String())
	}
	return nil
}

// steer keeps the run obeying its Control until stop: it retunes the rate
// limiter, cancels the run when it is aborted, and, with a ControlStore,
// reads the run's directive every ControlPoll.
func (r *Repairer) steer(ctx context.Context, cancelRun context.CancelCauseFunc, ctl *Control, cs ControlStore, run RunInfo, stop, done chan struct{}) {
	defer close(done)
	var poll <-chan time.Time
	if cs != nil {
		t := time.NewTicker(r.opts.ControlPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		changed := ctl.Changed()
		_, rps := ctl.tuning(&r.opts)
		setRate(r.lim, rps, len(r.regions))
		if err := ctl.Err(); err != nil {
			cancelRun(err)
			return
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-changed:
		case <-poll:
			pctx, cancel := context.WithTimeout(ctx, bookkeepingTimeout)
			d, err := cs.Directive(pctx, run)
			cancel()
			if err == nil {
				ctl.Apply(d)
			}
		}
	}
}
