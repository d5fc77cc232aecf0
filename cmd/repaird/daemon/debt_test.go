package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// TestOverflowStartsAFullRunAndIsRemovedAfterIt: an overflow entry (debt a
// store could not record) triggers a full run of its namespace, and stays
// until a full run that started after it has completed.
func TestOverflowStartsAFullRunAndIsRemovedAfterIt(t *testing.T) {
	d, err := New(testConfig(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := d.cfg.Names()[0]
	at := time.Now().Add(-time.Minute)
	o := repair.NewOverflowEntry("b", ns, at.UnixMicro())
	o.At = at
	debt := repair.NewMemDebt()
	debt.Add(o)
	ctx := context.Background()

	d.handleOverflows(ctx, debt, []repair.DebtEntry{o})
	select {
	case <-d.triggers[ns]:
	default:
		t.Fatal("no full run triggered for the overflowed namespace")
	}
	if debt.Len() != 1 {
		t.Fatal("the overflow entry was removed before a full run")
	}
	// A full run that started before the overflow does not cover it.
	d.status.restored(ns, repair.RunInfo{ID: "old", StartedAt: at.Add(-time.Hour), FinishedAt: at.Add(-time.Minute)})
	d.handleOverflows(ctx, debt, []repair.DebtEntry{o})
	if debt.Len() != 1 {
		t.Fatal("removed after a run that started before the overflow")
	}
	<-d.triggers[ns] // triggered again
	d.status.restored(ns, repair.RunInfo{ID: "new", StartedAt: at.Add(time.Second), FinishedAt: at.Add(time.Minute)})
	d.handleOverflows(ctx, debt, []repair.DebtEntry{o})
	if debt.Len() != 0 {
		t.Fatal("the overflow entry stayed after a full run that started after it")
	}
}
