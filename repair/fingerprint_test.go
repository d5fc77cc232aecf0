package repair

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tidemark/tidemark/internal/schema"
)

// fpRegions returns n in-memory regions with the default (hashed) tokens,
// counting each region's digest scans and fingerprint queries.
func fpRegions(n int) ([]*MemRegion, []*atomic.Int64, []*atomic.Int64) {
	ms := newTestRegions(n)
	scans := make([]*atomic.Int64, n)
	aggs := make([]*atomic.Int64, n)
	for i, m := range ms {
		m.Token = DefaultMemToken
		scans[i], aggs[i] = new(atomic.Int64), new(atomic.Int64)
		m.Fault = func(op string) error {
			switch op {
			case "scan":
				scans[i].Add(1)
			case "fingerprint":
				aggs[i].Add(1)
			}
			return nil
		}
	}
	return ms, scans, aggs
}

func fpKey(i int) (pk, ck []byte) {
	return []byte(fmt.Sprintf("p%07d", i/10)), binary.BigEndian.AppendUint32(nil, uint32(i%10))
}

// fill writes rows 0..n-1 (10 per partition) into every region, the same
// version everywhere, half of them with a TTL, every 7th a marker.
func fill(ms []*MemRegion, n int) {
	for i := range n {
		pk, ck := fpKey(i)
		for _, m := range ms {
			m.Put(testNS, pk, ck, int64(100+i), i%7 == 0, []byte(fmt.Sprintf("v%d", i)), 0)
		}
	}
}

func total(cs []*atomic.Int64) (n int64) {
	for _, c := range cs {
		n += c.Load()
	}
	return n
}

func TestFingerprintsInSyncNoScan(t *testing.T) {
	ms, scans, aggs := fpRegions(3)
	fill(ms, 5000)
	r, err := New(regionsOf(ms), Options{Segments: 8})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if n := total(scans); n != 0 {
		t.Errorf("%d digest scans of regions in sync, want 0", n)
	}
	if n := total(aggs); n != 3*8 {
		t.Errorf("%d fingerprint queries, want one per segment and region (24)", n)
	}
	if rep.SegmentsInSync != 8 || rep.RowsInSync != 5000 || rep.RowsScanned != 0 || rep.RowsDiffering != 0 || !rep.Complete {
		t.Errorf("report %+v: want 8 segments and 5000 rows in sync, nothing scanned", rep)
	}
	for _, rs := range rep.Regions {
		if rs.BytesRead != 8*fingerprintBytes || rs.FingerprintQueries != 8 {
			t.Errorf("region %s read %d bytes in %d queries, want %d in 8", rs.Region, rs.BytesRead, rs.FingerprintQueries, 8*fingerprintBytes)
		}
	}
}

func TestFingerprintsFindOneRowAmongMany(t *testing.T) {
	ms, scans, aggs := fpRegions(2)
	const n = 20000
	fill(ms, n)
	pk, ck := fpKey(12345)
	ms[1].Put(testNS, pk, ck, 1_000_000, false, []byte("newer"), 0)
	r, _ := New(regionsOf(ms), Options{Segments: 2})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
		t.Fatalf("differing %d written %d, want 1 and 1", rep.RowsDiffering, rep.RowsWritten)
	}
	if rep.RowsScanned > DefaultFingerprintLeafRows || rep.SegmentsInSync != 1 || rep.RowsInSync+rep.RowsScanned != n {
		t.Errorf("scanned %d rows (want <= %d), %d segments in sync (want 1), %d rows in sync",
			rep.RowsScanned, DefaultFingerprintLeafRows, rep.SegmentsInSync, rep.RowsInSync)
	}
	if s := total(scans); s != 2 {
		t.Errorf("%d digest scans, want one per region", s)
	}
	var bytes int64
	for _, rs := range rep.Regions {
		bytes += rs.BytesRead
	}
	t.Logf("%d fingerprint queries, %d bytes read for %d rows (%.2f B/row)", total(aggs), bytes, n, float64(bytes)/n)
	if v, _, _ := ms[0].Get(testNS, pk, ck); string(v.Value) != "newer" {
		t.Errorf("region a holds %q, want the newer value", v.Value)
	}
	scans[0].Store(0)
	rep, err = r.Run(context.Background(), testNS)
	if err != nil || rep.SegmentsInSync != 2 || scans[0].Load() != 0 {
		t.Errorf("second run: %d segments in sync, %d scans, %v; want 2, 0", rep.SegmentsInSync, scans[0].Load(), err)
	}
}

