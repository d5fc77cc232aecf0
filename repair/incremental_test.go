package repair

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tidemark/tidemark/internal/schema"
)

// incRegions is fpRegions that also counts each region's FingerprintSince
// queries.
func incRegions(n int) ([]*MemRegion, []*atomic.Int64, []*atomic.Int64, []*atomic.Int64) {
	ms, scans, aggs := fpRegions(n)
	since := make([]*atomic.Int64, n)
	for i, m := range ms {
		since[i] = new(atomic.Int64)
		prev := m.Fault
		m.Fault = func(op string) error {
			if op == "fingerprint_since" {
				since[i].Add(1)
			}
			return prev(op)
		}
	}
	return ms, scans, aggs, since
}

// cutoff is the Since of the tests: above every version fill writes.
const cutoff = 1_000_000

func incremental(t *testing.T, ms []*MemRegion, progress ProgressStore) *Report {
	t.Helper()
	return runWith(t, ms, Options{Segments: 8, Since: cutoff, Progress: progress})
}

// runWith runs one repair of testNS over ms with opts, failing the test
// on an error.
func runWith(t *testing.T, ms []*MemRegion, opts Options) *Report {
	t.Helper()
	r, err := New(regionsOf(ms), opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestIncrementalRunReadsOnlyRowsSinceItsCutoff: regions in sync below
// the cutoff cost an incremental run one indexed aggregate per segment
// and region, no full aggregate and no scan; the run is recorded under
// its own key and is not a full repair.
func TestIncrementalRunReadsOnlyRowsSinceItsCutoff(t *testing.T) {
	ms, scans, aggs, since := incRegions(3)
	fill(ms, 5000)
	progress := NewMemProgress()
	rep := incremental(t, ms, progress)
	if n := total(scans) + total(aggs); n != 0 {
		t.Errorf("%d digest scans and full aggregates, want none: nothing at or above the cutoff differs", n)
	}
	if n := total(since); n != 3*8 {
		t.Errorf("%d indexed aggregates, want one per segment and region (24)", n)
	}
	if rep.SegmentsUnchanged != 8 || rep.SegmentsInSync != 8 || rep.RowsInSync != 0 || rep.RowsScanned != 0 || !rep.Complete || rep.Since != cutoff {
		t.Errorf("report %+v: want 8 segments unchanged, no row read, since %d", rep, cutoff)
	}
	for _, m := range ms {
		if m.IndexEnsured != 1 {
			t.Errorf("version index ensured %d times in a region, want once before the run", m.IndexEnsured)
		}
	}
	ctx := context.Background()
	if _, ok, _ := progress.LastFinished(ctx, testNS); ok {
		t.Errorf("the incremental run was recorded as the namespace's last full run")
	}
	if _, ok, _ := progress.LastFinished(ctx, IncrementalKey(testNS)); !ok {
		t.Errorf("the incremental run was not recorded under %q", IncrementalKey(testNS))
	}
}

// TestIncrementalRunRepairsWhatDiffersSinceItsCutoff: a write at or above
// the cutoff that one region holds and the others lack (not yet settled
// everywhere) makes its segment differ; the segment is compared in full
// and the regions converge.
func TestIncrementalRunRepairsWhatDiffersSinceItsCutoff(t *testing.T) {
	ms, _, aggs, _ := incRegions(3)
	fill(ms, 2000)
	pk, ck := fpKey(77)
	ms[0].Put(testNS, pk, ck, cutoff+5, false, []byte("new"), 0)
	rep := incremental(t, ms, nil)
	if rep.SegmentsUnchanged != 7 || rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
		t.Errorf("report %+v: want 7 segments unchanged, the eighth compared in full, 1 row differing and written", rep)
	}
	if total(aggs) == 0 {
		t.Errorf("the differing segment was not compared by its full fingerprints")
	}
	for i, m := range ms {
		if v, _, ok := m.Get(testNS, pk, ck); !ok || string(v.Value) != "new" || v.Timestamp != cutoff+5 {
			t.Errorf("region %d holds %+v (%v), want the write at %d", i, v, ok, cutoff+5)
		}
	}
}

// TestIncrementalRunTrustsTheCutoff: damage below the cutoff — a row a
// region lost, which no store write explains — is not an incremental
// run's to find: the watermark vouches for those versions, and only a
// full run reads them. The full run finds it.
func TestIncrementalRunTrustsTheCutoff(t *testing.T) {
	ms, _, _, _ := incRegions(3)
	fill(ms, 2000)
	pk, ck := fpKey(42)
	lose(ms[1], pk, ck)
	if rep := incremental(t, ms, nil); rep.SegmentsUnchanged != 8 || rep.RowsDiffering != 0 {
		t.Errorf("report %+v: an incremental run read below its cutoff", rep)
	}
	if rep := runWith(t, ms, Options{Segments: 8}); rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
		t.Errorf("full run: %+v, want the lost row found and written", rep)
	}
}

// TestIncrementalRunWithoutIndexComparesInFull: a region whose version
// index cannot answer yet (being built) makes every segment compared in
// full: nothing is taken for in sync on the index's word.
func TestIncrementalRunWithoutIndexComparesInFull(t *testing.T) {
	ms, _, aggs, _ := incRegions(3)
	fill(ms, 2000)
	ms[2].IndexUnavailable = true
	pk, ck := fpKey(42)
	lose(ms[1], pk, ck)
	rep := incremental(t, ms, nil)
	if rep.SegmentsUnchanged != 0 || rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
		t.Errorf("report %+v: want no segment unchanged and the lost row found by the full comparison", rep)
	}
	if total(aggs) < 3*8 {
		t.Errorf("%d full aggregates, want every segment's", total(aggs))
	}
}

