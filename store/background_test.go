package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// TestBreakerOpenHintsDirectly: after ConsecutiveFailures availability
// failures region b's breaker opens; later writes for b go straight to the
// hint sink without touching b; after OpenTimeout a probe succeeds and b is
// written again.
func TestBreakerOpenHintsDirectly(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.Breaker = BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 50 * time.Millisecond}
		c.RemoteConcurrency = 1 // background writes in order
	})
	b := e.mem["b"]
	// Write 1 finds b down, write 2 finds it timing out; 3 and 4 find the
	// breaker open, so b's fault is never reached.
	b.SetFault(driver.Fault{Err: fmt.Errorf("%w: down", ErrUnavailable), Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 1)
	waitFor(t, "write 1 at b", func() bool { return b.Calls(driver.OpWrite) == 1 })
	b.SetFault(driver.Fault{Err: fmt.Errorf("%w: slow", ErrTimeout), Ops: []string{driver.OpWrite}})
	if err := put(t, e.ns, "2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "breaker b open", func() bool { return e.st.regions[1].breaker.State() == gobreaker.StateOpen })
	for i := 3; i <= 4; i++ {
		if err := put(t, e.ns, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "background queue drained", func() bool { return queuedCount(e.st) == 0 })
	if got := metricValue(t, e.st.metrics.breakerState.WithLabelValues("b")); got != 2 {
		t.Errorf("breaker_state{b} = %v, want 2 (open)", got)
	}

	// Sync regions with an open breaker are not waited on: EachQuorum fails
	// at once naming b, and b gets a hint.
	err := put(t, e.ns, "5", WithConsistency(quorum.EachQuorum))
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("EachQuorum with b open: %v, want ErrCircuitOpen", err)
	}

	// Half-open: after OpenTimeout, a probe goes through and closes it.
	waitFor(t, "breaker b half-open", func() bool { return e.st.regions[1].breaker.State() == gobreaker.StateHalfOpen })
	b.SetFault(driver.Fault{})
	if err := put(t, e.ns, "6", WithConsistency(quorum.All)); err != nil {
		t.Fatalf("All after the breaker's timeout: %v", err)
	}
	if st := e.st.regions[1].breaker.State(); st != gobreaker.StateClosed {
		t.Errorf("breaker b %v after a successful probe, want closed", st)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	e.checkWrites(t, "a", writesOf(1, 6)...)
	e.checkWrites(t, "c", writesOf(1, 6)...)
	e.checkWrites(t, "b", append(writesOf(1, 2), writesOf(6, 6)...)...)
	checkHints(t, e.hints(), hintsOf("b", 1, 5)...)
}

// TestBreakerIgnoresNonAvailabilityErrors: validation-like region errors and
// not-found reads do not open the breaker, and a refused write is not hinted.
func TestBreakerIgnoresNonAvailabilityErrors(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.Breaker = BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Hour}
	})
	e.mem["a"].SetFault(driver.Fault{Err: errors.New("table ks.ns does not exist"), Ops: []string{driver.OpWrite}})
	for i := range 3 {
		if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get %d: %v, want ErrNotFound", i, err)
		}
		if err := put(t, e.ns, "x"); err == nil || errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("Put %d: %v, want the region's own error", i, err)
		}
	}
	if st := e.st.regions[0].breaker.State(); st != gobreaker.StateClosed {
		t.Errorf("home breaker %v, want closed", st)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if hs := e.hints(); len(hs) != 0 {
		t.Errorf("%d hints for refused writes, want none", len(hs))
	}
	// Every request reached a: the breaker never stood in the way.
	if got := e.asked(driver.OpRead); !slices.Equal(got, []string{"a", "a", "a"}) {
		t.Errorf("reads asked of %v, want a three times", got)
	}
	x := writeOf("pk", "x", "vx", "")
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, x, x, x)
	}
}