// Rows written before the fp column existed are never judged in sync by
// their sums: a range holding them is digest-scanned, then backfilled, so
// that the next run finds it in sync without a scan.
func TestFingerprintsRowsWithoutFingerprint(t *testing.T) {
	t.Run("all rows", func(t *testing.T) {
		ms, scans, _ := fpRegions(2)
		for i := range 2000 {
			pk, ck := fpKey(i)
			for _, m := range ms {
				m.InsertWithoutFingerprint(testNS, pk, ck, schema.RowCells(false, []byte("v"), 0), int64(10+i), 0)
			}
		}
		r, _ := New(regionsOf(ms), Options{Segments: 4})
		rep, err := r.Run(context.Background(), testNS)
		if err != nil {
			t.Fatal(err)
		}
		if rep.SegmentsInSync != 0 || rep.RowsScanned != 2000 || total(scans) != 8 {
			t.Errorf("%d segments in sync, %d rows scanned, %d scans; want 0, 2000, 8 (one per segment and region)",
				rep.SegmentsInSync, rep.RowsScanned, total(scans))
		}
		if rep.FingerprintsBackfilled != 4000 || rep.Regions[0].FingerprintsBackfilled != 2000 {
			t.Errorf("backfilled %d rows (%d in region a), want 4000 (2000)", rep.FingerprintsBackfilled, rep.Regions[0].FingerprintsBackfilled)
		}
		rep, err = r.Run(context.Background(), testNS)
		if err != nil || rep.SegmentsInSync != 4 || rep.RowsScanned != 0 || rep.FingerprintsBackfilled != 0 {
			t.Errorf("second run: %d segments in sync, %d scanned, %d backfilled, %v; want 4, 0, 0",
				rep.SegmentsInSync, rep.RowsScanned, rep.FingerprintsBackfilled, err)
		}
	})
	t.Run("one differing among fingerprinted rows", func(t *testing.T) {
		ms, _, _ := fpRegions(2)
		fill(ms, 3000)
		// The same key without fingerprints in both regions, different
		// versions: counts and sums of fp agree, count(*) - count(fp)
		// must keep it from looking in sync.
		pk, ck := []byte("legacy"), []byte{}
		ms[0].InsertWithoutFingerprint(testNS, pk, ck, schema.RowCells(false, []byte("old"), 0), 5, 0)
		ms[1].InsertWithoutFingerprint(testNS, pk, ck, schema.RowCells(false, []byte("new"), 0), 6, 0)
		r, _ := New(regionsOf(ms), Options{Segments: 1})
		rep, err := r.Run(context.Background(), testNS)
		if err != nil {
			t.Fatal(err)
		}
		if rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
			t.Fatalf("differing %d written %d, want 1 and 1", rep.RowsDiffering, rep.RowsWritten)
		}
		if v, _, _ := ms[0].Get(testNS, pk, ck); string(v.Value) != "new" {
			t.Errorf("region a holds %q, want the newer value", v.Value)
		}
		if rep.RowsScanned > 3001/4 {
			t.Errorf("scanned %d rows: the fingerprinted rows around the legacy one should be found in sync", rep.RowsScanned)
		}
		// Repair wrote the row, with a fingerprint, to region a; region
		// b's row, the winner already, got its fingerprint from the
		// backfill, so the next run finds the segment in sync.
		if rep.FingerprintsBackfilled != 1 || rep.Regions[1].FingerprintsBackfilled != 1 {
			t.Errorf("backfilled %d rows (%d in region b), want 1 in region b", rep.FingerprintsBackfilled, rep.Regions[1].FingerprintsBackfilled)
		}
		rep, err = r.Run(context.Background(), testNS)
		if err != nil || rep.SegmentsInSync != 1 || rep.RowsDiffering != 0 || rep.RowsScanned != 0 {
			t.Errorf("second run: %d segments in sync, %d differing, %d scanned, %v; want 1, 0, 0", rep.SegmentsInSync, rep.RowsDiffering, rep.RowsScanned, err)
		}
	})
	t.Run("stale fingerprint from an old writer", func(t *testing.T) {
		ms, _, _ := fpRegions(2)
		fill(ms, 1000)
		// A writer without the fp column rewrites a row in region a with
		// a newer timestamp and the same value: its fp cell (and digest)
		// stay those of the old version; writetime(digest) moves.
		pk, ck := fpKey(17)
		v, _, _ := ms[0].Get(testNS, pk, ck)
		ms[0].InsertWithoutFingerprint(testNS, pk, ck, schema.RowCells(v.Deleted, v.Value, 0), 5_000_000, 0)
		r, _ := New(regionsOf(ms), Options{Segments: 1})
		rep, err := r.Run(context.Background(), testNS)
		if err != nil || rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
			t.Fatalf("differing %d written %d (%v), want 1 and 1", rep.RowsDiffering, rep.RowsWritten, err)
		}
		// Region a's fp cell is older than its digest: the backfill
		// gives it the version's own, and the next run is in sync.
		if rep.Regions[0].FingerprintsBackfilled != 1 {
			t.Errorf("backfilled %d rows in region a, want the stale one", rep.Regions[0].FingerprintsBackfilled)
		}
		rep, err = r.Run(context.Background(), testNS)
		if err != nil || rep.SegmentsInSync != 1 || rep.RowsScanned != 0 {
			t.Errorf("second run: %d segments in sync, %d scanned, %v; want 1, 0", rep.SegmentsInSync, rep.RowsScanned, err)
		}
	})
}