// TestIncrementalRunSeesAWriterWithoutVer: a row rewritten by a writer
// that does not set ver (a release before it, which sets fp) keeps its
// old ver cell; the subset's sum(writetime(ver)) then trails its
// sum(writetime(digest)) and the segment is compared in full rather than
// taken for in sync — whether or not that writer sets fp.
func TestIncrementalRunSeesAWriterWithoutVer(t *testing.T) {
	for name, insert := range map[string]func(m *MemRegion, pk, ck []byte, c schema.Cells, ts int64){
		"sets fp": func(m *MemRegion, pk, ck []byte, c schema.Cells, ts int64) {
			m.InsertWithoutVersion(testNS, pk, ck, c, ts, 0)
		},
		"sets no fp": func(m *MemRegion, pk, ck []byte, c schema.Cells, ts int64) {
			m.InsertWithoutFingerprint(testNS, pk, ck, c, ts, 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ms, _, _, _ := incRegions(3)
			fill(ms, 2000)
			pk, ck := fpKey(9)
			for _, m := range ms {
				m.Put(testNS, pk, ck, cutoff+1, false, []byte("v1"), 0)
			}
			// Every region: the rewrite alone does not make the subsets
			// differ, only the guard can tell.
			for _, m := range ms {
				insert(m, pk, ck, schema.RowCells(false, []byte("v2"), 0), cutoff+9)
			}
			rep := incremental(t, ms, nil)
			if rep.SegmentsUnchanged != 7 {
				t.Errorf("report %+v: want the rewritten row's segment (and only it) compared in full", rep)
			}
		})
	}
}

// TestIncrementalOptionsRefused: an incremental run needs fingerprints,
// readers that aggregate by version, no Scope, and a Since not negative.
func TestIncrementalOptionsRefused(t *testing.T) {
	ms := newTestRegions(2)
	rg := &TokenRange{Start: -100, End: 100}
	for name, opts := range map[string]Options{
		"fingerprints disabled": {Since: cutoff, DisableFingerprints: true},
		"with a scope":          {Since: cutoff, Scope: Scope{Range: rg}},
		"negative":              {Since: -1},
	} {
		if _, err := New(regionsOf(ms), opts); !errors.Is(err, ErrIncrementalUnsupported) {
			t.Errorf("%s: New = %v, want ErrIncrementalUnsupported", name, err)
		}
	}
	regions := regionsOf(ms)
	regions[1].Reader = struct{ RegionReader }{ms[1]}
	if _, err := New(regions, Options{Since: cutoff}); !errors.Is(err, ErrIncrementalUnsupported) {
		t.Errorf("a reader without FingerprintSince: New = %v, want ErrIncrementalUnsupported", err)
	}
}

// lose removes a row from m as a lost disk would: no write, no marker.
func lose(m *MemRegion, pk, ck []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tables[testNS], string(schema.PartitionKeyBytes(pk, ck)))
}

// TestIncrementalRunWhoseIndexedReadFailsComparesInFull: an indexed
// aggregate that fails (Cassandra 5.0 answers UNKNOWN when a compaction
// replaces the SSTables it reads) is not a failed segment: the segment is
// compared in full, and the run completes.
func TestIncrementalRunWhoseIndexedReadFailsComparesInFull(t *testing.T) {
	ms, _, _, _ := incRegions(2)
	fill(ms, 1000)
	prev := ms[1].Fault
	ms[1].Fault = func(op string) error {
		if op == "fingerprint_since" {
			return errors.New("Operation failed - received 0 responses and 1 failures: UNKNOWN")
		}
		return prev(op)
	}
	pk, ck := fpKey(3)
	lose(ms[0], pk, ck)
	rep := incremental(t, ms, nil)
	if !rep.Complete || rep.SegmentsUnchanged != 0 || rep.IndexedFailures < 4 || rep.IndexedFailures+rep.SegmentsComparedOutright != 8 || rep.RowsWritten != 1 {
		t.Errorf("report %+v: want every segment compared in full (indexed failures, then outright), the lost row written, the run complete", rep)
	}
}

// TestIncrementalRunStopsAskingWhenMostSegmentsChanged: when the indexed
// aggregates of the first segments all differ (dense change above the
// cutoff), the next segments are compared in full without asking, one in
// eight still asking; every changed row is still repaired.
func TestIncrementalRunStopsAskingWhenMostSegmentsChanged(t *testing.T) {
	ms, _, _, since := incRegions(2)
	fill(ms, 4000)
	for i := 0; i < 4000; i += 20 { // in every segment
		pk, ck := fpKey(i)
		ms[0].Put(testNS, pk, ck, cutoff+int64(i), false, []byte("changed"), 0)
	}
	rep := runWith(t, ms, Options{Segments: 32, Since: cutoff})
	if rep.RowsWritten != 200 {
		t.Errorf("%d rows written, want the 200 changed", rep.RowsWritten)
	}
	if n := since[0].Load(); n >= 32 || n < 4 || rep.SegmentsComparedOutright != 32-int(n) {
		t.Errorf("%d indexed aggregates in region a and %d segments compared outright, of 32: want the first 4 asked, then one in 8, the rest outright", n, rep.SegmentsComparedOutright)
	}
}
