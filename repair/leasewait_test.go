package repair

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// inspectingProgress is a MemProgress that can tell who holds a lease.
type inspectingProgress struct{ *MemProgress }

func (p inspectingProgress) LeaseOwner(_ context.Context, run RunInfo, segment int) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.leases[leaseKey(run, segment)]
	if !ok || !p.now().Before(l.until) {
		return "", false, nil
	}
	return l.owner, true, nil
}

// holdLease makes owner take segment's lease of the namespace's run and keep
// renewing it (with a short TTL) until the returned release is called, which
// gives the lease up.
func holdLease(t *testing.T, store ProgressStore, segments, segment int, owner string) (run RunInfo, release func()) {
	t.Helper()
	ctx := context.Background()
	run, err := store.Begin(ctx, testNS, segments)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 50 * time.Millisecond
	if ok, err := store.Acquire(ctx, run, segment, owner, ttl); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ttl / 5)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				_ = store.Release(ctx, run, segment, owner)
				return
			case <-tick.C:
				if ok, err := store.Renew(ctx, run, segment, owner, ttl); !ok || err != nil {
					t.Errorf("%s lost its lease: %v %v", owner, ok, err)
					return
				}
			}
		}
	}()
	var once sync.Once
	release = func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(release)
	return run, release
}

func TestRunGivesUpSegmentLeasedForever(t *testing.T) {
	tests := []struct {
		name  string
		store func() ProgressStore
		owner string // what the error says about the owner
	}{
		{"store names the owner", func() ProgressStore { return inspectingProgress{NewMemProgress()} }, `owner "stuck"`},
		{"store cannot tell", func() ProgressStore { return NewMemProgress() }, "unknown owner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, 21))
			mem := newTestRegions(2)
			genModel(rng, mem, 100, Segments(4))
			store := tc.store()
			run, _ := holdLease(t, store, 4, 2, "stuck")
			const ttl = 40 * time.Millisecond // LeaseWait defaults to 400ms
			var progressErrs []error
			r, _ := New(regionsOf(mem), Options{Segments: 4, Progress: store, Owner: "me", LeaseTTL: ttl,
				RetryBackoff: 5 * time.Millisecond, MaxAttempts: 3,
				OnProgress: func(p Progress) {
					if p.Err != nil {
						progressErrs = append(progressErrs, p.Err)
					}
				}})
			// Run must end on its own, well before this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			rep, err := r.Run(ctx, testNS)
			took := time.Since(start)
			if ctx.Err() != nil {
				t.Fatalf("Run waited for the leased segment until the test's deadline (%v): %v", took, err)
			}
			if took < 10*ttl {
				t.Errorf("Run took %v, less than the default LeaseWait (%v)", took, 10*ttl)
			}
			if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrSegmentLeased) {
				t.Fatalf("Run = %v, want ErrIncomplete wrapping ErrSegmentLeased", err)
			}
			for _, want := range []string{"#2 (", tc.owner, run.ID} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if rep.SegmentsFailed != 1 || rep.SegmentsRepaired != 3 || rep.Complete || len(rep.Errors) != 1 {
				t.Fatalf("report %+v: want 1 failed, 3 repaired, incomplete", rep)
			}
			if se := rep.Errors[0]; se.Segment.Index != 2 || se.Attempts != 3 || !errors.Is(se, ErrSegmentLeased) {
				t.Errorf("segment error %+v: want segment 2 after 3 attempts, ErrSegmentLeased", se)
			}
			if len(progressErrs) != 3 {
				t.Errorf("OnProgress saw %d failed attempts, want 3: %v", len(progressErrs), progressErrs)
			}
			recs, _ := store.Segments(context.Background(), run)
			if rec := recs[2]; rec.Done || rec.Attempts != 3 || rec.Owner != "me" || !strings.Contains(rec.LastError, tc.owner) {
				t.Errorf("progress of segment 2 = %+v: want 3 failed attempts by me naming %s", rec, tc.owner)
			}
		})
	}
}

func TestRunRepairsSegmentOnceLeaseReleased(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 23))
	mem := newTestRegions(3)
	keys := genModel(rng, mem, 200, Segments(4))
	store := NewMemProgress()
	run, release := holdLease(t, store, 4, 1, "busy")
	const hold = 150 * time.Millisecond
	time.AfterFunc(hold, release)
	r, _ := New(regionsOf(mem), Options{Segments: 4, Progress: store, Owner: "me", LeaseTTL: 40 * time.Millisecond,
		LeaseWait: 2 * time.Second, RetryBackoff: time.Millisecond, MaxAttempts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := r.Run(ctx, testNS)
	if err != nil {
		t.Fatalf("Run = %v, report %+v", err, rep)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("Run took %v: it did not wait for the lease held %v", took, hold)
	}
	if !rep.Complete || rep.SegmentsRepaired != 4 || rep.SegmentsFailed != 0 {
		t.Errorf("report %+v: want all 4 segments repaired by this owner", rep)
	}
	recs, _ := store.Segments(context.Background(), run)
	if rec := recs[1]; !rec.Done || rec.Owner != "me" || rec.Attempts != 1 {
		t.Errorf("progress of segment 1 = %+v: want done by me at the first attempt (waiting is no attempt)", rec)
	}
	checkConverged(t, mem, keys)
}
