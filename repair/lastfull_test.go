package repair

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// fakeClock is a settable clock shared by MemProgress and the Repairer.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func gaugeSeconds(t *testing.T, m *Metrics, ns string) float64 {
	t.Helper()
	return metricValue(t, m.lastFullRepair.WithLabelValues(ns))
}

func unixSeconds(at time.Time) float64 { return float64(at.UnixNano()) / 1e9 }

// startAndInterrupt starts a run of segments segments at the clock's time
// and cancels it after two segments, leaving it unfinished in store.
func startAndInterrupt(t *testing.T, mem []*MemRegion, store *MemProgress, clock *fakeClock, segments int) *Report {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := New(regionsOf(mem), Options{Segments: segments, Progress: store, Now: clock.Now, Owner: "first",
		OnProgress: func(p Progress) {
			if p.SegmentsDone >= 2 {
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(ctx, testNS)
	if !errors.Is(err, context.Canceled) || rep.Complete || rep.SegmentsDone < 2 {
		t.Fatalf("interrupted run = %+v, %v", rep, err)
	}
	return rep
}

// A run resumed days after it started and completed today is a full repair
// as of its start, not of today: the gauge, the report and the store say so.
func TestLastFullRepairIsTheRunStart(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	t0 := clock.Now()
	mem := newTestRegions(2)
	keys := genModel(rand.New(rand.NewPCG(5, 5)), mem, 200, Segments(6))
	store := NewMemProgress()
	store.Now = clock.Now
	first := startAndInterrupt(t, mem, store, clock, 6)

	clock.Advance(3 * 24 * time.Hour) // less than half the 10-day retention
	m := NewMetrics()
	r, _ := New(regionsOf(mem), Options{Segments: 6, Progress: store, Now: clock.Now, Metrics: m, Owner: "second"})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RunID != first.RunID || !rep.Resumed || rep.AbandonedRun != "" || !rep.Complete {
		t.Fatalf("resumed run = %+v; want run %s resumed and completed", rep, first.RunID)
	}
	if !rep.RunStarted.Equal(t0) {
		t.Errorf("Report.RunStarted = %v, want the run's start %v", rep.RunStarted, t0)
	}
	if got, want := gaugeSeconds(t, m, testNS), unixSeconds(t0); got != want {
		t.Errorf("last full repair gauge = %v, want the run's start %v (finish would be %v)", got, want, unixSeconds(clock.Now()))
	}
	last, ok, err := store.LastFinished(context.Background(), testNS)
	if err != nil || !ok || !last.StartedAt.Equal(t0) || !last.FinishedAt.Equal(clock.Now()) {
		t.Errorf("LastFinished = %+v %v %v; want started %v finished %v", last, ok, err, t0, clock.Now())
	}
	checkConverged(t, mem, keys)
}

func TestStaleUnfinishedRunIsAbandoned(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name      string
		retention time.Duration // recorded by the tables; 0: none recorded
		age       time.Duration
		opts      Options
		abandon   bool
		why       string
	}{
		{name: "young run resumed", retention: 10 * day, age: 4 * day},
		{name: "older than half the retention", retention: 10 * day, age: 6 * day, abandon: true, why: "more than 120h0m0s"},
		{name: "short retention", retention: 2 * day, age: 26 * time.Hour, abandon: true, why: "more than 24h0m0s"},
		{name: "no retention recorded: half the default", age: 6 * day, abandon: true, why: "more than 120h0m0s"},
		{name: "max age configured", retention: 10 * day, age: 2 * time.Hour, opts: Options{MaxRunAge: time.Hour}, abandon: true, why: "more than 1h0m0s"},
		{name: "max age configured, younger", retention: 10 * day, age: 2 * day, opts: Options{MaxRunAge: 3 * day}},
		{name: "fresh requested", retention: 10 * day, age: time.Minute, opts: Options{Fresh: true}, abandon: true, why: "a fresh run was requested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			mem := newTestRegions(2)
			for _, m := range mem {
				m.Retention = tc.retention
			}
			keys := genModel(rand.New(rand.NewPCG(7, 7)), mem, 150, Segments(4))
			store := NewMemProgress()
			store.Now = clock.Now
			first := startAndInterrupt(t, mem, store, clock, 4)
			clock.Advance(tc.age)

			var logs bytes.Buffer
			m := NewMetrics()
			opts := tc.opts
			opts.Segments, opts.Progress, opts.Now, opts.Metrics = 8, store, clock.Now, m
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			r, _ := New(regionsOf(mem), opts)
			rep, err := r.Run(context.Background(), testNS)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.abandon {
				if rep.RunID != first.RunID || rep.AbandonedRun != "" || rep.Segments != 4 || rep.SegmentsResumed != first.SegmentsDone {
					t.Fatalf("run = %+v; want run %s (4 segments) resumed", rep, first.RunID)
				}
				if got, want := gaugeSeconds(t, m, testNS), unixSeconds(first.RunStarted); got != want {
					t.Errorf("gauge = %v, want the resumed run's start %v", got, want)
				}
				checkConverged(t, mem, keys)
				return
			}
			if rep.RunID == first.RunID || rep.AbandonedRun != first.RunID || rep.Resumed {
				t.Fatalf("run = %+v; want a new run, run %s abandoned", rep, first.RunID)
			}
			if rep.Segments != 8 || rep.SegmentsResumed != 0 || rep.SegmentsRepaired != 8 || !rep.Complete {
				t.Errorf("new run = %+v; want 8 new segments, all repaired", rep)
			}
			if !rep.RunStarted.Equal(clock.Now()) {
				t.Errorf("new run started %v, want %v", rep.RunStarted, clock.Now())
			}
			if got, want := gaugeSeconds(t, m, testNS), unixSeconds(clock.Now()); got != want {
				t.Errorf("gauge = %v, want the new run's start %v", got, want)
			}
			if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "abandoned unfinished run "+first.RunID) || !strings.Contains(rep.Warnings[0], tc.why) {
				t.Errorf("warnings %q do not explain the abandoned run (%q)", rep.Warnings, tc.why)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "abandoned="+first.RunID) {
				t.Errorf("abandoning not logged:\n%s", logs.String())
			}
			if last, ok, _ := store.LastFinished(context.Background(), testNS); !ok || last.ID != rep.RunID {
				t.Errorf("last finished = %+v, want the new run", last)
			}
			checkConverged(t, mem, keys)
		})
	}
}

// A dry run never resumes or abandons anything.
func TestDryRunLeavesUnfinishedRun(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	mem := newTestRegions(2)
	genModel(rand.New(rand.NewPCG(9, 9)), mem, 100, Segments(4))
	store := NewMemProgress()
	store.Now = clock.Now
	first := startAndInterrupt(t, mem, store, clock, 4)
	clock.Advance(30 * 24 * time.Hour)
	r, _ := New(regionsOf(mem), Options{Segments: 4, Progress: store, Now: clock.Now, DryRun: true, Fresh: true})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.AbandonedRun != "" || rep.Resumed {
		t.Fatalf("dry run = %+v, %v", rep, err)
	}
	if again, _ := store.Begin(context.Background(), testNS, 4); again.ID != first.RunID || !again.Resumed {
		t.Errorf("dry run touched the unfinished run: Begin = %+v, want %s", again, first.RunID)
	}
}

func TestMemProgressAbandon(t *testing.T) {
	ctx := context.Background()
	p := NewMemProgress()
	run, _ := p.Begin(ctx, "ns", 4)
	if run.Resumed {
		t.Fatal("a created run is marked resumed")
	}
	if again, _ := p.Begin(ctx, "ns", 8); again.ID != run.ID || !again.Resumed {
		t.Fatalf("second Begin = %+v; want run %s resumed", again, run.ID)
	}
	if err := p.Abandon(ctx, run); err != nil {
		t.Fatal(err)
	}
	next, _ := p.Begin(ctx, "ns", 8)
	if next.ID == run.ID || next.Resumed || next.Segments != 8 {
		t.Fatalf("Begin after Abandon = %+v", next)
	}
	_ = p.Abandon(ctx, run) // no longer current: nothing happens
	if cur, _ := p.Begin(ctx, "ns", 2); cur.ID != next.ID {
		t.Fatalf("abandoning an old run ended the current one: %+v", cur)
	}
	if _, ok, _ := p.LastFinished(ctx, "ns"); ok {
		t.Error("an abandoned run counts as finished")
	}
}

func TestSetLastFullRepairKeepsTheLatest(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	t1 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		at   time.Time
		want time.Time
	}{
		{t1, t1},
		{t1.Add(-time.Hour), t1}, // an older run (restored, or finished late) does not move it back
		{time.Time{}, t1},        // no run
		{t1.Add(time.Hour), t1.Add(time.Hour)},
	}
	for i, s := range steps {
		m.SetLastFullRepair("ns", s.at)
		if got := gaugeSeconds(t, m, "ns"); got != unixSeconds(s.want) {
			t.Errorf("step %d: gauge = %v, want %v", i, got, unixSeconds(s.want))
		}
	}
	var nilMetrics *Metrics
	nilMetrics.SetLastFullRepair("ns", t1) // must not panic
}

