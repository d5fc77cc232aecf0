package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// errNoTable is a region's answer that is not an availability failure: the
// region is up and refuses the write.
var errNoTable = errors.New("unconfigured table ks.ns (test)")

// TestRejectedWriteNotHinted: a region that refuses a write (an error that
// is not an availability failure) gets no hint, whatever the level and
// whether it is written synchronously or in the background. A synchronous
// refusal that decides the call is returned to the caller (at Any too: a
// refused home write must not succeed on a hint); every refusal is counted
// in writes_rejected_total.
func TestRejectedWriteNotHinted(t *testing.T) {
	cases := []struct {
		name    string
		level   quorum.Level
		rejects string // the region that refuses
		wantErr bool
	}{
		{"any/home", quorum.Any, "a", true},
		{"local_quorum/home", quorum.LocalQuorum, "a", true},
		{"each_quorum/remote", quorum.EachQuorum, "b", true},
		{"local_quorum/async", quorum.LocalQuorum, "b", false},
		{"any/async", quorum.Any, "c", false},
		{"quorum/minority", quorum.Quorum, "b", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newFaultEnv(t, nil)
			e.mem[c.rejects].SetFault(driver.Fault{Err: fmt.Errorf("region said: %w", errNoTable), Ops: []string{driver.OpWrite}})
			err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithConsistency(c.level))
			if closeErr := e.st.Close(); closeErr != nil {
				t.Fatal(closeErr)
			}
			if !c.wantErr {
				if err != nil {
					t.Fatalf("Put: %v, want success", err)
				}
			} else {
				var re *RegionError
				if !errors.As(err, &re) || re.Region != c.rejects || re.Hinted || re.Pending {
					t.Fatalf("Put: %v, want an unhinted RegionError for %s", err, c.rejects)
				}
				if !errors.Is(err, errNoTable) {
					t.Errorf("error %v does not wrap the region's error", err)
				}
				if errors.Is(err, ErrUnavailable) {
					t.Errorf("error %v claims an availability failure", err)
				}
				if !strings.Contains(err.Error(), "not hinted") {
					t.Errorf("message %q does not say the write was not hinted", err)
				}
			}
			for _, r := range regionNamesABC {
				e.checkWrites(t, r, writeOf("pk", "ck", "v", ""))
			}
			if hs := e.hints(); len(hs) != 0 {
				t.Errorf("%d hints stored for a refused write, want none: %+v", len(hs), hs)
			}
			if got := metricValue(t, e.st.metrics.writesRejected.WithLabelValues(c.rejects, "put", "other")); got != 1 {
				t.Errorf("writes_rejected_total{%s,put,other} = %v, want 1", c.rejects, got)
			}
			if got := notHinted(t, e.st, c.rejects); got != 0 {
				t.Errorf("hints_failed_total{%s} = %v, want 0 (a refusal is not a missed hint)", c.rejects, got)
			}
		})
	}
}

// TestFailedCallNamesPendingRegions: an EachQuorum or All write that fails
// on one region while the others have not answered names every region that
// did not ack: the failed one first, then the pending ones with Pending
// set.
func TestFailedCallNamesPendingRegions(t *testing.T) {
	for _, level := range []quorum.Level{quorum.EachQuorum, quorum.All} {
		t.Run(level.String(), func(t *testing.T) {
			e := newFaultEnv(t, nil)
			release := make(chan struct{})
			for _, r := range []string{"a", "c"} {
				e.mem[r].SetFault(driver.Fault{Gate: release})
			}
			e.mem["b"].SetFault(driver.Fault{Err: fmt.Errorf("%w: b is down", ErrUnavailable)})
			err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithConsistency(level))
			close(release)
			if closeErr := e.st.Close(); closeErr != nil {
				t.Fatal(closeErr)
			}
			var ce *ConsistencyError
			if !errors.As(err, &ce) {
				t.Fatalf("Put: %v, want a ConsistencyError", err)
			}
			if got := ce.Regions(); !slices.Equal(got, []string{"b", "a", "c"}) {
				t.Fatalf("error names %v, want [b a c] (failed, then pending): %v", got, err)
			}
			if f := ce.Failed[0]; f.Pending || !f.Hinted || !errors.Is(f.Err, ErrUnavailable) {
				t.Errorf("b: %+v, want a hinted availability failure", f)
			}
			for _, f := range ce.Failed[1:] {
				if !f.Pending || f.Hinted {
					t.Errorf("region %s: Pending=%v Hinted=%v, want pending", f.Region, f.Pending, f.Hinted)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("region %q: put: no answer", f.Region)) {
					t.Errorf("message %q does not report %s as unanswered", err, f.Region)
				}
			}
			var re *RegionError
			if !errors.As(err, &re) || re.Region != "b" {
				t.Errorf("errors.As found %v, want the real failure (b) first", re)
			}
			if ce.Acked != 0 || ce.Required != 3 {
				t.Errorf("Acked %d Required %d, want 0 and 3", ce.Acked, ce.Required)
			}
			for _, r := range regionNamesABC {
				e.checkWrites(t, r, writeOf("pk", "ck", "v", ""))
			}
			checkHints(t, e.hints(), hintOf("b", "pk", "ck", "v"))
		})
	}
}

