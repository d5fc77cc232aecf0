package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// beatSink is a HintSink and HeartbeatSink: hints wait on gate (when set)
// before they are durable, and every heartbeat is kept.
type beatSink struct {
	mu    sync.Mutex
	gate  chan struct{}
	err   error
	beats []record.Heartbeat
	hints []record.Hint
	// closingFails names a region whose closing heartbeat fails.
	closingFails string
	// onClosing, when set, is called with each closing heartbeat.
	onClosing func(record.Heartbeat)
	// closingBusy fails that many closing heartbeats to a region, as a
	// sink whose previous heartbeat to it still waits for Kafka does.
	closingBusy map[string]int
}

func (b *beatSink) Hint(ctx context.Context, h record.Hint) error {
	b.mu.Lock()
	gate, err := b.gate, b.err
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hints = append(b.hints, h)
	return err
}

func (b *beatSink) Heartbeat(_ context.Context, hb record.Heartbeat) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if hb.Closing && hb.Target == b.closingFails {
		return errors.New("the hint topic does not answer")
	}
	if hb.Closing && b.onClosing != nil {
		b.onClosing(hb)
	}
	if hb.Closing && b.closingBusy[hb.Target] > 0 {
		b.closingBusy[hb.Target]--
		return errors.New("the previous heartbeat is still waiting for Kafka")
	}
	b.beats = append(b.beats, hb)
	return nil
}

// last is the newest heartbeat to target (ok false before the first).
func (b *beatSink) last(target string) (record.Heartbeat, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.beats) - 1; i >= 0; i-- {
		if b.beats[i].Target == target {
			return b.beats[i], true
		}
	}
	return record.Heartbeat{}, false
}

func newBeatEnv(t *testing.T, sink *beatSink, mut func(*Config)) *memEnv {
	return openMemEnv(t, func(c *Config) {
		c.HintSink = sink
		c.Breaker.Disabled = true
		c.Watermark.Interval = 5 * time.Millisecond
		if mut != nil {
			mut(c)
		}
	}, WithRetention(DefaultRetentionForTests))
}

// passes waits until target's heartbeat promises a version above v.
func passes(t *testing.T, sink *beatSink, target string, v int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a heartbeat to %s above %d", target, v), func() bool {
		hb, ok := sink.last(target)
		return ok && hb.Before > v
	})
}

// holdsBelow checks that target's heartbeats stay at or below v for a
// while.
func holdsBelow(t *testing.T, sink *beatSink, target string, v int64) {
	t.Helper()
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if hb, ok := sink.last(target); ok && hb.Before > v {
			t.Fatalf("heartbeat to %s promises %d, above the unsettled write %d", target, hb.Before, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHeartbeatsFollowSettledWrites(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, nil)
	if e.st.ProducerID() == "" {
		t.Fatal("a store with a heartbeat sink takes no part in the watermark")
	}
	var v int64
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		passes(t, sink, r, v)
	}
	// The registration is in every region, below the write.
	for _, r := range []string{"a", "b", "c"} {
		row, ok := e.mem[r].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(e.st.ProducerID()))
		if !ok {
			t.Fatalf("no registration in %s", r)
		}
		p, err := schema.DecodeProducer(row.Value)
		if err != nil || p.Registered >= v || p.Closed || p.Home != "a" {
			t.Fatalf("registration in %s: %+v %v (write %d)", r, p, err, v)
		}
	}
}

// A region that is down: its share waits for the hint, and the
// heartbeats to that region stay below the write until the hint is
// durable; the other regions' pass at once.
func TestHeartbeatsWaitForTheHint(t *testing.T) {
	sink := &beatSink{gate: make(chan struct{})}
	e := newBeatEnv(t, sink, func(c *Config) { c.HintTimeout = time.Minute })
	e.mem["c"].SetFault(driver.Outage())
	var v int64
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v)); err != nil {
		t.Fatal(err)
	}
	passes(t, sink, "a", v)
	passes(t, sink, "b", v)
	holdsBelow(t, sink, "c", v)
	close(sink.gate)
	passes(t, sink, "c", v)
}