// noRetention is the error cluster.ReadRetention returns for a table whose
// comment records no readable retention.
func noRetention(keyspace, table, comment string) error {
	_, err := schema.ParseRetention(comment)
	return cluster.NoRetentionError(keyspace, table, err)
}

func TestDescribeResult(t *testing.T) {
	info, err := describeResult("ks", "users", 240*time.Hour, nil)
	if err != nil || info.Retention != 240*time.Hour || info.RetentionErr != nil {
		t.Errorf("readable retention: %+v, %v", info, err)
	}
	_, err = describeResult("ks", "users", 0, cluster.NoTableError("ks", "users"))
	if !errors.Is(err, ErrUnknownNamespace) || !strings.Contains(err.Error(), "table ks.users does not exist") {
		t.Errorf("missing table: %v, want ErrUnknownNamespace naming ks.users", err)
	}
	down := errors.New("no connections")
	if _, err := describeResult("ks", "users", 0, down); err != down {
		t.Errorf("driver error: %v, want it as it is", err)
	}
	for _, tc := range []struct{ comment, errHas string }{
		{"tidemark:v1 retention=abc", `table comment "tidemark:v1 retention=abc": bad retention`},
		{"tidemark:v1 retention=-5", "bad retention"},
		{"tidemark:v1", `table comment "tidemark:v1" has no retention`},
		{"written by hand", `table comment "written by hand" was not written by tidemark`},
	} {
		info, err := describeResult("ks", "users", 0, noRetention("ks", "users", tc.comment))
		if err != nil || info.Retention != 0 || !errors.Is(info.RetentionErr, cluster.ErrNoRetention) ||
			!strings.Contains(info.RetentionErr.Error(), "ks.users") || !strings.Contains(info.RetentionErr.Error(), tc.errHas) {
			t.Errorf("%q: %+v, %v; want no error and a RetentionErr naming ks.users and containing %q", tc.comment, info, err, tc.errHas)
		}
	}
}

