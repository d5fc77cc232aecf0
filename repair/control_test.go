package repair

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// hookWriter counts the rows written through it and calls hook after each.
type hookWriter struct {
	RegionWriter
	n    atomic.Int64
	hook func(n int64)
}

func (w *hookWriter) WriteRow(ctx context.Context, ns string, wr *Write) error {
	err := w.RegionWriter.WriteRow(ctx, ns, wr)
	n := w.n.Add(1)
	if w.hook != nil {
		w.hook(n)
	}
	return err
}

// lopsided returns two regions: a holds rows rows spread over the ring, b
// none, so that a run writes every row to b once.
func lopsided(rows int) (a, b *MemRegion) {
	mem := newTestRegions(2)
	step := uint64(math.MaxUint64 / uint64(rows))
	for i := 0; i < rows; i++ {
		tok := int64(uint64(1<<63) + uint64(i)*step + 1) // from MinToken up
		mem[0].Put(testNS, pkAt(tok, fmt.Sprint(i)), nil, 10, false, []byte("v"), 0)
	}
	return mem[0], mem[1]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPauseHoldsEverySegmentAndResumeFinishes(t *testing.T) {
	a, b := lopsided(2000)
	ctl := NewControl()
	w := &hookWriter{RegionWriter: b}
	w.hook = func(n int64) {
		if n == 100 {
			ctl.Pause(HoldOperator)
		}
	}
	store := NewMemProgress()
	r, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: w}},
		Options{Segments: 8, Parallelism: 2, Concurrency: 4, Control: ctl, Progress: store, Owner: "me"})
	done := make(chan error, 1)
	var rep *Report
	go func() {
		var err error
		rep, err = r.Run(context.Background(), testNS)
		done <- err
	}()
	waitFor(t, "the run holds", func() bool { return ctl.State().Holding })
	held := w.n.Load()
	rows := b.Len(testNS)
	time.Sleep(300 * time.Millisecond)
	if got := w.n.Load(); got != held || b.Len(testNS) != rows {
		t.Fatalf("rows written while paused: %d writes before, %d after; %d rows before, %d after", held, got, rows, b.Len(testNS))
	}
	// The segments being repaired keep their leases while paused.
	run, ok, _ := store.Current(context.Background(), testNS)
	if !ok {
		t.Fatal("no current run while paused")
	}
	leased := 0
	for i := 0; i < 8; i++ {
		if ok, _ := store.Acquire(context.Background(), run, i, "other", time.Minute); !ok {
			leased++
		} else {
			_ = store.Release(context.Background(), run, i, "other")
		}
	}
	if leased == 0 {
		t.Error("no segment lease held while paused")
	}
	select {
	case err := <-done:
		t.Fatalf("run ended while paused: %v", err)
	default:
	}
	ctl.Resume(HoldOperator)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.RowsWritten != 2000 || b.Len(testNS) != 2000 {
		t.Fatalf("after resume: complete %v, written %d, b holds %d", rep.Complete, rep.RowsWritten, b.Len(testNS))
	}
}

func TestAbortReleasesLeasesAndAbandonsTheRun(t *testing.T) {
	a, b := lopsided(2000)
	ctl := NewControl()
	w := &hookWriter{RegionWriter: b}
	w.hook = func(n int64) {
		if n == 100 {
			ctl.Abort(errors.New("by the test"))
		}
	}
	store := NewMemProgress()
	m := NewMetrics()
	var run RunInfo
	r, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: w}},
		Options{Segments: 8, Parallelism: 3, Control: ctl, Progress: store, Owner: "me", Metrics: m,
			OnRun: func(ri RunInfo) { run = ri }})
	rep, err := r.Run(context.Background(), testNS)
	if !errors.Is(err, ErrAborted) || !rep.Aborted || rep.Complete {
		t.Fatalf("Run = %v (aborted %v, complete %v), want ErrAborted", err, rep.Aborted, rep.Complete)
	}
	for i := 0; i < 8; i++ {
		if ok, _ := store.Acquire(context.Background(), run, i, "other", time.Minute); !ok {
			t.Errorf("segment %d still leased after the abort", i)
		}
	}
	if _, ok, _ := store.Current(context.Background(), testNS); ok {
		t.Error("the aborted run is still the current run")
	}
	if got := counterValue(t, m, "tidemark_repair_runs_finished_total", "aborted"); got != 1 {
		t.Errorf("runs finished aborted = %v, want 1", got)
	}
	// The next run starts fresh and completes.
	r2, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}}, Options{Segments: 4, Progress: store})
	rep2, err := r2.Run(context.Background(), testNS)
	if err != nil || rep2.Resumed || rep2.RunID == run.ID || b.Len(testNS) != 2000 {
		t.Fatalf("next run: %v, resumed %v, run %s (aborted %s), b holds %d", err, rep2.Resumed, rep2.RunID, run.ID, b.Len(testNS))
	}
}