// A hint the sink refuses becomes debt: settled once the debt entry is
// durable. Without a debt log nothing holds it, and the heartbeats of that
// region stop below it for good.
func TestHeartbeatsAndDebt(t *testing.T) {
	t.Run("debt recorded", func(t *testing.T) {
		sink := &beatSink{err: errors.New("kafka is down")}
		e := newBeatEnv(t, sink, func(c *Config) { c.MaxPendingDebt = 100 })
		e.mem["c"].SetFault(driver.Outage())
		var v int64
		if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v)); err != nil {
			t.Fatal(err)
		}
		passes(t, sink, "c", v)
		if _, ok := e.mem["a"].Lookup("ks", schema.DebtTable, schema.DebtPartition("c", schema.DebtShard("ns", []byte("p"), []byte("c"))),
			schema.EncodeDebtKey("ns", []byte("p"), []byte("c"))); !ok {
			t.Fatal("the heartbeat passed the write before its debt entry was stored")
		}
	})
	t.Run("no debt log", func(t *testing.T) {
		sink := &beatSink{err: errors.New("kafka is down")}
		e := newBeatEnv(t, sink, nil) // MaxPendingDebt -1
		e.mem["c"].SetFault(driver.Outage())
		var v int64
		if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v)); err != nil {
			t.Fatal(err)
		}
		passes(t, sink, "b", v)
		holdsBelow(t, sink, "c", v)
		// Closing with a write unsettled retires nothing: no closing beat.
		_ = e.st.Close()
		if hb, _ := sink.last("c"); hb.Closing {
			t.Fatal("a store with an unsettled write sent a closing heartbeat")
		}
	})
	t.Run("debt overflow", func(t *testing.T) {
		sink := &beatSink{err: errors.New("kafka is down")}
		e := newBeatEnv(t, sink, func(c *Config) { c.MaxPendingDebt = 100 })
		e.mem["c"].SetFault(driver.Outage())
		e.mem["a"].SetFault(driver.Fault{Err: fmt.Errorf("%w: home down for debt", driver.ErrUnavailable), Ops: []string{driver.OpWrite}, After: 0})
		var v int64
		// Any: the call may fail (a down, the hint refused); only the region c share matters here.
		_ = e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v), WithConsistency(quorum.Any))
		holdsBelow(t, sink, "c", v)
		e.mem["a"].SetFault(driver.Fault{})
		passes(t, sink, "c", v) // the overflow entry was written: its hold released
		found := false
		for shard := range schema.DebtShards {
			if _, ok := e.mem["a"].Lookup("ks", schema.DebtTable, schema.DebtPartition("c", shard), schema.EncodeDebtOverflow("ns")); ok {
				found = true
			}
		}
		if !found {
			t.Fatal("the heartbeat passed the write without an overflow entry")
		}
	})
}

// A write a region refuses (not an availability failure) is never
// hinted: the region's heartbeats stay below it.
func TestHeartbeatsStopAtARefusedWrite(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, nil)
	e.mem["b"].SetFault(driver.Fault{Err: errors.New("table does not exist"), Ops: []string{driver.OpWrite}})
	var v int64
	_ = e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v"), WithVersionReport(&v))
	passes(t, sink, "c", v)
	holdsBelow(t, sink, "b", v)
}

// Closing with everything settled sends a closing heartbeat to every
// region and marks the registration closed.
func TestCloseRetiresTheProducer(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, nil)
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	id := e.st.ProducerID()
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		if hb, _ := sink.last(r); !hb.Closing || hb.Producer != id {
			t.Fatalf("last heartbeat to %s: %+v", r, hb)
		}
		row, ok := e.mem[r].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(id))
		if p, err := schema.DecodeProducer(row.Value); !ok || err != nil || !p.Closed {
			t.Fatalf("registration in %s after Close: %+v %v", r, p, err)
		}
		// The closed session holds each region's watermark until the
		// closing heartbeat is applied there, however late: it lives
		// as long as any session (it expired with the registration).
		row, ok = e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
		if s, err := schema.DecodeSession(row.Value); !ok || err != nil || !s.Closed || row.TTL != schema.TTLSeconds(schema.SessionTTL) {
			t.Fatalf("session in %s after Close: %+v %v, TTL %ds, want closed with TTL %ds", r, s, err, row.TTL, schema.TTLSeconds(schema.SessionTTL))
		}
	}
}