// Rows that share one token cannot be told apart by splitting the range:
// the descent stops at FingerprintMaxDepth and scans.
func TestFingerprintsSplitDepthBounded(t *testing.T) {
	ms, _, aggs := fpRegions(2)
	for _, m := range ms {
		m.Token = func([]byte) int64 { return 42 }
	}
	fill(ms, 200)
	pk, ck := fpKey(99)
	ms[0].Put(testNS, pk, ck, 9_000_000, false, []byte("newer"), 0)
	r, _ := New(regionsOf(ms), Options{Segments: 1, FingerprintMaxDepth: 5})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.RowsDiffering != 1 || rep.RowsWritten != 1 {
		t.Fatalf("differing %d written %d (%v), want 1 and 1", rep.RowsDiffering, rep.RowsWritten, err)
	}
	// One range differs per level: 1 + 4 x 4 levels, per region.
	if n := total(aggs); n > 2*(1+4*4) {
		t.Errorf("%d fingerprint queries, want at most %d (depth 5)", n, 2*(1+4*4))
	}
	if rep.RowsScanned != 200 {
		t.Errorf("scanned %d rows, want the 200 of the token", rep.RowsScanned)
	}
}

// A region without fingerprints (its Reader is no Fingerprinter), or
// DisableFingerprints, means digest scans.
func TestFingerprintsDisabled(t *testing.T) {
	ms, scans, aggs := fpRegions(2)
	fill(ms, 100)
	r, _ := New(regionsOf(ms), Options{Segments: 2, DisableFingerprints: true})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.RowsScanned != 100 || total(aggs) != 0 || total(scans) != 4 {
		t.Fatalf("scanned %d rows, %d fingerprint queries, %d scans (%v); want 100, 0, 4", rep.RowsScanned, total(aggs), total(scans), err)
	}
	regions := regionsOf(ms)
	regions[1].Reader = struct{ RegionReader }{ms[1]}
	r, _ = New(regions, Options{Segments: 2})
	rep, err = r.Run(context.Background(), testNS)
	if err != nil || rep.RowsScanned != 100 || total(aggs) != 0 {
		t.Fatalf("scanned %d rows, %d fingerprint queries (%v); want 100, 0", rep.RowsScanned, total(aggs), err)
	}
}

// A failing fingerprint query fails the attempt, which is retried.
func TestFingerprintQueryFailureRetried(t *testing.T) {
	ms, _, _ := fpRegions(2)
	fill(ms, 100)
	var failed atomic.Bool
	ms[1].Fault = func(op string) error {
		if op == "fingerprint" && !failed.Swap(true) {
			return fmt.Errorf("node down")
		}
		return nil
	}
	r, _ := New(regionsOf(ms), Options{Segments: 1, RetryBackoff: 1})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete || rep.SegmentsInSync != 1 {
		t.Fatalf("run: %+v, %v; want complete, in sync after a retry", rep, err)
	}
}

func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]TokenRange{{Start: 10, End: 20}, {Start: MinToken, End: -5}, {Start: 0, End: 10}, {Start: 30, End: 40}})
	want := "[#0 [-9223372036854775808, -5] #0 (0, 20] #0 (30, 40]]"
	if fmt.Sprint(got) != want {
		t.Errorf("mergeRanges = %v, want %s", got, want)
	}
}

// At dense divergence the descent stops early and scans: few aggregate
// queries, every differing row found.
func TestFingerprintsDenseDivergenceScans(t *testing.T) {
	ms, _, aggs := fpRegions(2)
	const n = 5000
	fill(ms, n)
	for i := 0; i < n; i += 10 { // 10 %
		pk, ck := fpKey(i)
		ms[0].Put(testNS, pk, ck, 1_000_000+int64(i), false, []byte("newer"), 0)
	}
	r, _ := New(regionsOf(ms), Options{Segments: 1})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.RowsDiffering != n/10 || rep.RowsWritten != n/10 {
		t.Fatalf("differing %d written %d (%v), want %d", rep.RowsDiffering, rep.RowsWritten, err, n/10)
	}
	// 16 ranges of 312 rows all differing only say p > 1.1 %; 64 of 78
	// say p > 6 %: the pieces of depth 3 are scanned.
	if q := total(aggs); q > 2*(1+4+16+64) {
		t.Errorf("%d aggregate queries at 10%% divergence, want at most %d (scan from depth 3)", q, 2*(1+4+16+64))
	}
	if rep.RangesScanned != 1 {
		t.Errorf("%d ranges scanned, want 1 (the differing pieces merged)", rep.RangesScanned)
	}
}