// badCommentRegion is a MemRegion whose table comment cannot be read.
type badCommentRegion struct{ *MemRegion }

func (b badCommentRegion) Describe(ctx context.Context, ns string) (TableInfo, error) {
	if _, err := b.MemRegion.Describe(ctx, ns); err != nil {
		return TableInfo{}, err
	}
	return describeResult("ks", ns, 0, noRetention("ks", ns, "tidemark:v1 retention=ten-days"))
}

func TestUnreadableRetentionIsAWarning(t *testing.T) {
	mem := newTestRegions(2)
	keys := genModel(rand.New(rand.NewPCG(3, 3)), mem, 100, Segments(4))
	var logs bytes.Buffer
	r, _ := New([]Region{{Name: "a", Reader: mem[0], Writer: mem[0]}, {Name: "b", Reader: badCommentRegion{mem[1]}, Writer: mem[1]}},
		Options{Segments: 4, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete {
		t.Fatalf("Run = %+v, %v; repair must still run", rep, err)
	}
	if rep.Retention != mem[0].Retention {
		t.Errorf("retention %v, want region a's %v", rep.Retention, mem[0].Retention)
	}
	want := `region "b": table ks.` + testNS + `: table comment "tidemark:v1 retention=ten-days": bad retention`
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], want) {
		t.Errorf("warnings = %q, want one containing %q", rep.Warnings, want)
	}
	if !strings.Contains(logs.String(), "retention=ten-days") {
		t.Errorf("warning not logged:\n%s", logs.String())
	}
	checkConverged(t, mem, keys)
}
