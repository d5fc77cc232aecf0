package repair

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/quorum"
)

// conflictBase is the time the test versions are written at: an hour ago.
var conflictBase = time.Now().Add(-time.Hour).UnixMicro()

// tsOf is a timestamp us microseconds after conflictBase, carrying writer
// id w in its low bits, as a Store issues it.
func tsOf(us int64, w int) int64 {
	return (conflictBase+us)&^quorum.MaxWriterID | int64(w)
}

// conflictCounter reads one sample of the metric name with labels from c.
func conflictCounter(t *testing.T, c prometheus.Collector, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			return sampleOf(m)
		}
	}
	return 0
}

func sampleOf(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.GetGauge().GetValue()
}

// version is one row version a test puts in a region.
type version struct {
	ts      int64
	deleted bool
	value   string
}

// TestRepairRecordsConflicts: repair of two regions holding different
// versions of a row records a conflict exactly when quorum.Conflicting
// says so, with the row, both versions, the loser's region and the
// detector, and counts it.
func TestRepairRecordsConflicts(t *testing.T) {
	cases := []struct {
		name   string
		a, b   version
		window time.Duration
		want   bool
	}{
		{"two writers within the window", version{ts: tsOf(0, 1), value: "x"}, version{ts: tsOf(1000, 2), value: "y"}, 0, true},
		{"delete beats a concurrent put", version{ts: tsOf(0, 1), value: "x"}, version{ts: tsOf(500, 2), deleted: true}, 0, true},
		{"put beats a concurrent delete", version{ts: tsOf(500, 1), value: "x"}, version{ts: tsOf(0, 2), deleted: true}, 0, true},
		{"same writer overwrites itself", version{ts: tsOf(0, 3), value: "x"}, version{ts: tsOf(1000, 3), value: "y"}, 0, false},
		{"outside the default window", version{ts: tsOf(0, 1), value: "x"}, version{ts: tsOf(int64(2*time.Minute/time.Microsecond), 2), value: "y"}, 0, false},
		{"outside a configured window", version{ts: tsOf(0, 1), value: "x"}, version{ts: tsOf(int64(2*time.Second/time.Microsecond), 2), value: "y"}, time.Second, false},
		{"inside a configured window", version{ts: tsOf(0, 1), value: "x"}, version{ts: tsOf(int64(2*time.Minute/time.Microsecond), 2), value: "y"}, time.Hour, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := NewMemRegion(testNS), NewMemRegion(testNS)
			pk, ck := []byte("pk"), []byte("ck")
			a.Put(testNS, pk, ck, c.a.ts, c.a.deleted, []byte(c.a.value), 0)
			b.Put(testNS, pk, ck, c.b.ts, c.b.deleted, []byte(c.b.value), 0)
			// A row both regions agree on: no divergence, no conflict.
			a.Put(testNS, []byte("same"), nil, tsOf(0, 1), false, []byte("v"), 0)
			b.Put(testNS, []byte("same"), nil, tsOf(0, 1), false, []byte("v"), 0)
			log := conflicts.NewMemory()
			m := NewMetrics()
			r, err := New(regionsOf([]*MemRegion{a, b}), Options{Segments: 4, Metrics: m, ConflictSink: log,
				Conflicts: ConflictConfig{Window: c.window}})
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			rep, err := r.Run(context.Background(), testNS)
			if err != nil {
				t.Fatal(err)
			}
			if rep.RowsWritten != 1 {
				t.Fatalf("rows written %d, want 1", rep.RowsWritten)
			}
			got, err := log.ListConflicts(context.Background(), testNS, ConflictQuery{})
			if err != nil {
				t.Fatal(err)
			}
			total := conflictCounter(t, m, "tidemark_conflicts_total", map[string]string{"namespace": testNS, "detected_by": "repair"})
			if !c.want {
				if len(got) != 0 || total != 0 || rep.Conflicts != 0 {
					t.Fatalf("recorded %v (counted %v, report %d), want no conflict", got, total, rep.Conflicts)
				}
				return
			}
			if len(got) != 1 || log.Writes() != 1 || total != 1 || rep.Conflicts != 1 {
				t.Fatalf("recorded %v in %d writes (counted %v, report %d), want exactly one conflict", got, log.Writes(), total, rep.Conflicts)
			}
			win, lose, loserRegion := c.a, c.b, "b"
			if quorum.Compare(quorum.Version{Timestamp: c.b.ts, Deleted: c.b.deleted, Value: []byte(c.b.value)},
				quorum.Version{Timestamp: c.a.ts, Deleted: c.a.deleted, Value: []byte(c.a.value)}) > 0 {
				win, lose, loserRegion = c.b, c.a, "a"
			}
			g := got[0]
			want := Conflict{Namespace: testNS, PK: pk, CK: ck,
				Winner:      ConflictSide{Timestamp: win.ts, Writer: quorum.WriterOf(win.ts), Deleted: win.deleted},
				Loser:       ConflictSide{Timestamp: lose.ts, Writer: quorum.WriterOf(lose.ts), Deleted: lose.deleted},
				LoserRegion: loserRegion, DetectedBy: "repair", DetectedAt: g.DetectedAt}
			if fmt.Sprint(g) != fmt.Sprint(want) {
				t.Fatalf("recorded\n  %s\nwant\n  %s", g, want)
			}
			if g.DetectedAt.Before(before) || g.DetectedAt.After(time.Now()) {
				t.Fatalf("detected at %v, not during the run", g.DetectedAt)
			}
		})
	}
}

