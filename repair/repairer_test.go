package repair

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tidemark/tidemark/quorum"
)

func regionsOf(ms []*MemRegion) []Region {
	out := make([]Region, len(ms))
	for i, m := range ms {
		out[i] = Region{Name: string(rune('a' + i)), Reader: m, Writer: m}
	}
	return out
}

// lacking counts, per region, the keys where the region does not show the
// model's live winner (keys whose winner has expired are left alone).
func lacking(keys []*modelKey, n int) []int64 {
	out := make([]int64, n)
	for _, k := range keys {
		w, ok := k.winner()
		if !ok || !k.winnerLive() {
			continue
		}
		for i, mv := range k.versions {
			if !mv.live() || quorum.Compare(mv.v, w) != 0 {
				out[i]++
			}
		}
	}
	return out
}

// countKeys counts the keys for which is holds.
func countKeys(keys []*modelKey, is func(*modelKey) bool) int64 {
	var n int64
	for _, k := range keys {
		if is(k) {
			n++
		}
	}
	return n
}

func countDiffering(keys []*modelKey) int64 { return countKeys(keys, (*modelKey).differs) }

// countSkipped counts the differing keys whose winner has expired: repair
// writes nothing for them.
func countSkipped(keys []*modelKey) int64 { return countKeys(keys, (*modelKey).skipped) }

func TestRepairerConvergesToModel(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			nReg := 2 + rng.IntN(3)
			nSeg := 1 + rng.IntN(20)
			mem := newTestRegions(nReg)
			keys := genModel(rng, mem, 50+rng.IntN(400), Segments(nSeg))
			reg := prometheus.NewRegistry()
			m := NewMetrics()
			reg.MustRegister(m)
			r, err := New(regionsOf(mem), Options{Segments: nSeg, Parallelism: 1 + rng.IntN(3), Concurrency: 1 + rng.IntN(8), PageSize: 7, Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Run(context.Background(), testNS)
			if err != nil {
				t.Fatal(err)
			}
			want, skipped := countDiffering(keys), countSkipped(keys)
			if rep.RowsDiffering != want || rep.RowsWritten != want-skipped || rep.RowsSkipped != skipped {
				t.Errorf("differing=%d written=%d skipped=%d, model differing=%d skipped=%d", rep.RowsDiffering, rep.RowsWritten, rep.RowsSkipped, want, skipped)
			}
			lack := lacking(keys, nReg)
			for i, rs := range rep.Regions {
				// Ties may also rewrite a region that held the winning value
				// under another digest cell, so >= for ties.
				if rs.RowsWritten < lack[i] || (rep.Ties == 0 && rs.RowsWritten != lack[i]) {
					t.Errorf("region %s written %d, model says it lacked %d", rs.Region, rs.RowsWritten, lack[i])
				}
				if got := metricValue(t, m.rowsWritten.WithLabelValues(testNS, rs.Region)); int64(got) != rs.RowsWritten {
					t.Errorf("metric written{%s} = %v, report %d", rs.Region, got, rs.RowsWritten)
				}
			}
			if !rep.Complete || rep.SegmentsDone != nSeg || rep.SegmentsRepaired != nSeg {
				t.Errorf("report %+v not complete", rep)
			}
			if metricValue(t, m.lastFullRepair.WithLabelValues(testNS)) == 0 {
				t.Error("last full repair not set")
			}
			checkConverged(t, mem, keys)
			// A second run finds nothing but the rows whose winner has
			// expired, and writes nothing.
			rep2, err := r.Run(context.Background(), testNS)
			if err != nil || rep2.RowsDiffering != skipped || rep2.RowsSkipped != skipped || rep2.RowsWritten != 0 {
				t.Errorf("second run: %+v, %v", rep2, err)
			}
		})
	}
}

func TestRepairerDryRunWritesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	mem := newTestRegions(3)
	keys := genModel(rng, mem, 300, Segments(4))
	before := make([]map[string]string, 3)
	snapshot := func(i int) map[string]string {
		out := map[string]string{}
		for _, k := range keys {
			v, d, ok := mem[i].Get(testNS, k.pk, k.ck)
			out[string(k.pk)+"/"+string(k.ck)] = fmt.Sprint(v, d, ok)
		}
		return out
	}
	for i := range mem {
		before[i] = snapshot(i)
	}
	regs := regionsOf(mem)
	for i := range regs {
		regs[i].Writer = nil
	}
	r, err := New(regs, Options{Segments: 4, DryRun: true, Samples: 3})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mem {
		if fmt.Sprint(snapshot(i)) != fmt.Sprint(before[i]) {
			t.Fatalf("dry run changed region %d", i)
		}
	}
	if want := countDiffering(keys); rep.RowsDiffering != want || rep.RowsWritten != 0 {
		t.Errorf("dry run differing=%d written=%d, want %d and 0", rep.RowsDiffering, rep.RowsWritten, want)
	}
	if len(rep.Samples) != 3 {
		t.Errorf("samples = %d, want 3", len(rep.Samples))
	}
	// Pair counts match the model.
	for _, p := range rep.Pairs {
		i, j := int(p.A[0]-'a'), int(p.B[0]-'a')
		var want int64
		for _, k := range keys {
			a, b := k.versions[i], k.versions[j]
			if a.live() != b.live() || (a.live() && quorum.Compare(a.v, b.v) != 0) {
				want++
			}
		}
		if p.Rows != want {
			t.Errorf("pair %s-%s: %d rows, model %d", p.A, p.B, p.Rows, want)
		}
	}
	if len(rep.Pairs) != 3 {
		t.Errorf("pairs = %v", rep.Pairs)
	}
	for _, rs := range rep.Regions {
		if rs.ValueFetches != 0 {
			t.Errorf("dry run fetched values from %s", rs.Region)
		}
	}
}

func TestRepairerRetriesFailingRegion(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	mem := newTestRegions(3)
	keys := genModel(rng, mem, 200, Segments(8))
	var fails atomic.Int32
	fails.Store(5)
	mem[2].Fault = func(op string) error {
		if op == "scan" && fails.Add(-1) >= 0 {
			return errors.New("connection refused")
		}
		return nil
	}
	var attempts []error
	r, _ := New(regionsOf(mem), Options{Segments: 8, RetryBackoff: time.Millisecond, MaxAttempts: 10,
		OnProgress: func(p Progress) { attempts = append(attempts, p.Err) }})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, e := range attempts {
		var re *RegionError
		if e != nil {
			if !errors.As(e, &re) || re.Region != "c" || re.Op != "scan" {
				t.Errorf("attempt error %v does not name region c / scan", e)
			}
			failed++
		}
	}
	if failed != 5 || rep.SegmentsFailed != 0 || !rep.Complete {
		t.Errorf("failed attempts = %d (want 5), report %+v", failed, rep)
	}
	checkConverged(t, mem, keys)
}

func TestRegionErrorRefused(t *testing.T) {
	for _, tc := range []struct {
		err     error
		refused bool
	}{
		{&gocql.RequestErrUnauthorized{}, true},
		{fmt.Errorf("scan: %w", &gocql.RequestErrInvalid{}), true},
		{&gocql.RequestErrSyntax{}, true},
		{&gocql.RequestErrUnavailable{}, false},
		{&gocql.RequestErrReadTimeout{}, false},
		{gocql.ErrNoConnections, false},
		{context.Canceled, false},
		{errors.New("connection refused"), false}, // MemRegion faults: unavailable
		{ErrUnknownNamespace, false},
	} {
		re := &RegionError{Region: "a", Op: "scan", Err: tc.err}
		if got := re.Refused(); got != tc.refused {
			t.Errorf("RegionError{%T %v}.Refused() = %v, want %v", tc.err, tc.err, got, tc.refused)
		}
		if got := refused(fmt.Errorf("segment: %w", re)); got != tc.refused {
			t.Errorf("refused(wrapped %T) = %v, want %v", tc.err, got, tc.refused)
		}
	}
	if refused(errors.New("not from a region")) || refused(nil) {
		t.Error("an error that is no RegionError counts as refused")
	}
}