func TestDirectivePausesEveryProcessOfTheRun(t *testing.T) {
	a, b := lopsided(3000)
	store := NewMemProgress()
	var once sync.Once
	var runInfo atomic.Pointer[RunInfo]
	w := &hookWriter{RegionWriter: b}
	w.hook = func(n int64) {
		if n == 200 {
			once.Do(func() {
				run := runInfo.Load()
				if err := store.SetDirective(context.Background(), *run, Directive{State: StatePaused, By: "test"}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	regions := []Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: w}}
	ctls := []*Control{NewControl(), NewControl()}
	reps := make([]*Report, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		r, _ := New(regions, Options{Segments: 16, Concurrency: 1, Progress: store, Owner: fmt.Sprint("p", i),
			ControlPoll: 10 * time.Millisecond, Control: ctls[i], OnRun: func(ri RunInfo) { runInfo.Store(&ri) }})
		wg.Go(func() { reps[i], errs[i] = r.Run(context.Background(), testNS) })
	}
	waitFor(t, "both processes hold", func() bool { return ctls[0].State().Holding && ctls[1].State().Holding })
	held := w.n.Load()
	time.Sleep(200 * time.Millisecond)
	if got := w.n.Load(); got != held {
		t.Fatalf("%d rows written while the run was paused", got-held)
	}
	if err := store.SetDirective(context.Background(), *runInfo.Load(), Directive{State: StateRunning, By: "test"}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	repaired := 0
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		repaired += reps[i].SegmentsRepaired
	}
	if repaired != 16 || b.Len(testNS) != 3000 {
		t.Fatalf("segments repaired %d (want 16), b holds %d rows", repaired, b.Len(testNS))
	}
}

func TestTuningChangesTheRunningRate(t *testing.T) {
	a, b := lopsided(500)
	ctl := NewControl()
	r, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}},
		Options{Segments: 4, Control: ctl, Progress: NewMemProgress()})
	ctl.Pause(HoldOperator)
	done := make(chan error, 1)
	go func() { _, err := r.Run(context.Background(), testNS); done <- err }()
	if err := ctl.SetRowsPerSecond(50); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the limiter follows", func() bool { return r.lim.Limit() == rate.Limit(100) })
	if err := ctl.SetRowsPerSecond(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the limit is lifted", func() bool { return r.lim.Limit() == rate.Inf })
	if err := ctl.SetIntensity(0); err == nil {
		t.Error("intensity 0 accepted")
	}
	if err := ctl.SetRowsPerSecond(-1); err == nil {
		t.Error("a negative rate accepted")
	}
	ctl.Resume(HoldOperator)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTokenRangeRunRepairsOnlyThatRange(t *testing.T) {
	mem := newTestRegions(2)
	tokens := []int64{math.MinInt64 + 5, -5000, -1000, -999, 0, 1000, 1001, math.MaxInt64}
	for _, tok := range tokens {
		mem[0].Put(testNS, pkAt(tok, "x"), nil, 10, false, []byte("v"), 0)
	}
	store := NewMemProgress()
	m := NewMetrics()
	r, _ := New(regionsOf(mem), Options{Segments: 64, Progress: store, Metrics: m,
		Scope: Scope{Range: &TokenRange{Start: -1000, End: 1000}}})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete || !rep.Partial || rep.Scope != "range (-1000, 1000]" {
		t.Fatalf("Run = %v, %+v", err, rep)
	}
	if rep.RowsWritten != 3 || mem[1].Len(testNS) != 3 {
		t.Fatalf("written %d, b holds %d; want the 3 rows in (-1000, 1000]", rep.RowsWritten, mem[1].Len(testNS))
	}
	for _, tok := range []int64{-999, 0, 1000} {
		if _, _, ok := mem[1].Get(testNS, pkAt(tok, "x"), nil); !ok {
			t.Errorf("row at token %d not repaired", tok)
		}
	}
	if _, ok, _ := store.LastFinished(context.Background(), testNS); ok {
		t.Error("a partial run counted as a full repair")
	}
	if _, ok, _ := store.LastFinished(context.Background(), PartialKey(testNS)); !ok {
		t.Error("the partial run is not recorded under its own key")
	}
	if rep.Segments != 1 {
		t.Errorf("a 2000-token range got %d segments, want 1", rep.Segments)
	}
	if _, ok := gaugeValue(m, "tidemark_repair_last_full_repair_timestamp_seconds"); ok {
		t.Error("a partial run set the last full repair")
	}
}

func TestScopeMismatchRefusesAnotherPartialRun(t *testing.T) {
	mem := newTestRegions(2)
	store := NewMemProgress()
	run, _ := store.Begin(context.Background(), PartialKey(testNS), 1)
	_ = store.SetDirective(context.Background(), run, Directive{Scope: "range (0, 10]"})
	r, _ := New(regionsOf(mem), Options{Progress: store, Scope: Scope{Range: &TokenRange{Start: 10, End: 20}}})
	if _, err := r.Run(context.Background(), testNS); !errors.Is(err, ErrScopeMismatch) {
		t.Fatalf("Run = %v, want ErrScopeMismatch", err)
	}
	r, _ = New(regionsOf(mem), Options{Progress: store, Scope: Scope{Range: &TokenRange{Start: 0, End: 10}}})
	if rep, err := r.Run(context.Background(), testNS); err != nil || !rep.Resumed {
		t.Fatalf("the same scope does not resume: %v", err)
	}
}

func TestRegionScopeReadsAndWritesOnlyThoseRegions(t *testing.T) {
	mem := newTestRegions(3)
	for i := 0; i < 50; i++ {
		mem[0].Put(testNS, pkAt(int64(i)*1e15, "x"), nil, 10, false, []byte("v"), 0)
	}
	regions := []Region{{Name: "a", Reader: mem[0], Writer: mem[0]}, {Name: "b", Reader: mem[1], Writer: mem[1]}, {Name: "c", Reader: mem[2], Writer: mem[2]}}
	r, _ := New(regions, Options{Segments: 4, Progress: NewMemProgress(), Scope: Scope{Regions: []string{"c", "a"}}})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || mem[2].Len(testNS) != 50 || mem[1].Len(testNS) != 0 || len(rep.Regions) != 2 || rep.Scope != "regions a,c" {
		t.Fatalf("Run = %v; b holds %d, c %d, report regions %v", err, mem[1].Len(testNS), mem[2].Len(testNS), rep.Regions)
	}
	for _, bad := range []Scope{{Regions: []string{"a"}}, {Regions: []string{"a", "z"}}, {Regions: []string{"a", "a"}}, {Range: &TokenRange{Start: 5, End: 5}}} {
		r, _ := New(regions, Options{Scope: bad})
		if _, err := r.Run(context.Background(), testNS); err == nil {
			t.Errorf("scope %+v accepted", bad)
		}
	}
}

// wideFails fails every scan of a range wider than max tokens.
type wideFails struct {
	RegionReader
	max   uint64
	fails atomic.Int32
}

func (w *wideFails) ScanDigests(ctx context.Context, ns string, r TokenRange, page int) RowStream {
	if uint64(r.End)-uint64(r.Start) > w.max {
		w.fails.Add(1)
		return NewSliceStream(nil, errors.New("timed out: the range is too big"))
	}
	return w.RegionReader.ScanDigests(ctx, ns, r, page)
}

func TestFailingSegmentIsSplitDuringTheRun(t *testing.T) {
	a, b := lopsided(400)
	wa := &wideFails{RegionReader: a, max: 1 << 62}
	r, _ := New([]Region{{Name: "a", Reader: wa, Writer: a}, {Name: "b", Reader: b, Writer: b}},
		Options{Segments: 2, RetryBackoff: time.Millisecond, MaxAttempts: 3, Progress: NewMemProgress()})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete || b.Len(testNS) != 400 {
		t.Fatalf("Run = %v (complete %v), b holds %d", err, rep.Complete, b.Len(testNS))
	}
	if rep.SegmentsSplit != 2 || wa.fails.Load() != 4 {
		t.Errorf("segments split %d (want 2), failed scans %d (want 4)", rep.SegmentsSplit, wa.fails.Load())
	}
	// Without splitting the same run gives up.
	a2, b2 := lopsided(400)
	r, _ = New([]Region{{Name: "a", Reader: &wideFails{RegionReader: a2, max: 1 << 62}, Writer: a2}, {Name: "b", Reader: b2, Writer: b2}},
		Options{Segments: 2, RetryBackoff: time.Millisecond, MaxAttempts: 3, SplitAfter: -1})
	if _, err := r.Run(context.Background(), testNS); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("without splitting: %v, want ErrIncomplete", err)
	}
}

// hangOnce makes the first scan of a region hang until its context ends.
type hangOnce struct {
	RegionReader
	hung atomic.Bool
}

type hangingStream struct {
	ctx context.Context
}

func (h hangingStream) Next() bool      { <-h.ctx.Done(); return false }
func (h hangingStream) Row() *DigestRow { return nil }
func (h hangingStream) Err() error      { return h.ctx.Err() }
func (h hangingStream) Close() error    { return nil }

func (h *hangOnce) ScanDigests(ctx context.Context, ns string, r TokenRange, page int) RowStream {
	if h.hung.CompareAndSwap(false, true) {
		return hangingStream{ctx}
	}
	return h.RegionReader.ScanDigests(ctx, ns, r, page)
}

func TestHungSegmentIsAbandonedAndRetried(t *testing.T) {
	a, b := lopsided(100)
	var timeouts atomic.Int32
	r, _ := New([]Region{{Name: "a", Reader: &hangOnce{RegionReader: a}, Writer: a}, {Name: "b", Reader: b, Writer: b}},
		Options{Segments: 2, SegmentTimeout: 100 * time.Millisecond, RetryBackoff: time.Millisecond, Progress: NewMemProgress(),
			OnProgress: func(p Progress) {
				if errors.Is(p.Err, ErrSegmentTimeout) && p.Outcome == OutcomeRetry {
					timeouts.Add(1)
				}
			}})
	start := time.Now()
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete || b.Len(testNS) != 100 || timeouts.Load() != 1 {
		t.Fatalf("Run = %v, complete %v, b holds %d, timeouts %d", err, rep.Complete, b.Len(testNS), timeouts.Load())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the hung segment took %v to be abandoned", d)
	}
}

func TestLeasedSegmentIsReportedAsSkipped(t *testing.T) {
	a, b := lopsided(100)
	store := NewMemProgress()
	_, release := holdLease(t, store, 4, 2, "stuck")
	time.AfterFunc(300*time.Millisecond, release)
	var mu sync.Mutex
	outcomes := map[Outcome]int{}
	r, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}},
		Options{Segments: 4, Progress: store, Owner: "me", LeaseTTL: 400 * time.Millisecond, OnProgress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[p.Outcome]++
			if p.Outcome == OutcomeLeased && p.Last.Index != 2 {
				t.Errorf("segment %d reported leased", p.Last.Index)
			}
		}})
	if _, err := r.Run(context.Background(), testNS); err != nil {
		t.Fatal(err)
	}
	if outcomes[OutcomeLeased] == 0 || outcomes[OutcomeRepaired] != 4 {
		t.Fatalf("outcomes %v: want segment 2 skipped as leased, then 4 repaired", outcomes)
	}
}