// TestRepairConflictsOverflow: beyond the rate limit, conflicts are
// counted (detected and dropped) but not written.
func TestRepairConflictsOverflow(t *testing.T) {
	a, b := NewMemRegion(testNS), NewMemRegion(testNS)
	const n = 5
	for i := range n {
		pk := []byte(fmt.Sprint("pk", i))
		a.Put(testNS, pk, nil, tsOf(int64(i)*64, 1), false, []byte("x"), 0)
		b.Put(testNS, pk, nil, tsOf(int64(i)*64+64, 2), false, []byte("y"), 0)
	}
	log := conflicts.NewMemory()
	m := NewMetrics()
	r, err := New(regionsOf([]*MemRegion{a, b}), Options{Segments: 1, Metrics: m, ConflictSink: log,
		Conflicts: ConflictConfig{PerSecond: 1e-9, Burst: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	total := conflictCounter(t, m, "tidemark_conflicts_total", map[string]string{"namespace": testNS, "detected_by": "repair"})
	dropped := conflictCounter(t, m, "tidemark_conflicts_dropped_total", map[string]string{"namespace": testNS, "detected_by": "repair", "reason": "rate_limited"})
	if total != n || dropped != n-2 || log.Writes() != 2 || rep.Conflicts != n {
		t.Fatalf("counted %v, dropped %v, written %d, report %d; want %d, %d, 2, %d", total, dropped, log.Writes(), rep.Conflicts, n, n-2, n)
	}
}

// TestRepairConflictsWriteFailure: a log that fails is counted as dropped
// and does not fail the repair.
func TestRepairConflictsWriteFailure(t *testing.T) {
	a, b := NewMemRegion(testNS), NewMemRegion(testNS)
	a.Put(testNS, []byte("pk"), nil, tsOf(0, 1), false, []byte("x"), 0)
	b.Put(testNS, []byte("pk"), nil, tsOf(64, 2), false, []byte("y"), 0)
	log := conflicts.NewMemory()
	log.Fault = func() error { return fmt.Errorf("injected") }
	m := NewMetrics()
	r, err := New(regionsOf([]*MemRegion{a, b}), Options{Segments: 1, Metrics: m, ConflictSink: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), testNS); err != nil {
		t.Fatal(err)
	}
	if d := conflictCounter(t, m, "tidemark_conflicts_dropped_total", map[string]string{"reason": "write_failed"}); d != 1 {
		t.Fatalf("dropped %v, want 1", d)
	}
	if v, _, _ := a.Get(testNS, []byte("pk"), nil); string(v.Value) != "y" {
		t.Fatalf("region a holds %q, want the winner y", v.Value)
	}
}

// TestRepairConflictsOff: Disabled and dry runs record nothing; a bad
// window fails New.
func TestRepairConflictsOff(t *testing.T) {
	for _, opts := range []Options{{Conflicts: ConflictConfig{Disabled: true}}, {DryRun: true}} {
		a, b := NewMemRegion(testNS), NewMemRegion(testNS)
		a.Put(testNS, []byte("pk"), nil, tsOf(0, 1), false, []byte("x"), 0)
		b.Put(testNS, []byte("pk"), nil, tsOf(64, 2), false, []byte("y"), 0)
		log := conflicts.NewMemory()
		opts.ConflictSink, opts.Segments = log, 1
		r, err := New(regionsOf([]*MemRegion{a, b}), opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Run(context.Background(), testNS); err != nil {
			t.Fatal(err)
		}
		if log.Writes() != 0 {
			t.Fatalf("%+v: %d conflicts written, want none", opts.Conflicts, log.Writes())
		}
	}
	_, err := New(regionsOf([]*MemRegion{NewMemRegion(testNS), NewMemRegion(testNS)}), Options{Conflicts: ConflictConfig{Window: -time.Second}})
	if err == nil {
		t.Fatal("New accepted a negative conflict window")
	}
}
