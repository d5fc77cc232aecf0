package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// TestPausedRunGivesUpTheRunSlot: a namespace's full run that is paused
// (by an operator, `repaird pause`, or by its window) gives the daemon's
// one run slot up, so that another namespace can run — on schedule or
// when the API asks for one now — and takes it back when resumed. (It
// kept the slot while paused: a namespace paused for a day kept every
// other one from the full repair its tombstone retention requires.)
func TestPausedRunGivesUpTheRunSlot(t *testing.T) {
	yaml := "home: a\nkeyspace: ks\nnamespaces: [users, orders]\nregions:\n  - {name: a, contact_points: [\"127.0.0.1:1\"], local_dc: a}\n  - {name: b, contact_points: [\"127.0.0.2:1\"], local_dc: b}\nrepair: {interval: 1h, segments: 4}\nhttp: {listen: \"127.0.0.1:0\"}\n"
	ctx := context.Background()
	store := repair.NewMemProgress()
	// users: a complete run ten minutes ago (next due in 50 minutes).
	last := time.Now().Add(-10 * time.Minute)
	store.Now = func() time.Time { return last }
	urun, _ := store.Begin(ctx, "users", 4)
	_ = store.Finish(ctx, urun, last.Add(time.Minute))
	store.Now = nil
	// orders: an unfinished run an operator paused.
	orun, err := store.Begin(ctx, "orders", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetDirective(ctx, orun, repair.Directive{State: repair.StatePaused, By: "operator"}); err != nil {
		t.Fatal(err)
	}

	a, b := repair.NewMemRegion("users", "orders"), repair.NewMemRegion("users", "orders")
	d, err := New(parseConfig(t, yaml), Options{RetryDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.locator = nil
	d.openProgress = func(context.Context) (repair.ProgressStore, error) { return store, nil }
	d.openRegions = func(context.Context) ([]repair.Region, error) {
		return []repair.Region{{Name: "a", Reader: a, Writer: a}, {Name: "b", Reader: b, Writer: b}}, nil
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventuallyTrue(t, "the paused run of orders is resumed and holds", 5*time.Second, func() bool {
		return d.runState("orders") == "paused"
	})
	// What POST /v1/namespaces/users/runs does: ask the schedule for a run now.
	d.triggers["users"] <- struct{}{}
	eventuallyTrue(t, "a full run of users, asked for now while the run of orders is paused", 5*time.Second, func() bool {
		return d.Status().Namespaces["users"].LastFullRepair.After(urun.StartedAt)
	})
	if st := d.runState("orders"); st != "paused" {
		t.Fatalf("orders is %q while users ran, want still paused", st)
	}
	// Resumed, the run of orders takes the slot back and completes.
	if err := store.SetDirective(ctx, orun, repair.Directive{State: repair.StateRunning, By: "operator"}); err != nil {
		t.Fatal(err)
	}
	eventuallyTrue(t, "the resumed run of orders completes", 10*time.Second, func() bool {
		return !d.Status().Namespaces["orders"].LastFullRepair.IsZero()
	})
}
