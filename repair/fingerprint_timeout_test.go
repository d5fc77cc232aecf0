package repair

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// A segment whose aggregate times out (too wide to answer in time) is
// split and asked again: its parts answer, and in-sync parts are not
// scanned.
func TestFingerprintTimeoutSplitsWideRange(t *testing.T) {
	ms, scans, _ := fpRegions(2)
	fill(ms, 200)
	var asked atomic.Int64
	count := ms[1].Fault
	ms[1].Fault = func(op string) error {
		if op == "fingerprint" && asked.Add(1) == 1 {
			return gocql.ErrTimeoutNoResponse // the whole segment: too wide
		}
		return count(op)
	}
	r, err := New(regionsOf(ms), Options{Segments: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), testNS)
	if err != nil || !rep.Complete {
		t.Fatalf("run: complete %v, %v", rep.Complete, err)
	}
	if n := total(scans); n != 0 {
		t.Errorf("%d digest scans: the parts of the timed-out segment answered in sync, none needed", n)
	}
	if rep.RowsInSync != 200 {
		t.Errorf("rows in sync %d, want 200", rep.RowsInSync)
	}
}

// A region whose every aggregate times out (an overloaded region, not a
// wide range) costs a bounded number of queries: a timed-out range is
// split timeoutSplits times in a row, then digest-scanned, and the scan
// repairs what differs. Before the bound every timed-out range was split
// (all parts asked, none derivable) down to FingerprintMaxDepth: 4^15
// queries for a 100-row segment, a run that never finished, and memory
// growing with every level (found by review).
func TestFingerprintTimeoutsBounded(t *testing.T) {
	ms, _, _ := fpRegions(2)
	fill(ms, 100)
	pk, ck := fpKey(1000)
	ms[0].Put(testNS, pk, ck, 5000, false, []byte("only in a"), 0)
	var queries atomic.Int64
	ms[1].Fault = func(op string) error {
		if op == "fingerprint" {
			queries.Add(1)
			return gocql.ErrTimeoutNoResponse
		}
		return nil
	}
	r, err := New(regionsOf(ms), Options{Segments: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := r.Run(ctx, testNS)
	if err != nil || !rep.Complete {
		t.Fatalf("run: complete %v, %v", rep.Complete, err)
	}
	// 1 + 4 + 16 + 64 at fanout 4 and timeoutSplits 3.
	want := int64(0)
	for l, parts := 0, int64(1); l <= timeoutSplits; l, parts = l+1, parts*DefaultFingerprintFanout {
		want += parts
	}
	if n := queries.Load(); n != want {
		t.Errorf("%d aggregate queries to the timing-out region, want %d", n, want)
	}
	if rep.RowsWritten != 1 {
		t.Errorf("rows written %d, want the 1 row region b lacks", rep.RowsWritten)
	}
	if _, _, ok := ms[1].Get(testNS, pk, ck); !ok {
		t.Error("region b still lacks the row after the run")
	}
}