// TestQueueOverflowHints: with one worker blocked and the queue full, a
// further remote write to a healthy region waits at most QueueWait for room
// (backpressure) and then goes to the hint pool, without blocking on the
// region or on the hint sink.
func TestQueueOverflowHints(t *testing.T) {
	// A sink that takes a while: the caller must not wait for it.
	sink := &recordingSink{}
	slow := HintSinkFunc(func(ctx context.Context, h record.Hint) error {
		time.Sleep(200 * time.Millisecond)
		return sink.Hint(ctx, h)
	})
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingWrites = 1
		c.QueueWait = 30 * time.Millisecond
		c.Regions = c.Regions[:2] // a and b
		c.HintSink = slow
	})
	e.sink = sink
	release := make(chan struct{})
	e.mem["b"].SetFault(driver.Fault{Gate: release, Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 1)
	waitHeld(t, e.mem["b"], 1) // the only worker is busy with write 1
	if err := put(t, e.ns, "2"); err != nil {
		t.Fatal(err)
	}
	if got := queuedCount(e.st); got != 1 {
		t.Fatalf("queue depth %d, want 1", got)
	}
	start := time.Now()
	if err := put(t, e.ns, "3"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 30*time.Millisecond {
		t.Errorf("Put returned after %v: it did not wait QueueWait (30ms) for room", took)
	}
	if took > 150*time.Millisecond {
		t.Errorf("Put took %v: it waited for more than the queue (the region, or the 200ms hint sink)", took)
	}
	if got := metricValue(t, e.st.metrics.queueDepth); got != 1 {
		t.Errorf("background_queue_depth = %v, want 1", got)
	}
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.st.metrics.hinted.WithLabelValues("b")); got != 1 {
		t.Errorf("hinted_writes_total{b} = %v, want 1", got)
	}
	checkHints(t, e.hints(), hintsOf("b", 3, 3)...)
	e.checkWrites(t, "a", writesOf(1, 3)...)
	e.checkWrites(t, "b", writesOf(1, 2)...)
}

// TestQueueBackpressureAvoidsHint: a write that finds the queue full but
// room freeing within QueueWait is written to its healthy region, not
// hinted (hints are for regions that fail, not for load).
func TestQueueBackpressureAvoidsHint(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingWrites = 1
		c.QueueWait = 2 * time.Second
		c.Regions = c.Regions[:2]
	})
	release := make(chan struct{})
	e.mem["b"].SetFault(driver.Fault{Gate: release, Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 2)
	waitHeld(t, e.mem["b"], 1)
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	if err := put(t, e.ns, "3"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(e.hints()); n != 0 {
		t.Fatalf("%d hints for a healthy region under load, want none", n)
	}
	e.checkWrites(t, "b", writesOf(1, 3)...)
}

// TestQueueWaitersServedInOrder: a slot that frees in a full queue goes to
// the write that has waited longest, not to one that just arrived. Before,
// waiters polled for room and a newcomer took the freed slot first, so that
// under a burst the waiters' QueueWait ran out and writes to a healthy
// region became hints (the burst benchmark: 679 of 59,506 remote writes).
func TestQueueWaitersServedInOrder(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingWrites = 1
		c.QueueWait = 10 * time.Second
		c.Regions = c.Regions[:2]
	})
	var mu sync.Mutex
	var order []string
	arrived := make(chan struct{}, 16)
	e.mem["b"].Observe = func(op string, req any) {
		if w, ok := req.(driver.WriteRequest); ok && op == driver.OpWrite {
			mu.Lock()
			order = append(order, string(w.Rows[0].CK))
			mu.Unlock()
			arrived <- struct{}{}
		}
	}
	gate := make(chan struct{})
	e.mem["b"].SetFault(driver.Fault{Gate: gate, Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 2) // 1 held by the only worker, 2 in the queue
	<-arrived
	waiter := make(chan error, 1)
	go func() { waiter <- put(t, e.ns, "3") }() // waits: the queue is full
	time.Sleep(50 * time.Millisecond)
	gate <- struct{}{} // write 1 ends; the worker takes 2, a slot frees
	<-arrived          // write 2 reached b: the slot is 3's, not free
	newcomer := make(chan error, 1)
	go func() { newcomer <- put(t, e.ns, "4") }()
	time.Sleep(50 * time.Millisecond)
	gate <- struct{}{} // write 2 ends
	<-arrived
	gate <- struct{}{} // write 3 ends
	<-arrived
	close(gate)
	for _, c := range []chan error{waiter, newcomer} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, " "); got != "1 2 3 4" {
		t.Errorf("writes reached b in the order %s, want 1 2 3 4 (the waiter first)", got)
	}
	if n := len(e.hints()); n != 0 {
		t.Errorf("%d hints for a healthy region, want none", n)
	}
}