// Dense divergence across segments: once the segments descended were
// mostly scanned anyway, the run scans the next ones outright (probing one
// in densityProbeEvery), with every differing row still fixed; at sparse
// divergence every segment is descended.
func TestFingerprintsDenseRunScansOutright(t *testing.T) {
	const n, segments = 8000, 32
	t.Run("dense", func(t *testing.T) {
		ms, _, aggs := fpRegions(2)
		fill(ms, n)
		for i := 0; i < n; i += 5 { // 20 %
			pk, ck := fpKey(i)
			ms[0].Put(testNS, pk, ck, 1_000_000+int64(i), false, []byte("newer"), 0)
		}
		r, _ := New(regionsOf(ms), Options{Segments: segments, Parallelism: 1})
		rep, err := r.Run(context.Background(), testNS)
		if err != nil || rep.RowsDiffering != n/5 || rep.RowsWritten != n/5 {
			t.Fatalf("differing %d written %d (%v), want %d", rep.RowsDiffering, rep.RowsWritten, err, n/5)
		}
		descended := segments - rep.SegmentsScannedOutright
		if rep.SegmentsScannedOutright < segments/2 || descended < densityMinSegments {
			t.Errorf("%d of %d segments scanned outright, want most (after %d descended)", rep.SegmentsScannedOutright, segments, densityMinSegments)
		}
		t.Logf("%d segments scanned outright, %d aggregate queries", rep.SegmentsScannedOutright, total(aggs))
		lpk, lck := fpKey(n - 5)
		if v, _, _ := ms[1].Get(testNS, lpk, lck); string(v.Value) != "newer" {
			t.Errorf("region b holds %q for the last differing row, want the newer value", v.Value)
		}
	})
	t.Run("sparse", func(t *testing.T) {
		ms, _, _ := fpRegions(2)
		fill(ms, n)
		for i := 0; i < n; i += 1000 {
			pk, ck := fpKey(i)
			ms[0].Put(testNS, pk, ck, 1_000_000+int64(i), false, []byte("newer"), 0)
		}
		r, _ := New(regionsOf(ms), Options{Segments: segments, Parallelism: 1})
		rep, err := r.Run(context.Background(), testNS)
		if err != nil || rep.RowsDiffering != n/1000 || rep.SegmentsScannedOutright != 0 {
			t.Fatalf("differing %d, %d segments scanned outright (%v); want %d, 0", rep.RowsDiffering, rep.SegmentsScannedOutright, err, n/1000)
		}
	})
}

func TestDensityProbesAndForgets(t *testing.T) {
	var d density
	for range densityMinSegments {
		if !d.descend() {
			t.Fatal("skipped a descent before the estimate had its segments")
		}
		d.record(90, 100)
	}
	skipped, probed := 0, 0
	for range 2 * densityProbeEvery {
		if d.descend() {
			probed++
		} else {
			skipped++
		}
	}
	if probed != 2 || skipped != 2*densityProbeEvery-2 {
		t.Fatalf("dense: %d probes, %d skipped of %d; want one probe in %d", probed, skipped, 2*densityProbeEvery, densityProbeEvery)
	}
	for range densityWindow {
		d.record(0, 100) // the probes find segments in sync
	}
	for i := range 2 {
		if !d.descend() {
			t.Fatalf("call %d: still skipping once the latest segments were in sync", i)
		}
	}
}

// A table written before the fp column is scanned in full on its first
// run for want of fingerprints, not for divergence: the run must not take
// that for dense divergence and stop descending, or only its first
// segments would be backfilled.
func TestFingerprintsBackfillWholeLegacyTable(t *testing.T) {
	ms, _, _ := fpRegions(2)
	const n = 4000
	for i := range n {
		pk, ck := fpKey(i)
		for _, m := range ms {
			m.InsertWithoutFingerprint(testNS, pk, ck, schema.RowCells(false, []byte("v"), 0), int64(10+i), 0)
		}
	}
	r, _ := New(regionsOf(ms), Options{Segments: 32, Parallelism: 1})
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || rep.SegmentsScannedOutright != 0 || rep.FingerprintsBackfilled != 2*n {
		t.Fatalf("first run: %d segments scanned outright, %d backfilled (%v); want 0, %d", rep.SegmentsScannedOutright, rep.FingerprintsBackfilled, err, 2*n)
	}
	rep, err = r.Run(context.Background(), testNS)
	if err != nil || rep.SegmentsInSync != 32 || rep.RowsScanned != 0 {
		t.Fatalf("second run: %d segments in sync, %d scanned (%v); want 32, 0", rep.SegmentsInSync, rep.RowsScanned, err)
	}
}
