package repair

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The rate limit holds for ranges smaller than a page of rows too: a run
// over 200 rows in 8 segments charged none of them, since a scan took
// tokens only after each full page (flushEvery = 256 rows). At 10 rows a
// second its 400 row reads need about 19 s; the run must still be going
// when its 2 s deadline ends it.
func TestRateLimitChargesShortRanges(t *testing.T) {
	ms := newTestRegions(2)
	fill(ms, 200)
	rep := runPastDeadline(t, ms, Options{Segments: 8, Parallelism: 1, RowsPerSecond: 10, DisableFingerprints: true})
	if rep.Complete {
		t.Fatalf("a run of 400 row reads at 10 rows/s completed within 2 s (%d rows scanned): the limit was not applied", rep.RowsScanned)
	}
}

// runPastDeadline runs a repair of ms with opts under a 2 s deadline and
// fails t unless the deadline, not an error, ended it.
func runPastDeadline(t *testing.T, ms []*MemRegion, opts Options) *Report {
	t.Helper()
	r, err := New(regionsOf(ms), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := r.Run(ctx, testNS)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run ended with %v, want the deadline", err)
	}
	if err == nil && !rep.Complete {
		t.Fatal("run ended incomplete without an error")
	}
	return rep
}

// Rows found in sync by their fingerprints are charged to the rate limit
// as if scanned: once per region, as a digest scan charges each region's
// rows. 1000 rows in 2 regions at 250 rows/s is 2000 row reads against a
// limiter of 500 a second (burst 500): at least 3 s. Charged once per run
// instead (before the fix, found by review), they took 1 s: the servers
// read an in-sync table twice as fast as rows_per_second allows.
func TestRateLimitChargesInSyncRowsPerRegion(t *testing.T) {
	ms, scans, _ := fpRegions(2)
	fill(ms, 1000)
	rep := runPastDeadline(t, ms, Options{Segments: 1, RowsPerSecond: 250})
	if rep.Complete {
		t.Fatalf("1000 in-sync rows in 2 regions at 250 rows/s done within 2 s (%d rows in sync): charged once, not per region", rep.RowsInSync)
	}
	if n := total(scans); n != 0 {
		t.Fatalf("%d digest scans: the rows were to be found in sync by fingerprints", n)
	}
}
