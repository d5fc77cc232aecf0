package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/mock/gomock"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

func put(t *testing.T, ns *Namespace, ck string, opts ...CallOption) error {
	t.Helper()
	return ns.Put(context.Background(), []byte("pk"), []byte(ck), []byte("v"+ck), opts...)
}

// TestBreakerOpenHintsDirectly: after ConsecutiveFailures availability
// failures region b's breaker opens; later writes for b go straight to the
// hint sink without touching b; after OpenTimeout a probe succeeds and b is
// written again.
func TestBreakerOpenHintsDirectly(t *testing.T) {
	e := newMockEnv(t, func(c *Config) {
		c.Breaker = BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 50 * time.Millisecond}
		c.RemoteConcurrency = 1 // background writes in order
	})
	for i := 1; i <= 4; i++ {
		e.expectWrite("a", writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""), nil, 1)
		e.expectWrite("c", writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""), nil, 1)
		e.expectHint(hintOf("b", "pk", fmt.Sprint(i), fmt.Sprint("v", i)), nil, 1)
	}
	// Only writes 1 and 2 reach b; 3 and 4 find the breaker open.
	e.expectWrite("b", writeOf("pk", "1", "v1", ""), fmt.Errorf("%w: down", ErrUnavailable), 1)
	e.expectWrite("b", writeOf("pk", "2", "v2", ""), fmt.Errorf("%w: slow", ErrTimeout), 1)
	for i := 1; i <= 4; i++ {
		if err := put(t, e.ns, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			waitFor(t, "breaker b open", func() bool { return e.st.regions[1].breaker.State() == gobreaker.StateOpen })
		}
	}
	waitFor(t, "background queue drained", func() bool { return queuedCount(e.st) == 0 })
	if got := metricValue(t, e.st.metrics.breakerState.WithLabelValues("b")); got != 2 {
		t.Errorf("breaker_state{b} = %v, want 2 (open)", got)
	}

	// Sync regions with an open breaker are not waited on: EachQuorum fails
	// at once naming b, and b gets a hint.
	e.expectWrite("a", writeOf("pk", "5", "v5", ""), nil, 1)
	e.expectWrite("c", writeOf("pk", "5", "v5", ""), nil, 1)
	e.expectHint(hintOf("b", "pk", "5", "v5"), nil, 1)
	err := put(t, e.ns, "5", WithConsistency(quorum.EachQuorum))
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("EachQuorum with b open: %v, want ErrCircuitOpen", err)
	}

	// Half-open: after OpenTimeout, a probe goes through and closes it.
	waitFor(t, "breaker b half-open", func() bool { return e.st.regions[1].breaker.State() == gobreaker.StateHalfOpen })
	for _, r := range regionNamesABC {
		e.expectWrite(r, writeOf("pk", "6", "v6", ""), nil, 1)
	}
	if err := put(t, e.ns, "6", WithConsistency(quorum.All)); err != nil {
		t.Fatalf("All after the breaker's timeout: %v", err)
	}
	if st := e.st.regions[1].breaker.State(); st != gobreaker.StateClosed {
		t.Errorf("breaker b %v after a successful probe, want closed", st)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBreakerIgnoresNonAvailabilityErrors: validation-like region errors and
// not-found reads do not open the breaker, and a refused write is not hinted.
func TestBreakerIgnoresNonAvailabilityErrors(t *testing.T) {
	sink := &recordingSink{}
	e := newMockEnv(t, func(c *Config) {
		c.Breaker = BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: time.Hour}
		c.HintSink = sink
	})
	e.execs["a"].EXPECT().Read(gomock.Any(), gomock.Any()).Return(driver.Row{}, ErrNotFound).Times(3)
	e.execs["a"].EXPECT().Write(gomock.Any(), gomock.Any()).Return(errors.New("table ks.ns does not exist")).Times(3)
	for _, r := range []string{"b", "c"} {
		e.execs[r].EXPECT().Write(gomock.Any(), gomock.Any()).Return(nil).Times(3)
	}
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
	if n := len(sink.hints); n != 0 {
		t.Errorf("%d hints for refused writes, want none", n)
	}
}