func TestSplitRangeCoversTheRange(t *testing.T) {
	for _, r := range []TokenRange{{Start: -10, End: 10}, {Start: math.MinInt64, End: 0}, {Start: 0, End: 3}, {Start: 5, End: math.MaxInt64},
		{Start: math.MinInt64, End: math.MaxInt64}} {
		for _, n := range []int{1, 2, 4, 7} {
			parts := SplitRange(r, n)
			if parts[0].Start != r.Start || parts[len(parts)-1].End != r.End {
				t.Fatalf("SplitRange(%v, %d) = %v: does not span the range", r, n, parts)
			}
			for i := 1; i < len(parts); i++ {
				if parts[i].Start != parts[i-1].End || parts[i].End <= parts[i].Start {
					t.Fatalf("SplitRange(%v, %d) = %v: not contiguous", r, n, parts)
				}
			}
			if want := min(uint64(n), uint64(r.End)-uint64(r.Start)); r.End-r.Start > 0 && uint64(len(parts)) != want && !(r.Start == math.MinInt64 && r.End == math.MaxInt64) {
				t.Errorf("SplitRange(%v, %d) gave %d parts, want %d", r, n, len(parts), want)
			}
		}
	}
	if got := RangeSegments(TokenRange{Start: 0, End: math.MaxInt64}, 64); got != 32 {
		t.Errorf("half the ring at 64 segments = %d, want 32", got)
	}
}

func counterValue(t *testing.T, m *Metrics, name, label string) float64 {
	t.Helper()
	v, _ := seriesValue(m, name, label)
	return v
}

func gaugeValue(m *Metrics, name string) (float64, bool) { return seriesValue(m, name, "") }

// seriesValue returns the value of the first series of name whose labels
// include the value label ("" for any).
func seriesValue(m *Metrics, name, label string) (float64, bool) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			match := label == ""
			for _, l := range s.GetLabel() {
				match = match || l.GetValue() == label
			}
			if !match {
				continue
			}
			if s.Counter != nil {
				return s.GetCounter().GetValue(), true
			}
			return s.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
