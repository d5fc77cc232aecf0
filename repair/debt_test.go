package repair

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func debtRegions(t *testing.T) ([]*MemRegion, *Repairer) {
	t.Helper()
	mems := []*MemRegion{NewMemRegion("ns"), NewMemRegion("ns"), NewMemRegion("ns")}
	var regions []Region
	for i, m := range mems {
		regions = append(regions, Region{Name: string(rune('a' + i)), Reader: m, Writer: m})
	}
	r, err := New(regions, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return mems, r
}

// TestDrainDebtRepairsExactlyTheKeys: each entry's key is read once per
// region, written where it is missing (a value, a deletion marker), and
// the entry removed; a key already converged is removed without a write;
// nothing else is read or written.
func TestDrainDebtRepairsExactlyTheKeys(t *testing.T) {
	mems, r := debtRegions(t)
	a, b, c := mems[0], mems[1], mems[2]
	const ts = 1_700_000_000_000_001
	// k1: in a and b, missing in c. k2: a deletion marker c lacks (c holds
	// the older value). k3: everywhere already. k4: not in the debt at all.
	for _, m := range []*MemRegion{a, b} {
		m.Put("ns", []byte("p"), []byte("k1"), ts, false, []byte("v1"), 0)
		m.Put("ns", []byte("p"), []byte("k2"), ts+64, true, nil, 0)
	}
	c.Put("ns", []byte("p"), []byte("k2"), ts, false, []byte("old"), 0)
	for _, m := range mems {
		m.Put("ns", []byte("p"), []byte("k3"), ts, false, []byte("v3"), 0)
	}
	a.Put("ns", []byte("p"), []byte("k4"), ts, false, []byte("v4"), 0)
	debt := NewMemDebt()
	for _, k := range []string{"k1", "k2", "k3"} {
		debt.Add(NewDebtEntry("c", "ns", []byte("p"), []byte(k), ts, "pool_full", time.Now()))
	}
	rep, err := r.DrainDebt(context.Background(), debt, "c", 100)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 3 || rep.Repaired != 3 || rep.Pending != 0 {
		t.Errorf("entries %d repaired %d pending %d, want 3 3 0", rep.Entries, rep.Repaired, rep.Pending)
	}
	if rep.RowsRead != 9 {
		t.Errorf("rows read %d, want 9 (3 keys x 3 regions)", rep.RowsRead)
	}
	if rep.RowsWritten != 2 {
		t.Errorf("rows written %d, want 2 (k1 and k2 to c)", rep.RowsWritten)
	}
	if v, _, ok := c.Get("ns", []byte("p"), []byte("k1")); !ok || string(v.Value) != "v1" || v.Timestamp != ts {
		t.Errorf("c k1 = %+v %v, want v1 at %d", v, ok, ts)
	}
	if v, _, ok := c.Get("ns", []byte("p"), []byte("k2")); !ok || !v.Deleted || v.Timestamp != ts+64 {
		t.Errorf("c k2 = %+v %v, want the marker at %d", v, ok, ts+64)
	}
	if _, _, ok := c.Get("ns", []byte("p"), []byte("k4")); ok {
		t.Error("k4 was not in the debt but was repaired")
	}
	if debt.Len() != 0 {
		t.Errorf("%d entries left", debt.Len())
	}
}

// TestDrainDebtKeepsWhatFails: a key whose target does not answer stays in
// the debt, counted pending with its age; a newer entry of a key repaired
// meanwhile is not removed by the older one's removal.
func TestDrainDebtKeepsWhatFails(t *testing.T) {
	mems, r := debtRegions(t)
	a, c := mems[0], mems[2]
	a.Put("ns", []byte("p"), []byte("k1"), 100, false, []byte("v1"), 0)
	debt := NewMemDebt()
	at := time.Now().Add(-time.Minute)
	debt.Add(NewDebtEntry("c", "ns", []byte("p"), []byte("k1"), 100, "sink_error", at))
	c.Fault = func(op string) error {
		if op == "read" {
			return errors.New("c is down")
		}
		return nil
	}
	rep, err := r.DrainDebt(context.Background(), debt, "c", 100)
	if err == nil {
		t.Fatal("no error with region c down")
	}
	if rep.Pending != 1 || rep.Repaired != 0 || !rep.Oldest.Equal(at) || debt.Len() != 1 {
		t.Errorf("pending %d repaired %d oldest %v left %d, want 1 0 %v 1", rep.Pending, rep.Repaired, rep.Oldest, debt.Len(), at)
	}
	c.Fault = nil
	// A later loss of the same key is recorded between the list and the
	// removal: RemoveDebt of the older entry leaves it.
	newer := NewDebtEntry("c", "ns", []byte("p"), []byte("k1"), 200, "sink_error", time.Now())
	older, _ := debt.ListDebt(context.Background(), "c", 10)
	debt.Add(newer)
	if err := debt.RemoveDebt(context.Background(), older[0]); err != nil {
		t.Fatal(err)
	}
	if debt.Len() != 1 {
		t.Fatal("removing the older entry removed the newer one")
	}
}

// TestDrainDebtReportsOverflows: overflow entries are returned, not
// repaired, so that the caller runs a full repair.
func TestDrainDebtReportsOverflows(t *testing.T) {
	_, r := debtRegions(t)
	debt := NewMemDebt()
	debt.Add(NewOverflowEntry("c", "ns", 5))
	for i := range 3 {
		debt.Add(NewDebtEntry("c", "ns", []byte("p"), fmt.Appendf(nil, "k%d", i), 1, "pool_full", time.Now()))
	}
	rep, err := r.DrainDebt(context.Background(), debt, "c", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Overflows) != 1 || rep.Overflows[0].Namespace != "ns" || !rep.Overflows[0].Overflow {
		t.Errorf("overflows %+v, want the one of ns", rep.Overflows)
	}
	if rep.Entries != 3 || rep.Repaired != 3 {
		t.Errorf("entries %d repaired %d, want 3 3 (absent everywhere: converged)", rep.Entries, rep.Repaired)
	}
	if debt.Len() != 1 {
		t.Errorf("%d entries left, want the overflow entry", debt.Len())
	}
}

// A dry run reports and writes nothing, so DrainDebt must keep the debt
// of a key it did not repair: before the fix RepairKeys counted a
// reported key as converged and the entry was removed while c still
// lacked the row, the only record of it gone until a full run (found by
// review).
func TestDrainDebtDryRunKeepsEntries(t *testing.T) {
	mems := []*MemRegion{NewMemRegion("ns"), NewMemRegion("ns"), NewMemRegion("ns")}
	var regions []Region
	for i, m := range mems {
		regions = append(regions, Region{Name: string(rune('a' + i)), Reader: m, Writer: m})
	}
	r, err := New(regions, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	const ts = 1_700_000_000_000_001
	for _, m := range mems[:2] {
		m.Put("ns", []byte("p"), []byte("k1"), ts, false, []byte("v1"), 0)
	}
	for _, m := range mems {
		m.Put("ns", []byte("p"), []byte("k2"), ts, false, []byte("v2"), 0)
	}
	debt := NewMemDebt()
	debt.Add(NewDebtEntry("c", "ns", []byte("p"), []byte("k1"), ts, "pool_full", time.Now()))
	debt.Add(NewDebtEntry("c", "ns", []byte("p"), []byte("k2"), ts, "pool_full", time.Now()))
	rep, err := r.DrainDebt(context.Background(), debt, "c", 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, held := mems[2].Get("ns", []byte("p"), []byte("k1")); held {
		t.Fatal("a dry run wrote the row to c")
	}
	if debt.Len() != 1 {
		t.Errorf("%d entries left, want k1's (c lacks it; the dry run wrote nothing); k2, held everywhere, removed", debt.Len())
	}
	if rep.Repaired != 1 || rep.RowsWritten != 0 {
		t.Errorf("repaired %d written %d, want 1 (k2, already everywhere) and 0", rep.Repaired, rep.RowsWritten)
	}
}