// A Store whose closing heartbeat did not reach some region is not marked
// closed: the region would wait for a closing mark that never comes. It is
// left to be found stopped without closing (full repairs of its
// namespaces), and its writes are still never promised before they are
// applied.
func TestCloseWithoutClosingHeartbeatIsNotClosed(t *testing.T) {
	sink := &beatSink{closingFails: "c"}
	// Its closing heartbeat is sent again until the Close's HintTimeout.
	e := newBeatEnv(t, sink, func(c *Config) { c.HintTimeout = 500 * time.Millisecond })
	id := writeThenClose(t, e)
	for _, r := range []string{"a", "b", "c"} {
		row, _ := e.mem[r].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(id))
		if p, err := schema.DecodeProducer(row.Value); err != nil || p.Closed {
			t.Fatalf("registration in %s after a Close whose closing heartbeat to c failed: %+v %v, want it not closed", r, p, err)
		}
		row, _ = e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
		if s, err := schema.DecodeSession(row.Value); err != nil || s.Closed {
			t.Fatalf("session in %s after a Close whose closing heartbeat to c failed: %+v %v, want it not closed", r, s, err)
		}
	}
}

// TestClosingHeartbeatSentAgainWhileThePreviousWaits: a closing heartbeat
// the sink refuses because the last periodic one, cut short by the stop,
// still waits for Kafka, is sent again, and the Store closes (it was sent
// once: every Close under a slow Kafka left the Store taken for one that
// stopped without closing, and full repairs owed for its namespaces).
func TestClosingHeartbeatSentAgainWhileThePreviousWaits(t *testing.T) {
	sink := &beatSink{closingBusy: map[string]int{"b": 2}}
	e := newBeatEnv(t, sink, nil)
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	id := e.st.ProducerID()
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		row, _ := e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
		if s, err := schema.DecodeSession(row.Value); err != nil || !s.Closed {
			t.Errorf("session in %s after a Close whose closing heartbeat to b was refused twice: %+v %v, want closed", r, s, err)
		}
	}
	hb, ok := sink.last("b")
	if !ok || !hb.Closing {
		t.Errorf("b's last heartbeat %+v, want the closing one", hb)
	}
}

// TestClosedRegistrationAskedAgainAfterATimeout: a region whose write of
// the closed registration times out once (a loaded node) is asked again
// within the Close, and records the Store closed (it was asked once: the
// session stayed live there, the CI failure of
// TestWatermarkWaitsForAClosedStoresHints).
func TestClosedRegistrationAskedAgainAfterATimeout(t *testing.T) {
	var e *memEnv
	sink := &beatSink{}
	sink.onClosing = func(hb record.Heartbeat) {
		if hb.Target == "a" {
			e.mem["a"].SetFault(driver.Fault{Err: fmt.Errorf("%w: a write that took too long", driver.ErrTimeout), Ops: []string{driver.OpWrite}, Times: 1})
		}
	}
	e = newBeatEnv(t, sink, nil)
	id := writeThenClose(t, e)
	for _, r := range []string{"a", "b", "c"} {
		row, _ := e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
		if s, err := schema.DecodeSession(row.Value); err != nil || !s.Closed {
			t.Errorf("session in %s after a Close whose first write there timed out: %+v %v, want closed", r, s, err)
		}
		row, _ = e.mem[r].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(id))
		if p, err := schema.DecodeProducer(row.Value); err != nil || !p.Closed {
			t.Errorf("registration in %s: %+v %v, want closed", r, p, err)
		}
	}
}

