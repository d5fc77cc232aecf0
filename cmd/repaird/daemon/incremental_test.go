package daemon

import (
	"context"
	"testing"

	"github.com/tidemark/tidemark/repair"
)

// incrementalDaemon is a daemon over two memory regions, users in both,
// whose incremental runs are not scheduled (the test calls
// incrementalPass).
func incrementalDaemon(t *testing.T) (*Daemon, *repair.MemRegion, *repair.MemRegion, *repair.MemProgress) {
	t.Helper()
	d, err := New(parseConfig(t, scheduleYAML), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.locator = nil
	a, b := repair.NewMemRegion("users"), repair.NewMemRegion("users")
	store := repair.NewMemProgress()
	d.openProgress = func(context.Context) (repair.ProgressStore, error) { return store, nil }
	d.openRegions = func(context.Context) ([]repair.Region, error) {
		return []repair.Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}}, nil
	}
	return d, a, b, store
}

// TestIncrementalPassFromThePublishedWatermark: an incremental pass takes
// the least published watermark as its cutoff, writes what differs at or
// above it (a write b lacks), reads nothing below it (a row b lost, which
// no store write explains, waits for a full run), reports it in /status,
// and records no full repair.
func TestIncrementalPassFromThePublishedWatermark(t *testing.T) {
	d, a, b, store := incrementalDaemon(t)
	const wm = 5_000_000
	for i := range 200 {
		pk := []byte{byte(i), 1}
		a.Put("users", pk, nil, int64(100+i), false, []byte("v"), 0)
		if i != 7 { // lost in b, below the cutoff
			b.Put("users", pk, nil, int64(100+i), false, []byte("v"), 0)
		}
	}
	a.Put("users", []byte("new"), nil, wm+10, false, []byte("unsettled"), 0) // at or above it
	ctx := context.Background()
	d.incrementalPass(ctx, "users")
	if st := d.Status().Namespaces["users"].LastIncremental; st == nil || st.Skipped != skipWatermark {
		t.Fatalf("without a published watermark: %+v, want skipped: %q", st, skipWatermark)
	}
	d.wm.mu.Lock()
	d.wm.last["a"], d.wm.last["b"] = wm+1000, wm
	d.wm.mu.Unlock()
	d.incrementalPass(ctx, "users")
	st := d.Status().Namespaces["users"].LastIncremental
	if st == nil || !st.Complete || st.Error != "" || st.RowsWritten != 1 || st.Since.UnixMicro() != wm || st.SegmentsUnchanged != st.Segments-1 {
		t.Fatalf("incremental status %+v: want complete, since the least watermark %d, one row written, every other segment unchanged", st, wm)
	}
	if v, _, ok := b.Get("users", []byte("new"), nil); !ok || string(v.Value) != "unsettled" {
		t.Errorf("b lacks the write above the cutoff after the incremental run")
	}
	if _, _, ok := b.Get("users", []byte{7, 1}, nil); ok {
		t.Errorf("the incremental run repaired a row below its cutoff: it read what the watermark vouches for")
	}
	if _, ok, _ := store.LastFinished(ctx, "users"); ok {
		t.Errorf("the incremental run was recorded as a full repair")
	}
	if n := d.Status().Namespaces["users"]; !n.LastFullRepair.IsZero() {
		t.Errorf("/status shows a last full repair %v after an incremental run alone", n.LastFullRepair)
	}
}