// TestRefusedSegmentFailsAtOnce: a segment whose scan a region refuses
// (here: unauthorized) is tried once, not MaxAttempts times, and fails with
// that error; an availability failure is still retried MaxAttempts times.
func TestRefusedSegmentFailsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		attempts int
	}{
		{"refused", fmt.Errorf("no SELECT permission: %w", &gocql.RequestErrUnauthorized{}), 1},
		{"unavailable", errors.New("connection refused"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newTestRegions(2)
			genModel(rand.New(rand.NewPCG(5, 5)), mem, 50, Segments(4))
			var scans atomic.Int32
			mem[1].Fault = func(op string) error {
				if op == "scan" {
					scans.Add(1)
					return tc.err
				}
				return nil
			}
			store := NewMemProgress()
			r, _ := New(regionsOf(mem), Options{Segments: 4, RetryBackoff: time.Millisecond, MaxAttempts: 3, Progress: store})
			rep, err := r.Run(context.Background(), testNS)
			if !errors.Is(err, ErrIncomplete) || rep.SegmentsFailed != 4 || len(rep.Errors) != 4 {
				t.Fatalf("Run = %v, report %+v; want ErrIncomplete with 4 failed segments", err, rep)
			}
			if got := int(scans.Load()); got != 4*tc.attempts {
				t.Errorf("region b scanned %d times, want %d (%d per segment)", got, 4*tc.attempts, tc.attempts)
			}
			for _, se := range rep.Errors {
				var re *RegionError
				if se.Attempts != tc.attempts || !errors.Is(se, tc.err) || !errors.As(se, &re) || re.Region != "b" {
					t.Errorf("segment error %v (attempts %d): want %d attempts, region b and the region's error", se, se.Attempts, tc.attempts)
				}
				if notRetried := strings.Contains(se.Error(), "a retry cannot help"); notRetried != (tc.attempts == 1) {
					t.Errorf("segment error %q: says not retried = %v", se, notRetried)
				}
			}
			recs, _ := store.Segments(context.Background(), RunInfo{Namespace: testNS, ID: rep.RunID, Segments: 4})
			if len(recs) != 4 {
				t.Errorf("progress records %d segments, want 4", len(recs))
			}
			for i, rec := range recs {
				if rec.Done || rec.Attempts != tc.attempts || rec.LastError == "" {
					t.Errorf("progress of segment %d = %+v: want %d failed attempts recorded", i, rec, tc.attempts)
				}
			}
		})
	}
}

func TestRepairerGivesUpAndResumes(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	mem := newTestRegions(2)
	keys := genModel(rng, mem, 200, Segments(4))
	down := atomic.Bool{}
	down.Store(true)
	mem[1].Fault = func(op string) error {
		if down.Load() {
			return errors.New("unreachable")
		}
		return nil
	}
	store := NewMemProgress()
	r, _ := New(regionsOf(mem), Options{Segments: 4, RetryBackoff: time.Millisecond, MaxAttempts: 2, Progress: store})
	// Describe fails while region b is down.
	if _, err := r.Run(context.Background(), testNS); err == nil {
		t.Fatal("run with a region down succeeded")
	}
	// Region b answers Describe but fails scans.
	mem[1].Fault = func(op string) error {
		if down.Load() && op == "scan" {
			return errors.New("unreachable")
		}
		return nil
	}
	rep, err := r.Run(context.Background(), testNS)
	if !errors.Is(err, ErrIncomplete) || rep.SegmentsFailed != 4 || len(rep.Errors) != 4 {
		t.Fatalf("Run = %v, report %+v; want ErrIncomplete with 4 failed segments", err, rep)
	}
	var re *RegionError
	if !errors.As(err, &re) || re.Region != "b" {
		t.Fatalf("error %v does not name region b", err)
	}
	down.Store(false)
	rep2, err := r.Run(context.Background(), testNS)
	if err != nil || rep2.RunID != rep.RunID || !rep2.Complete {
		t.Fatalf("rerun = %+v, %v; want the same run completed", rep2, err)
	}
	checkConverged(t, mem, keys)
}

func TestRepairerResumesCancelledRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	mem := newTestRegions(3)
	keys := genModel(rng, mem, 400, Segments(10))
	store := NewMemProgress()
	ctx, cancel := context.WithCancel(context.Background())
	r1, _ := New(regionsOf(mem), Options{Segments: 10, Progress: store, OnProgress: func(p Progress) {
		if p.SegmentsDone == 4 {
			cancel()
		}
	}})
	rep1, err := r1.Run(ctx, testNS)
	if !errors.Is(err, context.Canceled) || rep1.SegmentsDone < 4 || rep1.Complete {
		t.Fatalf("first run = %+v, %v; want cancelled after 4 segments", rep1, err)
	}
	r2, _ := New(regionsOf(mem), Options{Segments: 10, Progress: store, Owner: "other"})
	rep2, err := r2.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.RunID != rep1.RunID || rep2.SegmentsResumed != rep1.SegmentsDone || rep2.SegmentsRepaired != 10-rep1.SegmentsDone {
		t.Errorf("resume: first %+v, second %+v", rep1, rep2)
	}
	if got, want := rep1.RowsWritten+rep2.RowsWritten, countDiffering(keys)-countSkipped(keys); got != want {
		t.Errorf("written over both runs = %d, want %d", got, want)
	}
	checkConverged(t, mem, keys)
	if last, ok, _ := store.LastFinished(context.Background(), testNS); !ok || last.ID != rep1.RunID {
		t.Errorf("last finished = %+v %v", last, ok)
	}
}

