package integration

// Incremental runs against the real regions (docs/repair.md, "Incremental
// runs"): through the storage-attached index on ver, Cassandra aggregates
// only the rows at or above the run's cutoff, so regions that agree there
// cost a few bytes per segment and no read of the rest.

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// waitIndexQueryable waits until every region of f answers the indexed
// aggregate over the whole ring three times in a row: the version index is
// built on every replica asked (system_views.sai_column_indexes is one
// node's view). Any error is a "not yet": while the index builds a
// replica refuses (ErrNoVersionIndex), and a read meeting a compaction
// fails.
func (f *repairFixture) waitIndexQueryable(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for _, reg := range f.cqlRegions(t) {
		inc := reg.Reader.(repair.IncrementalFingerprinter)
		for ok := 0; ok < 3; {
			// A cutoff no row reaches: the index answers at once (or says
			// it cannot); one that every row passes would read them all,
			// one by one, and time out on a large table.
			_, err := inc.FingerprintSince(ctx, repairNS, repair.Segments(1)[0], math.MaxInt64)
			switch {
			case err == nil:
				ok++
				continue
			case time.Now().After(deadline):
				t.Fatalf("region %s: the version index cannot answer after 2m: %v", reg.Name, err)
			}
			ok = 0
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestIncrementalRunReadsOnlyWhatChanged(t *testing.T) {
	f := newRepairFixture(t, "a", "b")
	ctx := context.Background()
	const n = 20_000
	ts := time.Now().UnixMicro()
	rows := baseRows(n, ts, 100)
	cutoff := ts + 1_000
	// Damage below the cutoff that no store wrote: b lost a row (a lost
	// disk: no write of b's own, no tombstone).
	f.load(t, "a", rows)
	f.load(t, "b", append(rows[:11:11], rows[12:]...))
	const segments = 8

	// Before the index exists (a dry run creates none), Cassandra refuses
	// the indexed aggregate; every segment is compared in full instead,
	// and the lost row is found.
	dry, err := repair.New(f.cqlRegions(t), repair.Options{Segments: segments, Since: cutoff, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := dry.Run(ctx, repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SegmentsUnchanged != 0 || rep.RowsDiffering != 1 {
		t.Fatalf("dry run without the index: %d segments unchanged, %d rows differing; want 0 (compared in full) and 1", rep.SegmentsUnchanged, rep.RowsDiffering)
	}

	// A write at or above the cutoff that b lacks (not settled there yet).
	newPK, newCK := rowKey(4242)
	f.load(t, "a", []repairRow{{pk: newPK, ck: newCK, value: []byte("unsettled"), ts: cutoff + 10}})
	for _, reg := range f.cqlRegions(t) {
		if err := reg.Reader.(repair.IncrementalFingerprinter).EnsureVersionIndex(ctx, repairNS); err != nil {
			t.Fatal(err)
		}
	}
	f.waitIndexQueryable(t)
	r, err := repair.New(f.cqlRegions(t), repair.Options{Segments: segments, Since: cutoff})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = r.Run(ctx, repairNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("incremental run: %d of %d segments unchanged, %d rows scanned, %d differing, %d written, %d bytes read",
		rep.SegmentsUnchanged, rep.Segments, rep.RowsScanned, rep.RowsDiffering, rep.RowsWritten, bytesRead(rep))
	if rep.SegmentsUnchanged < segments-2 || rep.RowsWritten < 1 || rep.Since != cutoff || !rep.Complete {
		t.Fatalf("incremental run: %+v; want at most 2 segments compared in full (the unsettled write's, perhaps the lost row's), the write repaired", rep)
	}
	cb, _ := repair.NewCQLRegion(f.sessions["b"], f.ks)
	if v, ok, err := cb.ReadRow(ctx, repairNS, newPK, newCK); err != nil || !ok || string(v.Value) != "unsettled" {
		t.Fatalf("b holds %+v (%v, %v) after the incremental run, want the write above the cutoff", v, ok, err)
	}

	// In sync at and above the cutoff: one indexed aggregate per segment
	// and region, nothing else.
	rep, err = r.Run(ctx, repairNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SegmentsUnchanged != segments || rep.RowsScanned != 0 || rep.RowsInSync != 1 || rep.RangesScanned != 0 {
		t.Fatalf("second incremental run: %+v; want every segment unchanged, the one row at or above the cutoff in sync, nothing scanned", rep)
	}
	if b := bytesRead(rep); b != 2*segments*7*12 {
		t.Errorf("read %d bytes, want %d (one aggregate of seven bigints per segment and region)", b, 2*segments*7*12)
	}

	// A full run reads everything: whatever the incremental runs left
	// below the cutoff is found, and the regions are identical.
	full, err := repair.New(f.cqlRegions(t), repair.Options{Segments: segments})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.Run(ctx, repairNS); err != nil {
		t.Fatal(err)
	}
	f.assertIdentical(t)
}
