package repair

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/schema"
)

// TestRepairTieTable: for every tie of the shared tie table that Tidemark
// can write (legacy rows are markers whose value is bound null: a row
// version cannot describe the mix of cells they leave, and repair only
// ever writes row format 2, so only the cell model and Cassandra take
// them), region a holding write a and region b write b, one Run leaves
// both regions holding the row Cassandra keeps — the same deleted, value,
// timestamp and expiry, and the same cells as one region that received
// both writes — and a second Run finds nothing to do.
func TestRepairTieTable(t *testing.T) {
	ties, err := cells.LoadTies("../internal/cells/testdata/ties.txt")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tie := range ties {
		if tie.HasLegacy() {
			continue
		}
		kept, ok := tie.Kept()
		if !ok {
			t.Fatalf("%s: a mixed result without a legacy write: the repair test needs a kept write", tie.Name)
		}
		checked++
		t.Run(tie.Name, func(t *testing.T) {
			mem := newTestRegions(3)
			both := mem[2] // what one region keeps of both writes
			pk := pkAt(7, "tie")
			put := func(m *MemRegion, w cells.TieWrite) {
				m.Put(testNS, pk, []byte("ck"), w.Timestamp, w.Deleted, w.Value, time.Duration(w.TTL)*time.Second)
			}
			put(mem[0], tie.A)
			put(mem[1], tie.B)
			put(both, tie.A)
			put(both, tie.B)
			r, err := New(regionsOf(mem[:2]), Options{Segments: 3})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Run(context.Background(), testNS)
			if err != nil {
				t.Fatal(err)
			}
			var wantExpires int64
			if kept.TTL > 0 {
				wantExpires = fixedNow.Unix() + kept.TTL
			}
			want, wantDigest, _ := both.Get(testNS, pk, []byte("ck"))
			for i, m := range mem[:2] {
				got, digest, ok := m.Get(testNS, pk, []byte("ck"))
				switch {
				case !ok:
					t.Errorf("region %d lost the row", i)
				case got.Deleted != kept.Deleted || (!kept.Deleted && !bytes.Equal(got.Value, kept.Value)) ||
					got.Timestamp != kept.Timestamp || got.Expires != wantExpires:
					t.Errorf("region %d holds %+v, Cassandra keeps write %s (%+v, expires %d)", i, got, tie.Keeps, kept, wantExpires)
				case digest != wantDigest || fmt.Sprint(got) != fmt.Sprint(want):
					t.Errorf("region %d holds %+v digest %x; one region with both writes holds %+v digest %x", i, got, digest, want, wantDigest)
				}
			}
			if rep.RowsWritten != rep.RowsDiffering || rep.RowsSkipped != 0 {
				t.Errorf("report %+v: want every differing row written", rep)
			}
			rep2, err := r.Run(context.Background(), testNS)
			if err != nil || rep2.RowsDiffering != 0 || rep2.RowsWritten != 0 {
				t.Errorf("second run: differing %d, written %d, %v; want nothing", rep2.RowsDiffering, rep2.RowsWritten, err)
			}
		})
	}
	if checked < 10 {
		t.Fatalf("only %d ties checked", checked)
	}
}

// slowWriter writes a MemRegion, then moves the clock on: the time a
// repair spends between its scan and its later writes (a throttle, a slow
// region).
type slowWriter struct {
	*MemRegion
	clock *fakeClock
	by    time.Duration
}

func (s slowWriter) WriteRow(ctx context.Context, ns string, w *Write) error {
	err := s.MemRegion.WriteRow(ctx, ns, w)
	s.clock.Advance(s.by)
	return err
}