// TestQueueOverflowHints: with one worker blocked and the queue full, a
// further remote write goes straight to the hint sink, synchronously,
// without blocking on the region.
func TestQueueOverflowHints(t *testing.T) {
	e := newMockEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingWrites = 1
		c.Regions = c.Regions[:2] // a and b
	})
	started := make(chan struct{})
	release := make(chan struct{})
	for i := 1; i <= 3; i++ {
		e.expectWrite("a", writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""), nil, 1)
	}
	e.execs["b"].EXPECT().Write(gomock.Any(), writeOf("pk", "1", "v1", "")).DoAndReturn(
		func(context.Context, driver.WriteRequest) error {
			close(started)
			<-release
			return nil
		})
	e.expectWrite("b", writeOf("pk", "2", "v2", ""), nil, 1)
	hinted := make(chan struct{})
	e.sink.EXPECT().Hint(gomock.Any(), hintOf("b", "pk", "3", "v3")).DoAndReturn(
		func(context.Context, any) error { close(hinted); return nil })

	if err := put(t, e.ns, "1"); err != nil {
		t.Fatal(err)
	}
	<-started // the only worker is busy with write 1
	if err := put(t, e.ns, "2"); err != nil {
		t.Fatal(err)
	}
	if got := queuedCount(e.st); got != 1 {
		t.Fatalf("queue depth %d, want 1", got)
	}
	if err := put(t, e.ns, "3"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hinted: // the overflow hint was stored before Put returned
	default:
		t.Fatal("write 3 was not hinted when the queue was full")
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
}

// TestQueueByteBound: a write that would take the queued bytes over
// MaxPendingBytes is hinted instead of queued.
func TestQueueByteBound(t *testing.T) {
	e := newMockEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.MaxPendingBytes = 10
		c.Regions = c.Regions[:2]
	})
	started := make(chan struct{})
	release := make(chan struct{})
	e.execs["a"].EXPECT().Write(gomock.Any(), gomock.Any()).Return(nil).Times(3)
	e.execs["b"].EXPECT().Write(gomock.Any(), writeOf("pk", "1", "v1", "")).DoAndReturn(
		func(context.Context, driver.WriteRequest) error { close(started); <-release; return nil })
	e.expectWrite("b", writeOf("pk", "2", "v2", ""), nil, 1) // 2+1+2 = 5 bytes: fits
	e.expectHint(hintOf("b", "pk", "3", "v3-is-too-long"), nil, 1)
	if err := put(t, e.ns, "1"); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := put(t, e.ns, "2"); err != nil {
		t.Fatal(err)
	}
	if err := e.ns.Put(context.Background(), []byte("pk"), []byte("3"), []byte("v3-is-too-long")); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultSinkCountsLeftToRepair: without a hint sink, a missed write is
// counted as left to repair, and Any cannot succeed on a hint.
func TestDefaultSinkCountsLeftToRepair(t *testing.T) {
	e := newMockEnv(t, func(c *Config) { c.HintSink = nil })
	e.execs["a"].EXPECT().Write(gomock.Any(), gomock.Any()).Return(ErrUnavailable).Times(1)
	e.execs["b"].EXPECT().Write(gomock.Any(), gomock.Any()).Return(nil).Times(1)
	e.execs["c"].EXPECT().Write(gomock.Any(), gomock.Any()).Return(nil).Times(1)
	err := put(t, e.ns, "1", WithConsistency(quorum.Any))
	var re *RegionError
	if !errors.As(err, &re) || re.Region != "a" || re.Hinted {
		t.Fatalf("Any with home down and no sink: %v, want an unhinted RegionError for a", err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.st.metrics.hintsFailed.WithLabelValues("a")); got != 1 {
		t.Errorf("hints_failed_total{a} = %v, want 1", got)
	}
}

// TestCloseRejectsCalls: calls after Close fail with ErrClosed and do no I/O.
func TestCloseRejectsCalls(t *testing.T) {
	e := newMockEnv(t, nil)
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 30s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSlowHintSinkDoesNotBlockWorkers: with a region down, every write to it
// becomes a hint; a slow hint sink (Kafka waiting for acks) must not hold the
// remote-write workers, or the queue fills and callers pay the hint latency.
// With one worker, several hints are in flight at once.
func TestSlowHintSinkDoesNotBlockWorkers(t *testing.T) {
	const n = 6
	e := newMockEnv(t, func(c *Config) {
		c.RemoteConcurrency = 1
		c.Breaker.Disabled = true
		c.Regions = c.Regions[:2] // a and b
	})
	release := make(chan struct{})
	var inFlight, peak atomic.Int64
	for i := 1; i <= n; i++ {
		e.expectWrite("a", writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""), nil, 1)
		e.expectWrite("b", writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""), fmt.Errorf("%w: down", ErrUnavailable), 1)
	}
	e.sink.EXPECT().Hint(gomock.Any(), gomock.Any()).Times(n).DoAndReturn(func(ctx context.Context, _ record.Hint) error {
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
	for i := 1; i <= n; i++ {
		if err := put(t, e.ns, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every hint waiting on the sink at once", func() bool { return peak.Load() == n })
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, e.st.metrics.hinted.WithLabelValues("b")); got != n {
		t.Errorf("hinted_writes_total{b} = %v, want %d", got, n)
	}
}