func TestRepairersShareRunByLeases(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	mem := newTestRegions(3)
	keys := genModel(rng, mem, 500, Segments(16))
	store := NewMemProgress()
	var seen sync.Map
	var dup atomic.Int32
	reps := make([]*Report, 3)
	var wg sync.WaitGroup
	for i := range reps {
		r, _ := New(regionsOf(mem), Options{Segments: 16, Progress: store, Owner: fmt.Sprintf("d%d", i), Parallelism: 2, LeaseTTL: time.Second,
			OnProgress: func(p Progress) {
				if p.Err == nil {
					if _, loaded := seen.LoadOrStore(fmt.Sprintf("%d/%d", i, p.Last.Index), true); loaded {
						dup.Add(1)
					}
				}
			}})
		wg.Go(func() {
			var err error
			reps[i], err = r.Run(context.Background(), testNS)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	total := 0
	var written int64
	for _, rp := range reps {
		total += rp.SegmentsRepaired
		written += rp.RowsWritten
		if rp.RunID != reps[0].RunID {
			t.Errorf("daemons joined different runs")
		}
	}
	if total != 16 {
		t.Errorf("segments repaired by all daemons = %d, want 16 (each exactly once)", total)
	}
	if want := countDiffering(keys) - countSkipped(keys); written != want {
		t.Errorf("written = %d, want %d", written, want)
	}
	checkConverged(t, mem, keys)
}

func TestRepairerSkipsExpiredWinner(t *testing.T) {
	mem := newTestRegions(2)
	now := fixedNow
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	for _, m := range mem {
		m.Now = clock
	}
	pk := pkAt(5, "x")
	mem[0].Put(testNS, pk, []byte("c"), 10, false, []byte("v"), 3*time.Second)
	mem[0].Fault = func(op string) error {
		if op == "read" { // the row expires between the scan and the fetch
			mu.Lock()
			now = now.Add(10 * time.Second)
			mu.Unlock()
		}
		return nil
	}
	r, _ := New(regionsOf(mem), Options{Segments: 1})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 1 || rep.RowsWritten != 0 || rep.RowsSkipped != 1 {
		t.Errorf("report %+v: want 1 differing, 0 written, 1 skipped", rep)
	}
	if _, _, ok := mem[1].Get(testNS, pk, []byte("c")); ok {
		t.Error("expired row was copied")
	}
}

func TestRepairerKeepsRemainingTTL(t *testing.T) {
	mem := newTestRegions(3)
	pk := pkAt(MinToken, "edge") // the very first token of the ring
	mem[0].Put(testNS, pk, nil, 10, false, []byte("v"), 100*time.Second)
	mem[1].Put(testNS, pk, nil, 20, true, nil, 50*time.Second)
	last := pkAt(MaxToken, "edge")
	mem[2].Put(testNS, last, nil, 10, false, []byte("w"), 0)
	r, _ := New(regionsOf(mem), Options{Segments: 3})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 2 || rep.RowsWritten != 2 {
		t.Fatalf("report %+v", rep)
	}
	for i, m := range mem {
		v, _, ok := m.Get(testNS, pk, nil)
		if !ok || !v.Deleted || v.Timestamp != 20 || v.TTL != 50 {
			t.Errorf("region %d first-token row = %+v %v, want marker ts 20 ttl 50", i, v, ok)
		}
		v, _, ok = m.Get(testNS, last, nil)
		if !ok || string(v.Value) != "w" || v.TTL != 0 {
			t.Errorf("region %d last-token row = %+v %v", i, v, ok)
		}
	}
	for _, rs := range rep.Regions {
		if rs.Region == "b" && rs.ValueFetches != 0 {
			t.Errorf("a deletion marker was fetched: %+v", rs)
		}
	}
}

func TestNewValidates(t *testing.T) {
	m := NewMemRegion(testNS)
	if _, err := New([]Region{{Name: "a", Reader: m, Writer: m}}, Options{}); !errors.Is(err, ErrTooFewRegions) {
		t.Errorf("one region: %v", err)
	}
	if _, err := New([]Region{{Name: "a", Reader: m, Writer: m}, {Name: "a", Reader: m, Writer: m}}, Options{}); err == nil {
		t.Error("duplicate names accepted")
	}
	if _, err := New([]Region{{Name: "a", Reader: m}, {Name: "b", Reader: m}}, Options{}); err == nil {
		t.Error("missing writers accepted without DryRun")
	}
	if _, err := New([]Region{{Name: "a", Reader: m}, {Name: "b", Reader: m}}, Options{DryRun: true}); err != nil {
		t.Errorf("dry run without writers: %v", err)
	}
}

func TestRunUnknownNamespace(t *testing.T) {
	a, b := NewMemRegion(testNS), NewMemRegion("other")
	r, _ := New([]Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}}, Options{})
	_, err := r.Run(context.Background(), testNS)
	var re *RegionError
	if !errors.Is(err, ErrUnknownNamespace) || !errors.As(err, &re) || re.Region != "b" {
		t.Fatalf("Run = %v, want ErrUnknownNamespace naming region b", err)
	}
	if _, err := r.Run(context.Background(), "Bad-Name"); err == nil {
		t.Fatal("invalid namespace name accepted")
	}
}

func TestLimiterPaces(t *testing.T) {
	// 100 distinct rows a second over 2 regions: 200 tokens a second, one
	// per row read, with a burst of one second's worth.
	l := newLimiter(100, 2)
	now := time.Unix(0, 0)
	var delay time.Duration
	for i := 0; i < 10; i++ {
		r := l.ReserveN(now, 100) // 50 rows, read from both regions
		if !r.OK() {
			t.Fatalf("reservation %d refused (burst %d)", i, l.Burst())
		}
		delay = r.DelayFrom(now)
	}
	// 500 rows at 100/s take 5s, less the one-second burst.
	if delay != 4*time.Second {
		t.Fatalf("last rows wait %v, want 4s", delay)
	}
	if newLimiter(0, 2) != nil {
		t.Fatal("a zero rate must mean no limiter")
	}
	if l := newLimiter(0.2, 1); l.Burst() != 1 {
		t.Fatalf("burst of a rate below 1/s = %d, want 1", l.Burst())
	}
}

func TestRowsPerSecondBoundsTheScan(t *testing.T) {
	mem := newTestRegions(2)
	const rows = 6 * flushEvery // 6 throttled batches per region
	for i := range rows {
		pk := []byte(fmt.Sprintf("p%05d", i))
		for _, m := range mem {
			m.Put(testNS, pk, nil, 1, false, []byte("v"), 0)
		}
	}
	const perSecond = 1000
	r, _ := New(regionsOf(mem), Options{Segments: 1, RowsPerSecond: perSecond, DisableFingerprints: true})
	start := time.Now()
	rep, err := r.Run(context.Background(), testNS)
	took := time.Since(start)
	if err != nil || rep.RowsScanned != rows {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	// rows distinct rows at perSecond, less the one-second burst.
	if least := time.Duration(rows-perSecond) * time.Second / perSecond; took < least {
		t.Errorf("scanning %d rows at %d/s took %v, less than %v", rows, perSecond, took, least)
	}
}

func TestIntensityPause(t *testing.T) {
	tests := []struct {
		d         time.Duration
		intensity float64
		want      time.Duration
	}{
		{time.Second, 1, 0},
		{time.Second, 0.5, time.Second},
		{time.Second, 0.25, 3 * time.Second},
		{time.Second, 0, 0},
		{time.Second, 2, 0},
	}
	for _, tc := range tests {
		if got := intensityPause(tc.d, tc.intensity); got != tc.want {
			t.Errorf("intensityPause(%v, %v) = %v, want %v", tc.d, tc.intensity, got, tc.want)
		}
	}
}

func TestMemProgressLeases(t *testing.T) {
	now := time.Unix(100, 0)
	p := NewMemProgress()
	p.Now = func() time.Time { return now }
	ctx := context.Background()
	run, _ := p.Begin(ctx, "ns", 4)
	run2, _ := p.Begin(ctx, "ns", 8)
	if run2.ID != run.ID || run2.Segments != 4 {
		t.Fatalf("second Begin made a new run: %+v vs %+v", run2, run)
	}
	steps := []struct {
		name  string
		do    func() (bool, error)
		want  bool
		after time.Duration
	}{
		{"a acquires", func() (bool, error) { return p.Acquire(ctx, run, 1, "a", time.Minute) }, true, 0},
		{"b is refused", func() (bool, error) { return p.Acquire(ctx, run, 1, "b", time.Minute) }, false, 0},
		{"a re-acquires its own", func() (bool, error) { return p.Acquire(ctx, run, 1, "a", time.Minute) }, true, 0},
		{"b cannot renew", func() (bool, error) { return p.Renew(ctx, run, 1, "b", time.Minute) }, false, 0},
		{"a renews", func() (bool, error) { return p.Renew(ctx, run, 1, "a", time.Minute) }, true, 2 * time.Minute},
		{"after expiry b acquires", func() (bool, error) { return p.Acquire(ctx, run, 1, "b", time.Minute) }, true, 0},
		{"a lost it", func() (bool, error) { return p.Renew(ctx, run, 1, "a", time.Minute) }, false, 0},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got != s.want {
			t.Fatalf("%s: got %v, %v; want %v", s.name, got, err, s.want)
		}
		now = now.Add(s.after)
	}
	_ = p.Release(ctx, run, 1, "b")
	if ok, _ := p.Acquire(ctx, run, 1, "c", time.Minute); !ok {
		t.Fatal("released lease not free")
	}
	_ = p.Record(ctx, run, SegmentRecord{Index: 2, Done: true})
	_ = p.Record(ctx, run, SegmentRecord{Index: 2, LastError: "late failure"})
	if recs, _ := p.Segments(ctx, run); !recs[2].Done {
		t.Fatal("a failed attempt undid a finished segment")
	}
	_ = p.Finish(ctx, run, now)
	if r3, _ := p.Begin(ctx, "ns", 8); r3.ID == run.ID || r3.Segments != 8 {
		t.Fatalf("Begin after Finish returned %+v", r3)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither counter nor gauge", c.Desc())
	return 0
}

type estimatingRegion struct {
	*MemRegion
	rows int64
	err  error
}

func (e estimatingRegion) EstimateRows(context.Context, string) (int64, error) { return e.rows, e.err }

func TestSegmentsSizedFromEstimates(t *testing.T) {
	tests := []struct {
		name string
		a, b estimatingRegion
		want int
	}{
		{"largest estimate counts", estimatingRegion{rows: 1000}, estimatingRegion{rows: 2500}, 25},
		{"estimate unavailable: fallback", estimatingRegion{err: errors.New("no estimates")}, estimatingRegion{}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := newTestRegions(2)
			tc.a.MemRegion, tc.b.MemRegion = mem[0], mem[1]
			r, _ := New([]Region{{Name: "a", Reader: tc.a, Writer: mem[0]}, {Name: "b", Reader: tc.b, Writer: mem[1]}},
				Options{Segments: 7, RowsPerSegment: 100})
			rep, err := r.Run(context.Background(), testNS)
			if err != nil || rep.Segments != tc.want {
				t.Fatalf("segments = %d (%v), want %d", rep.Segments, err, tc.want)
			}
		})
	}
}