// TestHangingSinkNeverBlocksCalls: with a region cut and the hint sink
// hanging (Kafka paused), LocalQuorum writes go on at full speed: once the
// hint pool is full, missed writes are left to repair at once and counted
// (before, the queue filled and every Put waited a HintTimeout).
func TestHangingSinkNeverBlocksCalls(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	sink := HintSinkFunc(func(ctx context.Context, _ record.Hint) error {
		select {
		case <-hang:
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	e := newFaultEnv(t, func(c *Config) {
		c.HintSink = sink
		c.HintConcurrency = 4
		c.MaxPendingHints = 16
		c.HintTimeout = time.Second
		c.Breaker = BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Hour}
		c.Regions = c.Regions[:2]
	})
	e.mem["b"].SetFault(driver.Outage())
	for i := range 200 {
		start := time.Now()
		if err := put(t, e.ns, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("Put %d took %v with the sink hanging", i, took)
		}
	}
	if got := metricValue(t, e.st.metrics.hintsFailed.WithLabelValues("b", lostPoolFull)); got < 150 {
		t.Fatalf("hints_failed_total{b,pool_full} = %v, want most of the 200 writes counted as left to repair", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = e.st.CloseContext(ctx)
}

// TestQueueByteBound: a write that would take the queued bytes over
// MaxPendingBytes is hinted instead of queued.
func TestQueueByteBound(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingBytes = 10
		c.Regions = c.Regions[:2]
	})
	release := make(chan struct{})
	e.mem["b"].SetFault(driver.Fault{Gate: release, Ops: []string{driver.OpWrite}})
	putN(t, e.ns, 1)
	waitHeld(t, e.mem["b"], 1)
	if err := put(t, e.ns, "2"); err != nil { // 2+1+2 = 5 bytes: fits
		t.Fatal(err)
	}
	long := []byte("v3-is-too-long")
	if err := e.ns.Put(context.Background(), []byte("pk"), []byte("3"), long); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	checkHints(t, e.hints(), hintOf("b", "pk", "3", string(long)))
	e.checkWrites(t, "a", append(writesOf(1, 2), writeOf("pk", "3", string(long), ""))...)
	e.checkWrites(t, "b", writesOf(1, 2)...)
}

// TestDefaultSinkCountsLeftToRepair: without a hint sink, a missed write is
// counted as left to repair, and Any cannot succeed on a hint.
func TestDefaultSinkCountsLeftToRepair(t *testing.T) {
	e := newFaultEnv(t, func(c *Config) { c.HintSink = nil })
	e.mem["a"].SetFault(driver.Fault{Err: ErrUnavailable, Ops: []string{driver.OpWrite}})
	err := put(t, e.ns, "1", WithConsistency(quorum.Any))
	var re *RegionError
	if !errors.As(err, &re) || re.Region != "a" || re.Hinted {
		t.Fatalf("Any with home down and no sink: %v, want an unhinted RegionError for a", err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.st.metrics.hintsFailed.WithLabelValues("a", lostNoSink)); got != 1 {
		t.Errorf("hints_failed_total{a} = %v, want 1", got)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, writesOf(1, 1)...)
	}
}

// TestCloseRejectsCalls: calls after Close fail with ErrClosed and do no I/O.
func TestCloseRejectsCalls(t *testing.T) {
	e := newMockEnv(t)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := put(t, e.ns, "1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSlowHintSinkDoesNotBlockWorkers: with a region down, every write to it
// becomes a hint; a slow hint sink (Kafka waiting for acks) must not hold the
// remote-write workers, or the queue fills and callers pay the hint latency.
// With one worker, several hints are in flight at once.
func TestSlowHintSinkDoesNotBlockWorkers(t *testing.T) {
	const n = 6
	release := make(chan struct{})
	var hints, inFlight, peak atomic.Int64
	slow := HintSinkFunc(func(ctx context.Context, _ record.Hint) error {
		hints.Add(1)
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		defer inFlight.Add(-1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	e := newFaultEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.Breaker.Disabled = true
		c.Regions = c.Regions[:2] // a and b
		c.HintSink = slow
	})
	e.mem["b"].SetFault(driver.Outage())
	putN(t, e.ns, n)
	waitFor(t, "every hint waiting on the sink at once", func() bool { return peak.Load() == n })
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.st.metrics.hinted.WithLabelValues("b")); got != n {
		t.Errorf("hinted_writes_total{b} = %v, want %d", got, n)
	}
	if got := hints.Load(); got != n {
		t.Errorf("the sink was asked for %d hints, want %d", got, n)
	}
	e.checkWrites(t, "a", writesOf(1, n)...)
	e.checkWrites(t, "b", writesOf(1, n)...)
}

// TestSlowSinkBurstAllHinted: a burst of writes to a cut region while the
// sink stalls for a while (the first hints to a new Kafka topic wait for
// the topic) is absorbed by the hint queue: every write is hinted, none is
// left to repair.
func TestSlowSinkBurstAllHinted(t *testing.T) {
	sink := &recordingSink{}
	var stalled sync.Once
	slowStart := HintSinkFunc(func(ctx context.Context, h record.Hint) error {
		stalled.Do(func() { time.Sleep(500 * time.Millisecond) })
		return sink.Hint(ctx, h)
	})
	e := newFaultEnv(t, func(c *Config) {
		c.HintSink = slowStart
		c.HintConcurrency = 2
		c.Regions = c.Regions[:2]
	})
	e.sink = sink
	e.mem["b"].SetFault(driver.Outage())
	putN(t, e.ns, 300)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.all()); n != 300 {
		t.Fatalf("%d of 300 writes hinted", n)
	}
	if got := notHinted(t, e.st, "b"); got != 0 {
		t.Fatalf("%v writes left to repair with a sink that was only slow at first", got)
	}
}
