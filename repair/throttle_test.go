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
	r, err := New(regionsOf(ms), Options{Segments: 8, Parallelism: 1, RowsPerSecond: 10, DisableFingerprints: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep, err := r.Run(ctx, testNS)
	if err == nil || rep.Complete {
		t.Fatalf("a run of 400 row reads at 10 rows/s completed within 2 s (%d rows scanned): the limit was not applied", rep.RowsScanned)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run ended with %v, want the deadline", err)
	}
}