const thirtyDays = 30 * 24 * time.Hour

func checkTTLs(t *testing.T, ttls []int, n int, want time.Duration) {
	t.Helper()
	if len(ttls) != n {
		t.Fatalf("%d markers written, want %d", len(ttls), n)
	}
	for _, ttl := range ttls {
		// The marker's absolute expiry is now + retention rounded up to a
		// whole second, so its TTL is the retention or one second more,
		// never less.
		if w := int(want / time.Second); ttl < w || ttl > w+1 {
			t.Errorf("marker TTL %ds, want the table's retention %ds (or a second more)", ttl, w)
		}
	}
}

// TestDeleteRetentionNeverGuessed: Delete reads the namespace's retention
// from the first region that answers (home first), caches it, and fails with
// ErrUnavailable naming the namespace when no region answers, writing
// nothing, instead of guessing the default.
func TestDeleteRetentionNeverGuessed(t *testing.T) {
	down := fmt.Errorf("%w: injected", ErrUnavailable)
	retentionDown := driver.Fault{Err: down, Ops: []string{driver.OpTableRetention}}
	ctx := context.Background()

	t.Run("home down, next region answers, cached", func(t *testing.T) {
		e := newFaultEnv(t, nil)
		e.existingTable(t, "other", thirtyDays)
		ns, _ := e.st.Namespace("other")
		e.mem["a"].SetFault(retentionDown)
		for range 2 {
			if err := ns.Delete(ctx, []byte("pk"), []byte("ck")); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("retention asked of %v, want [a b]: home first, then the next region, once", got)
		}
		checkTTLs(t, e.markerTTLs(), 6, thirtyDays)
	})

	t.Run("no region answers", func(t *testing.T) {
		e := newFaultEnv(t, nil)
		e.existingTable(t, "other", thirtyDays)
		ns, _ := e.st.Namespace("other")
		for _, r := range regionNamesABC {
			e.mem[r].SetFault(retentionDown)
		}
		err := ns.Delete(ctx, []byte("pk"), []byte("ck"))
		e.st.bg.Wait()
		if n := len(e.markerTTLs()); n != 0 {
			t.Errorf("%d markers written with an unknown retention, want none", n)
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Delete with no region answering: %v, want ErrUnavailable", err)
		}
		for _, want := range []string{"delete other", "retention", `region "a"`, `region "c"`, "nothing was written"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		}
		// Once a region answers, the next Delete uses the real retention.
		e.mem["a"].SetFault(driver.Fault{})
		if err := ns.Delete(ctx, []byte("pk"), []byte("ck")); err != nil {
			t.Fatal(err)
		}
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"a", "b", "c", "a"}) {
			t.Errorf("retention asked of %v, want [a b c a]", got)
		}
		checkTTLs(t, e.markerTTLs(), 3, thirtyDays)
	})

	t.Run("batch with a deletion", func(t *testing.T) {
		e := newFaultEnv(t, nil)
		e.existingTable(t, "other", thirtyDays)
		ns, _ := e.st.Namespace("other")
		for _, r := range regionNamesABC {
			e.mem[r].SetFault(retentionDown)
		}
		err := ns.PutBatch(ctx, []byte("pk"), []Entry{{CK: []byte("1"), Value: []byte("x")}, {CK: []byte("2"), Delete: true}})
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "batch other") {
			t.Fatalf("PutBatch with a deletion and no region answering: %v, want ErrUnavailable naming the namespace", err)
		}
		if n := len(e.markerTTLs()); n != 0 {
			t.Errorf("%d markers written with an unknown retention, want none", n)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, regionNamesABC) {
			t.Errorf("retention asked of %v, want every region once, home first", got)
		}
	})

	t.Run("table missing everywhere", func(t *testing.T) {
		e := newFaultEnv(t, nil)
		// The region says the table is not there (its own message is not
		// the store's advice).
		e.existingTable(t, "other", thirtyDays)
		ns, _ := e.st.Namespace("other")
		for _, r := range regionNamesABC {
			e.mem[r].SetFault(driver.Fault{Err: ErrNotFound, Ops: []string{driver.OpTableRetention}})
		}
		err := ns.Delete(ctx, []byte("pk"), []byte("ck"))
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		if n := len(e.markerTTLs()); n != 0 {
			t.Errorf("%d markers written for a table with no known retention, want none", n)
		}
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "CreateNamespace") {
			t.Fatalf("Delete on a missing table: %v, want an error pointing at CreateNamespace, not ErrUnavailable", err)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, regionNamesABC) {
			t.Errorf("retention asked of %v, want every region once, home first", got)
		}
	})

	t.Run("open breaker skipped", func(t *testing.T) {
		e := newFaultEnv(t, func(c *Config) {
			c.Breaker = BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Hour}
		})
		e.existingTable(t, "other", thirtyDays)
		ns, _ := e.st.Namespace("other")
		e.mem["a"].SetFault(driver.Fault{Err: down})
		if _, err := e.ns.Get(ctx, []byte("pk"), []byte("ck")); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
		if st := e.st.regions[0].breaker.State(); st != gobreaker.StateOpen {
			t.Fatalf("home breaker %v, want open", st)
		}
		// a is not asked (its breaker is open); b answers.
		if d, err := ns.retention(ctx, opDelete, time.Second); err != nil || d != thirtyDays {
			t.Fatalf("retention = %v, %v; want %v from region b", d, err, thirtyDays)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"b"}) {
			t.Errorf("retention asked of %v, want [b] (a's breaker is open)", got)
		}
		if got := e.asked(driver.OpRead); !slices.Equal(got, []string{"a"}) {
			t.Errorf("reads asked of %v, want [a]", got)
		}
	})

	t.Run("CreateNamespace cannot read it back", func(t *testing.T) {
		// The table already existed with 30 days; CreateNamespace asked for
		// the default 10 days and could not read the recorded retention:
		// it must not remember its own guess.
		e := newFaultEnv(t, nil)
		e.existingTable(t, "other", thirtyDays)
		for _, r := range regionNamesABC {
			e.mem[r].SetFault(retentionDown)
		}
		ns, err := e.st.CreateNamespace(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if got := e.asked(driver.OpCreateTable); len(got) != 3 {
			t.Errorf("CreateNamespace created the table in %v, want every region", got)
		}
		e.mem["a"].SetFault(driver.Fault{})
		if err := ns.Delete(ctx, []byte("pk"), []byte("ck")); err != nil {
			t.Fatal(err)
		}
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"a", "b", "c", "a"}) {
			t.Errorf("retention asked of %v, want [a b c a]", got)
		}
		checkTTLs(t, e.markerTTLs(), 3, thirtyDays)
	})
}

