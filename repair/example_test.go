package repair_test

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/repair"
)

// Repair two in-memory regions: region b missed a write and a delete.
func Example() {
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	a.Put("users", []byte("alice"), nil, 100, false, []byte("v1"), 0)
	b.Put("users", []byte("alice"), nil, 100, false, []byte("v1"), 0)
	a.Put("users", []byte("bob"), nil, 200, false, []byte("v2"), 0) // b missed it
	a.Put("users", []byte("carol"), nil, 100, false, []byte("x"), 0)
	b.Put("users", []byte("carol"), nil, 100, false, []byte("x"), 0)
	a.Put("users", []byte("carol"), nil, 300, true, nil, 240*time.Hour) // b missed the delete

	r, err := repair.New([]repair.Region{
		{Name: "a", Reader: a, Writer: a},
		{Name: "b", Reader: b, Writer: b},
	}, repair.Options{Segments: 4})
	if err != nil {
		panic(err)
	}
	rep, err := r.Run(context.Background(), "users")
	if err != nil {
		panic(err)
	}
	fmt.Printf("scanned %d, differing %d, written %d\n", rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten)
	for _, rs := range rep.Regions {
		fmt.Printf("%s: written %d, value fetches %d\n", rs.Region, rs.RowsWritten, rs.ValueFetches)
	}
	v, _, _ := b.Get("users", []byte("carol"), nil)
	fmt.Println("carol deleted in b:", v.Deleted)
	// Output:
	// scanned 2, differing 2, written 2
	// a: written 0, value fetches 1
	// b: written 2, value fetches 0
	// carol deleted in b: true
}

// Diff is the pure core: it merges sorted streams and reports the rows whose
// versions differ.
func ExampleDiff() {
	row := func(tok int64, pk string, ts int64) repair.DigestRow {
		return repair.DigestRow{Token: tok, PK: []byte(pk), Timestamp: ts, Digest: ts}
	}
	a := repair.NewSliceStream([]repair.DigestRow{row(1, "x", 5), row(2, "y", 5)}, nil)
	b := repair.NewSliceStream([]repair.DigestRow{row(1, "x", 5), row(2, "y", 7), row(3, "z", 1)}, nil)
	st, _ := repair.Diff([]repair.RowStream{a, b}, func(d *repair.Divergence) error {
		p := repair.PlanRow(d)
		fmt.Printf("%s: %s from region %d to %v\n", d.PK, p.Action, p.Source, p.Targets)
		return nil
	})
	fmt.Println("rows", st.Rows, "differing", st.Differing)
	// Output:
	// y: copy from region 1 to [0]
	// z: copy from region 1 to [0]
	// rows 3 differing 2
}

// Segments split the token ring into contiguous ranges.
func ExampleSegments() {
	for _, s := range repair.Segments(4) {
		fmt.Println(s)
	}
	// Output:
	// #0 [-9223372036854775808, -4611686018427387904]
	// #1 (-4611686018427387904, 0]
	// #2 (0, 4611686018427387904]
	// #3 (4611686018427387904, 9223372036854775807]
}

// A process that runs repair publishes the last full repair it finds in the
// progress store at startup, so that the gauge survives restarts. The time
// published is when the run started, not when it finished.
func ExampleMetrics_SetLastFullRepair() {
	ctx := context.Background()
	started := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	store := repair.NewMemProgress() // a CQLProgress in production
	store.Now = func() time.Time { return started }
	run, _ := store.Begin(ctx, "users", 64)
	_ = store.Finish(ctx, run, started.Add(20*time.Hour))

	m := repair.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	if last, ok, err := store.LastFinished(ctx, "users"); err == nil && ok {
		m.SetLastFullRepair("users", last.StartedAt)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "tidemark_repair_last_full_repair_timestamp_seconds" {
			v := mf.GetMetric()[0].GetGauge().GetValue()
			fmt.Println(time.Unix(int64(v), 0).UTC().Format(time.RFC3339))
		}
	}
	// Output:
	// 2026-03-01T08:00:00Z
}

// Steer a run while it works: it starts paused (so nothing is written),
// is slowed down, then resumed; processes that share a progress store obey
// the same Directive.
func ExampleControl() {
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	for i := range 100 {
		a.Put("users", fmt.Appendf(nil, "k%03d", i), nil, 100, false, []byte("v"), 0) // b missed them all
	}
	ctl := repair.NewControl()
	ctl.Pause(repair.HoldOperator)
	begun := make(chan repair.RunInfo, 1)
	r, err := repair.New([]repair.Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}},
		repair.Options{Segments: 4, Control: ctl, OnRun: func(ri repair.RunInfo) { begun <- ri }})
	if err != nil {
		panic(err)
	}
	done := make(chan *repair.Report)
	go func() {
		rep, _ := r.Run(context.Background(), "users")
		done <- rep
	}()
	<-begun
	time.Sleep(50 * time.Millisecond)
	fmt.Println("paused:", ctl.State().Holding, "rows in b:", b.Len("users"))
	_ = ctl.SetRowsPerSecond(10000)
	ctl.Resume(repair.HoldOperator)
	rep := <-done
	fmt.Println("complete:", rep.Complete, "rows in b:", b.Len("users"))
	// Output:
	// paused: true rows in b: 0
	// complete: true rows in b: 100
}

// Repair only part of a namespace: a token range of two of the regions.
// A partial run is not a full repair.
func ExampleScope() {
	regions := []repair.Region{}
	for _, name := range []string{"a", "b", "c"} {
		m := repair.NewMemRegion("users")
		regions = append(regions, repair.Region{Name: name, Reader: m, Writer: m})
	}
	r, err := repair.New(regions, repair.Options{Scope: repair.Scope{
		Range:   &repair.TokenRange{Start: 0, End: 1 << 62},
		Regions: []string{"c", "a"},
	}})
	if err != nil {
		panic(err)
	}
	rep, err := r.Run(context.Background(), "users")
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Partial, rep.Scope, len(rep.Regions))
	// Output: true range (0, 4611686018427387904] regions a,c 2
}

// An incremental run compares only the rows at or above its cutoff — in
// production the least published convergence watermark
// (Store.ConvergedBefore of every region) — and takes the rest on the
// watermark's word: here b lacks a write made after the cutoff, which is
// repaired; the segments with nothing new are in sync without a read.
func ExampleOptions_since() {
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	for i := range 100 {
		pk := []byte(fmt.Sprintf("user%03d", i))
		a.Put("users", pk, nil, 100, false, []byte("v1"), 0)
		b.Put("users", pk, nil, 100, false, []byte("v1"), 0)
	}
	const watermark = 1_000
	a.Put("users", []byte("user007"), nil, watermark+5, false, []byte("v2"), 0) // not in b yet

	r, err := repair.New([]repair.Region{
		{Name: "a", Reader: a, Writer: a},
		{Name: "b", Reader: b, Writer: b},
	}, repair.Options{Segments: 4, Since: watermark})
	if err != nil {
		panic(err)
	}
	rep, err := r.Run(context.Background(), "users")
	if err != nil {
		panic(err)
	}
	fmt.Printf("segments unchanged %d of %d, written %d\n", rep.SegmentsUnchanged, rep.Segments, rep.RowsWritten)
	v, _, _ := b.Get("users", []byte("user007"), nil)
	fmt.Println("user007 in b:", string(v.Value))
	// Output:
	// segments unchanged 3 of 4, written 1
	// user007 in b: v2
}