// TestRepairNeverExtendsTTL (finding 7, "Repair can extend a TTL"): a copy
// written a minute after the scan expires when the original does. Before,
// a marker's TTL was the scanned TTL less the time since the row left the
// merge, and a value's the TTL read with it, so a write made later than
// that (a slow or throttled repair) outlived the original by the delay.
func TestRepairNeverExtendsTTL(t *testing.T) {
	for _, deleted := range []bool{true, false} {
		t.Run(fmt.Sprintf("deleted=%v", deleted), func(t *testing.T) {
			clock := &fakeClock{now: fixedNow}
			mem := newTestRegions(3)
			for _, m := range mem {
				m.Now = clock.Now
			}
			pk, ck := pkAt(5, "ttl"), []byte("c")
			mem[0].Put(testNS, pk, ck, 10, deleted, []byte("v"), 100*time.Second)
			expires := fixedNow.Unix() + 100
			regs := regionsOf(mem)
			regs[1].Writer = slowWriter{MemRegion: mem[1], clock: clock, by: time.Minute}
			r, err := New(regs, Options{Segments: 1, Concurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Run(context.Background(), testNS)
			if err != nil || rep.RowsWritten != 1 || rep.Regions[2].RowsWritten != 1 {
				t.Fatalf("Run = %+v, %v; want the row written to b and c", rep, err)
			}
			now := clock.Now().Unix() // a minute after the scan
			for i, m := range mem {
				v, _, ok := m.Get(testNS, pk, ck)
				if !ok || v.Expires != expires || now+int64(v.TTL) > expires {
					t.Errorf("region %d at %d: %+v %v; want expiry %d and cells gone by then (TTL <= %d)", i, now, v, ok, expires, expires-now)
				}
			}
			clock.Advance(time.Duration(expires-now) * time.Second)
			for i, m := range mem {
				if v, _, ok := m.Get(testNS, pk, ck); ok {
					t.Errorf("region %d still holds %+v at the original's expiry", i, v)
				}
			}
		})
	}
}

// TestRepairSkipsWinnerExpiredBeforeWrite: a winner whose expiry passes
// between the scan and its write is not written (the writer refuses it) and
// is counted as skipped.
func TestRepairSkipsWinnerExpiredBeforeWrite(t *testing.T) {
	clock := &fakeClock{now: fixedNow}
	mem := newTestRegions(2)
	for _, m := range mem {
		m.Now = clock.Now
	}
	pk := pkAt(5, "m")
	mem[0].Put(testNS, pk, nil, 10, true, nil, 30*time.Second)
	mem[1].Fault = func(op string) error {
		if op == "write" {
			clock.Advance(time.Minute)
		}
		return nil
	}
	r, _ := New(regionsOf(mem), Options{Segments: 1})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.RowsDiffering != 1 || rep.RowsWritten != 0 || rep.RowsSkipped != 1 {
		t.Fatalf("Run = %+v, %v; want 1 differing, 0 written, 1 skipped", rep, err)
	}
	if mem[1].Len(testNS) != 0 {
		t.Error("an expired marker was written")
	}
	if err := mem[1].WriteRow(context.Background(), testNS, &Write{PK: pk, Timestamp: 10, Deleted: true, Expires: fixedNow.Unix()}); !errors.Is(err, ErrExpired) {
		t.Errorf("WriteRow of an expired row = %v, want ErrExpired", err)
	}
}

// TestRepairIgnoresExpiredRows (finding 9): a row whose absolute expiry
// has passed, but whose cells a region still holds with a longer TTL (a
// node applied the write late), is absent: it is not copied to the other
// regions, and not counted as differing. If it is the winner and an older
// version lives in another region, nothing is copied either (the winner
// is logically absent; docs/repair.md, "Expiry"): the row is counted as
// differing and skipped, and the older version stays where it is.
func TestRepairIgnoresExpiredRows(t *testing.T) {
	mem := newTestRegions(3)
	late := func(pk []byte, ts int64, value string) {
		// Expired 10 s ago, but the node applied it late: its cells live
		// another hour.
		mem[0].Insert(testNS, pk, nil, schema.RowCells(false, []byte(value), fixedNow.Unix()-10), ts, 3600)
	}
	alone, over := pkAt(1, "alone"), pkAt(2, "over")
	late(alone, 20, "gone")
	late(over, 20, "gone")
	mem[1].Put(testNS, over, nil, 10, false, []byte("older"), 0)
	r, _ := New(regionsOf(mem), Options{Segments: 2})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 1 || rep.RowsWritten != 0 || rep.RowsSkipped != 1 {
		t.Errorf("report %+v: want only %q differing, skipped, nothing written", rep, over)
	}
	for i := 1; i < 3; i++ {
		if v, _, ok := mem[i].Get(testNS, alone, nil); ok {
			t.Errorf("region %d got the expired row: %+v", i, v)
		}
	}
	if v, _, ok := mem[2].Get(testNS, over, nil); ok {
		t.Errorf("region c got %+v: want nothing, since the winner has expired", v)
	}
	if v, _, ok := mem[1].Get(testNS, over, nil); !ok || string(v.Value) != "older" {
		t.Errorf("region b holds %+v %v, want its older version left alone (nothing copied over it)", v, ok)
	}
	// A live newer version still replaces the expired one.
	mem[2].Put(testNS, alone, nil, 30, false, []byte("new"), 0)
	rep, err = r.Run(context.Background(), testNS)
	if err != nil || rep.RowsWritten != 1 {
		t.Fatalf("Run = %+v, %v", rep, err)
	}
	for i, m := range mem {
		if v, _, ok := m.Get(testNS, alone, nil); !ok || string(v.Value) != "new" || v.Timestamp != 30 {
			t.Errorf("region %d holds %+v %v, want the newer version", i, v, ok)
		}
	}
}

// Diff: an expired row in one region and none (or the same expired row)
// elsewhere is no divergence; an expired row against a live one is.
func TestDiffExpiredIsAbsent(t *testing.T) {
	row := func(ts int64, expired bool) DigestRow {
		return DigestRow{Token: 1, PK: []byte("k"), Timestamp: ts, Digest: 3, Expires: 100, Expired: expired}
	}
	tests := []struct {
		name    string
		a, b    []DigestRow
		differs bool
	}{
		{"expired vs absent", []DigestRow{row(5, true)}, nil, false},
		{"expired vs expired", []DigestRow{row(5, true)}, []DigestRow{row(5, true)}, false},
		{"expired vs live", []DigestRow{row(5, true)}, []DigestRow{row(4, false)}, true},
		{"live vs absent", []DigestRow{row(5, false)}, nil, true},
	}
	for _, tc := range tests {
		st, err := Diff([]RowStream{NewSliceStream(tc.a, nil), NewSliceStream(tc.b, nil)}, func(*Divergence) error { return nil })
		if err != nil || (st.Differing == 1) != tc.differs {
			t.Errorf("%s: differing %d, %v; want differs=%v", tc.name, st.Differing, err, tc.differs)
		}
	}
}

// A marker and values with one timestamp and expiry (other writers only):
// the row written is the cell-wise join — the greatest value kept beside
// deleted = true and the greatest digest — written as two INSERTs, to
// every region, and every region then holds the same cells as one that
// received every write.
func TestResolveTieJoinsMarkerAndValues(t *testing.T) {
	mem := newTestRegions(4)
	pk := pkAt(3, "mix")
	exp := fixedNow.Unix() + 500
	put := func(m *MemRegion, deleted bool, value string) {
		m.Insert(testNS, pk, nil, schema.RowCells(deleted, []byte(value), exp), 9, 500)
	}
	put(mem[0], false, "x")
	put(mem[1], true, "")
	put(mem[2], false, "y")
	for _, w := range []struct {
		deleted bool
		value   string
	}{{false, "x"}, {true, ""}, {false, "y"}} {
		put(mem[3], w.deleted, w.value) // every write in one region
	}
	streams := make([]RowStream, 3)
	for i := range streams {
		streams[i] = mem[i].ScanDigests(context.Background(), testNS, Segments(1)[0], 10)
	}
	var d *Divergence
	if _, err := Diff(streams, func(x *Divergence) error { d = x; return nil }); err != nil || d == nil {
		t.Fatalf("Diff found %v, %v", d, err)
	}
	p := PlanRow(d)
	if p.Action != ActionTie || !p.Winner.Deleted || fmt.Sprint(p.Tied) != "[0 2]" {
		t.Fatalf("PlanRow = %+v, want a tie of the values with a marker", p)
	}
	w, err := ResolveTie(d, p, [][]byte{[]byte("x"), []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Deleted || string(w.Value) != "y" || w.Expires != exp || fmt.Sprint(w.Targets) != "[0 1 2]" || len(w.Cells()) != 2 {
		t.Fatalf("ResolveTie = %+v (%d INSERTs), want the marker joined with value y, to every region, in 2 INSERTs", w, len(w.Cells()))
	}
	for _, r := range w.Targets {
		if err := mem[r].WriteRow(context.Background(), testNS, &w); err != nil {
			t.Fatal(err)
		}
	}
	want := mem[3].tables[testNS][string(schema.PartitionKeyBytes(pk, nil))].cells
	// The fp cells of a tie reconciled cell by cell are not compared: a
	// region that took every write keeps the greatest of their
	// fingerprints, repair writes the join's (docs/repair.md,
	// "Fingerprints": such a row's range is digest-scanned each run).
	want.Fingerprint = cells.Cell{}
	for i := range 3 {
		got := mem[i].tables[testNS][string(schema.PartitionKeyBytes(pk, nil))].cells
		got.Fingerprint = cells.Cell{}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("region %d cells %+v, one region with every write %+v", i, got, want)
		}
	}
}

func TestWriteCells(t *testing.T) {
	digest := schema.Digest(false, []byte("v"))
	tests := []struct {
		name string
		w    Write
		want []schema.Cells
	}{
		{"value", Write{Value: []byte("v"), Digest: digest, Expires: 7},
			[]schema.Cells{{Value: []byte("v"), Digest: digest, Expires: 7}}},
		{"marker keeps its digest", Write{Deleted: true, Digest: 42},
			[]schema.Cells{{Deleted: true, Digest: 42}}},
		{"marker with a value cell", Write{Deleted: true, Value: []byte("v"), Digest: 42, Expires: 7},
			[]schema.Cells{{Value: []byte("v"), Digest: 42, Expires: 7}, {Deleted: true, Digest: 42, Expires: 7}}},
	}
	for _, tc := range tests {
		if got := tc.w.Cells(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: Cells = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