// Every region keeps the Store's session beside its registration, with
// a TTL long enough to outlive the Store, listing the namespaces it
// opened — also one opened after the first registration — so that
// repaird can tell a Store that stopped without closing.
func TestSessionListsTheNamespaces(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, func(c *Config) {
		c.Watermark.RegistrationTTL = 10 * time.Minute // refreshed every 100s: only the new namespace writes it sooner
	})
	id := e.st.ProducerID()
	if _, err := e.st.Namespace("orders"); err != nil {
		t.Fatal(err)
	}
	session := func(r string) (schema.Session, driver.Row, bool) {
		row, ok := e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
		if !ok {
			return schema.Session{}, row, false
		}
		s, err := schema.DecodeSession(row.Value)
		if err != nil {
			t.Fatalf("session in %s: %v", r, err)
		}
		return s, row, true
	}
	for _, r := range []string{"a", "b", "c"} {
		waitFor(t, "a session in "+r+" listing orders", func() bool {
			s, _, ok := session(r)
			return ok && slices.Contains(s.Namespaces, "orders") && slices.Contains(s.Namespaces, e.ns.Name())
		})
		s, row, _ := session(r)
		if s.Closed || s.Exited || s.Home != "a" || s.RegistrationTTL != 10*time.Minute {
			t.Fatalf("session in %s: %+v", r, s)
		}
		reg, ok := e.mem[r].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(id))
		if !ok {
			t.Fatalf("no registration in %s", r)
		}
		if row.TTL != schema.TTLSeconds(schema.SessionTTL) || row.TTL <= reg.TTL {
			t.Fatalf("session TTL %ds in %s, want %ds (registration: %ds)", row.TTL, r, schema.TTLSeconds(schema.SessionTTL), reg.TTL)
		}
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		if s, _, ok := session(r); !ok || !s.Closed {
			t.Fatalf("session in %s after Close: %+v", r, s)
		}
	}
}

// hangingBeats is a beatSink whose heartbeats wait until their context
// ends (a broker that accepts and never answers), or release is closed.
type hangingBeats struct {
	beatSink
	release chan struct{}
}

func (h *hangingBeats) Heartbeat(ctx context.Context, _ record.Heartbeat) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-h.release:
		return nil // released: Kafka answers (a closing heartbeat is sent again until it does)
	}
}