// TestBreakerTripsOnDroppedConnections: a region whose connections keep
// closing under requests (the driver cancels them; classify makes that
// ErrUnavailable) opens its breaker like any availability failure.
func TestBreakerTripsOnDroppedConnections(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.Breaker = BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Hour}
	})
	dropped := fmt.Errorf("gocql: connection closed: %w", context.Canceled)
	e.mem["a"].SetFault(driver.Fault{Err: dropped, Ops: []string{driver.OpRead}})
	for i := range 2 {
		if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get %d: %v, want ErrUnavailable", i, err)
		}
	}
	if st := e.st.regions[0].breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("home breaker %v after 2 dropped connections, want open", st)
	}
	if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck")); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("Get with the breaker open: %v, want ErrCircuitOpen", err)
	}
	// The third read did not reach the region.
	if n := e.mem["a"].Calls(driver.OpRead); n != 2 {
		t.Errorf("home received %d reads, want 2", n)
	}
}

// TestBreakerExcludes: only cancellations that say nothing about the region
// are ignored by the breaker.
func TestBreakerExcludes(t *testing.T) {
	live := context.Background()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"caller canceled", context.Canceled, true},
		{"closing", fmt.Errorf("%w: %w", errAborted, context.Canceled), true},
		{"connection dropped", classify(live, context.Canceled), false},
		{"unavailable wrapping canceled", fmt.Errorf("%w: %w", ErrUnavailable, context.Canceled), false},
		{"timeout", classify(live, context.DeadlineExceeded), false},
		{"unavailable", ErrUnavailable, false},
		{"refused", errNoTable, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := breakerExcludes(c.err); got != c.want {
			t.Errorf("%s: breakerExcludes(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// blockedRemote sets up a deployment of regions a and b with one background
// worker: a acks every write at once, and b holds every write until its
// context ends. It returns when b holds write "1", the first of n puts
// (rows "1" … "n"); the worker is then busy and the others stay queued.
func blockedRemote(t *testing.T, n int, mut func(*Config)) *memEnv {
	t.Helper()
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.Regions = c.Regions[:2]
		if mut != nil {
			mut(c)
		}
	})
	e.mem["b"].SetFault(driver.Fault{Gate: make(chan struct{}), Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 1)
	waitHeld(t, e.mem["b"], 1)
	for i := 2; i <= n; i++ {
		if err := put(t, e.ns, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestCloseContextHintsQueuedWrites: when CloseContext's context ends while
// a background write blocks and others wait in the queue, it cancels the
// blocked write, hints it and every queued one, stops every worker and
// returns the context's error.
func TestCloseContextHintsQueuedWrites(t *testing.T) {
	e := blockedRemote(t, 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan error, 1)
	go func() { closed <- e.st.CloseContext(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("CloseContext returned %v while a write was blocked and its context live", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	var err error
	select {
	case err = <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("CloseContext did not return after its context ended")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CloseContext: %v, want context.Canceled", err)
	}
	if n := e.mem["b"].Held(); n != 0 {
		t.Error("the blocked region write was still running when CloseContext returned")
	}
	if _, open := <-e.st.queue; open {
		t.Error("the background queue is still open")
	}
	if got := queuedCount(e.st); got != 0 {
		t.Errorf("queue depth %d after CloseContext, want 0", got)
	}
	if got := metricValue(t, e.st.metrics.hinted.WithLabelValues("b")); got != 3 {
		t.Errorf("hinted_writes_total{b} = %v, want 3 (1 canceled + 2 queued)", got)
	}
	checkHints(t, e.hints(), hintsOf("b", 1, 3)...)
	e.checkWrites(t, "a", writesOf(1, 3)...)
	e.checkWrites(t, "b", writesOf(1, 1)...) // the queued writes never reached b
	if err := put(t, e.ns, "4"); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after CloseContext: %v, want ErrClosed", err)
	}
	if err := e.st.Close(); err != nil {
		t.Errorf("Close after CloseContext: %v, want nil", err)
	}
}

// TestCloseContextBoundsHints: with the hint sink hanging as well, the
// hints made after CloseContext's context ended share one HintTimeout: the
// hints already waiting on the sink (they run concurrently) fail when it
// passes, the rest are counted as failed at once, and CloseContext returns.
func TestCloseContextBoundsHints(t *testing.T) {
	var hints atomic.Int64
	hanging := HintSinkFunc(func(ctx context.Context, _ record.Hint) error {
		hints.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	e := blockedRemote(t, 5, func(c *Config) {
		c.HintTimeout = 50 * time.Millisecond
		c.HintSink = hanging
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := e.st.CloseContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CloseContext: %v, want context.Canceled", err)
	}
	// One HintTimeout in total, not one per hint (generous for -race on 2 cores).
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("CloseContext took %s with a 50ms HintTimeout", took)
	}
	if got := notHinted(t, e.st, "b"); got != 5 {
		t.Errorf("hints_failed_total{b} = %v, want 5", got)
	}
	if got := e.st.drain.lost.Load(); got != 5 {
		t.Errorf("rows lost on close = %d, want 5", got)
	}
	if n := hints.Load(); n < 1 || n > 5 {
		t.Errorf("the sink was asked for %d hints, want 1 to 5", n)
	}
	e.checkWrites(t, "b", writesOf(1, 1)...)
}

// TestCloseContextAbortsCalls: a call still waiting on a region when
// CloseContext gives up returns (its region request is canceled), so Close
// does not wait for it; an aborted home write at Any is hinted.
func TestCloseContextAbortsCalls(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) { c.Regions = c.Regions[:1] })
	e.mem["a"].SetFault(driver.Fault{Gate: make(chan struct{}), Ops: []string{driver.OpWrite}})
	putErr := make(chan error, 1)
	go func() { putErr <- put(t, e.ns, "1", WithConsistency(quorum.Any), WithTimeout(time.Hour)) }()
	waitHeld(t, e.mem["a"], 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.st.CloseContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("CloseContext: %v, want context.Canceled", err)
	}
	// The call has ended when CloseContext returns (it waits for it), but
	// its goroutine sends the result just after: allow it a moment. Had the
	// region request not been canceled, it would wait for an hour.
	select {
	case err := <-putErr:
		if err != nil {
			t.Fatalf("Put at Any whose home write was abandoned but hinted: %v, want success", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the running call had not ended 2s after CloseContext returned")
	}
	checkHints(t, e.hints(), hintsOf("a", 1, 1)...)
	e.checkWrites(t, "a", writesOf(1, 1)...)
}

// TestDeleteBoundedByItsTimeoutWhileRetentionRereadFails: a Delete whose
// namespace's retention is due for a re-read that no region answers in
// time takes one timeout for the re-read, then uses the value read last,
// and the next Deletes do not ask again for a few seconds. (The regions
// were asked one after another, each with the call's whole timeout, and
// every Delete asked again: a Delete took a timeout per region, plus the
// write's.)
func TestDeleteBoundedByItsTimeoutWhileRetentionRereadFails(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newFaultEnv(t, func(c *Config) { c.Now = now })
	ctx := context.Background()
	// The retention is known (read by CreateNamespace) ...
	if err := e.ns.Delete(ctx, []byte("pk"), []byte("warm")); err != nil {
		t.Fatal(err)
	}
	// Its remote markers are written after it returns: wait for them, so
	// that none is counted with the three Deletes below (a late one was:
	// 10 markers).
	waitFor(t, "the warm Delete's three markers", func() bool { return len(e.markerTTLs()) == 3 })
	// ... and a minute later due for a re-read, which every region is
	// slow to answer (a schema read on a loaded cluster).
	offset.Store(int64(2 * time.Minute))
	for _, r := range regionNamesABC {
		e.mem[r].SetFault(driver.Fault{Delay: time.Second, Ops: []string{driver.OpTableRetention}})
	}
	e.forget()
	const timeout = 300 * time.Millisecond
	start := time.Now()
	for i := range 3 {
		if err := e.ns.Delete(ctx, []byte("pk"), fmt.Appendf(nil, "ck%d", i), WithTimeout(timeout)); err != nil {
			t.Fatalf("Delete %d with the re-read failing: %v, want the value read last used", i, err)
		}
	}
	took := time.Since(start)
	if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"a"}) {
		t.Errorf("retention asked of %v over three Deletes, want [a]: within the first call's timeout, then not again for a while", got)
	}
	if took > 3*timeout {
		t.Errorf("three Deletes with WithTimeout(%v) took %v: the re-read is not bounded by the call's timeout", timeout, took.Round(time.Millisecond))
	}
	// The remote markers are written after each Delete returns.
	waitFor(t, "nine deletion markers", func() bool { return len(e.markerTTLs()) >= 9 })
	if n := len(e.markerTTLs()); n != 9 {
		t.Errorf("%d deletion markers written, want 3 Deletes x 3 regions", n)
	}
}