// A heartbeat that hangs for HintTimeout does not hold the registration
// back: it is refreshed on its own schedule, so a running Store is never
// taken for one that stopped.
func TestRegistrationRefreshedWhileHeartbeatsHang(t *testing.T) {
	sink := &hangingBeats{release: make(chan struct{})}
	e := openMemEnv(t, func(c *Config) {
		c.HintSink = sink
		c.Breaker.Disabled = true
		c.HintTimeout = time.Minute
		c.Watermark.RegistrationTTL = 6 * time.Second // refreshed every second
	}, WithRetention(DefaultRetentionForTests))
	t.Cleanup(func() { close(sink.release) }) // before the Store's Close: its closing heartbeat would wait a minute
	id := []byte(e.st.ProducerID())
	stamp := func() int64 {
		row, ok := e.mem["a"].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, id)
		if !ok {
			return 0
		}
		return row.Timestamp
	}
	waitFor(t, "a first registration", func() bool { return stamp() > 0 })
	first := stamp()
	deadline := time.Now().Add(4 * time.Second)
	for stamp() == first {
		if time.Now().After(deadline) {
			t.Fatalf("registration not refreshed for 4s (refresh every 1s) while a heartbeat hangs for HintTimeout (1m)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConvergedBefore(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, nil)
	ctx := context.Background()
	if _, err := e.st.ConvergedBefore(ctx, "b"); !errors.Is(err, ErrNoWatermark) {
		t.Fatalf("before any is published: %v", err)
	}
	if _, err := e.st.ConvergedBefore(ctx, "x"); !errors.Is(err, ErrUnknownRegion) {
		t.Fatalf("unknown region: %v", err)
	}
	at := time.Now().Truncate(time.Microsecond)
	publish := func(region string, before time.Time) {
		t.Helper()
		for _, m := range e.mem {
			if err := m.CreateTable(ctx, "ks", schema.WatermarksTable, schema.WatermarkRetention); err != nil {
				t.Fatal(err)
			}
		}
		row := driver.Row{CK: []byte(region), Value: schema.EncodeWatermark(schema.Watermark{Before: before.UnixMicro(), ComputedAt: before}), Timestamp: before.UnixMicro()}
		if err := e.mem["a"].Write(ctx, driver.WriteRequest{Keyspace: "ks", Table: schema.WatermarksTable, PK: schema.WatermarksPartition, Rows: []driver.Row{row}}); err != nil {
			t.Fatal(err)
		}
	}
	publish("b", at)
	got, err := e.st.ConvergedBefore(ctx, "b")
	if err != nil || !got.Equal(at) {
		t.Fatalf("ConvergedBefore = %v, %v; want %v", got, err, at)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := e.st.WaitConverged(wctx, "b", at.Add(time.Second), 5*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitConverged past the watermark: %v", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		publish("b", at.Add(2*time.Second))
	}()
	if err := e.st.WaitConverged(ctx, "b", at.Add(time.Second), 5*time.Millisecond); err != nil {
		t.Fatalf("WaitConverged: %v", err)
	}
}

// Without a heartbeat sink, or with Watermark.Disabled, the Store takes no
// part: no registration, no tracker.
func TestNoWatermarkWithoutHeartbeatSink(t *testing.T) {
	e := newFaultEnv(t, nil)
	if e.st.ProducerID() != "" || e.st.track != nil {
		t.Fatal("a store without a heartbeat sink takes part")
	}
	e2 := newBeatEnv(t, &beatSink{}, func(c *Config) { c.Watermark.Disabled = true })
	if e2.st.ProducerID() != "" {
		t.Fatal("Watermark.Disabled takes part")
	}
	if n := e2.mem["a"].Calls(driver.OpCreateTable); n > 1 {
		t.Fatalf("%d tables created", n)
	}
}

// An idle Store's heartbeats keep up with the wall clock: a region's
// watermark must not stop at the last write when no write comes.
func TestHeartbeatsAdvanceWhileIdle(t *testing.T) {
	sink := &beatSink{}
	e := newBeatEnv(t, sink, nil)
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	later := time.Now().UnixMicro()
	for _, r := range []string{"a", "b", "c"} {
		passes(t, sink, r, later)
	}
}

// repaird reads the registrations of every region that answers: a Store
// is registered in its home region before Open returns, so that no write
// it acknowledges can be passed by a watermark computed without it (it
// registered from a goroutine, and on a new keyspace the first
// registration waits seconds for the table: writes were acknowledged
// meanwhile).
func TestRegisteredAtHomeBeforeOpenReturns(t *testing.T) {
	mem := map[string]*driver.MemoryRegion{}
	cfg := Config{Home: "a", Keyspace: "ks", MaxPendingDebt: -1, HintSink: &beatSink{},
		Breaker: BreakerConfig{Disabled: true}, Watermark: WatermarkConfig{Interval: 5 * time.Millisecond}}
	for _, n := range regionNamesABC {
		m := driver.NewMemoryRegion()
		// Schema changes are slow, as on a real cluster.
		m.SetFault(driver.Fault{Delay: 200 * time.Millisecond, Ops: []string{driver.OpCreateTable}})
		mem[n] = m
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
	}
	cfg.NewExecutor = driver.MemoryFactory(mem)
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	row, ok := mem["a"].Lookup("ks", schema.ProducersTable, schema.ProducersPartition, []byte(st.ProducerID()))
	if !ok {
		t.Fatal("Open returned before the Store's registration was in its home region: a write acknowledged now could be passed by a watermark")
	}
	if p, err := schema.DecodeProducer(row.Value); err != nil || p.Closed || p.Home != "a" {
		t.Fatalf("registration in a: %+v %v", p, err)
	}
	if _, ok := mem["a"].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(st.ProducerID())); !ok {
		t.Fatal("the registration is in a without its session")
	}
}

// writeThenClose writes a row, waits until every region holds the Store's
// session, closes the Store, and returns its producer id.
func writeThenClose(t *testing.T, e *memEnv) string {
	t.Helper()
	if err := e.ns.Put(context.Background(), []byte("p"), []byte("c"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	id := e.st.ProducerID()
	for _, r := range []string{"a", "b", "c"} {
		waitFor(t, "a session in "+r, func() bool {
			_, ok := e.mem[r].Lookup("ks", schema.ProducersTable, schema.SessionsPartition, []byte(id))
			return ok
		})
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	return id
}
