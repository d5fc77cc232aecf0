package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

const (
	testKeyspace = "ks"
	testTable    = "t"
)

// newTestRegion returns a MemoryRegion holding table ks.t.
func newTestRegion(t *testing.T) *MemoryRegion {
	t.Helper()
	m := NewMemoryRegion()
	if err := m.CreateTable(context.Background(), testKeyspace, testTable, time.Hour); err != nil {
		t.Fatal(err)
	}
	return m
}

// write writes one row of partition "pk" to m.
func write(ctx context.Context, m *MemoryRegion, r Row) error {
	return m.Write(ctx, WriteRequest{Keyspace: testKeyspace, Table: testTable, PK: []byte("pk"), Rows: []Row{r},
		Consistency: "LOCAL_QUORUM"})
}

func read(ctx context.Context, m *MemoryRegion, ck string) (Row, error) {
	return m.Read(ctx, ReadRequest{Keyspace: testKeyspace, Table: testTable, PK: []byte("pk"), CK: []byte(ck)})
}

func scan(ctx context.Context, m *MemoryRegion) ([]Row, error) {
	return m.Scan(ctx, ScanRequest{Keyspace: testKeyspace, Table: testTable, PK: []byte("pk"), Limit: 100, MaxBytes: 1 << 20})
}

func row(ck, value string, ts int64) Row {
	return Row{CK: []byte(ck), Value: []byte(value), Timestamp: ts}
}

// stored returns the stored value of row ck, "" when there is none.
func stored(m *MemoryRegion, ck string) string {
	r, ok := m.Lookup(testKeyspace, testTable, []byte("pk"), []byte(ck))
	if !ok {
		return ""
	}
	if r.Deleted {
		return "<deleted>"
	}
	return string(r.Value)
}

// every calls each operation once; it returns their errors by operation.
func every(m *MemoryRegion) map[string]error {
	ctx := context.Background()
	_, retErr := m.TableRetention(ctx, testKeyspace, testTable)
	_, readErr := read(ctx, m, "x")
	if errors.Is(readErr, ErrNotFound) {
		readErr = nil
	}
	_, scanErr := scan(ctx, m)
	return map[string]error{
		OpCreateKeyspace: m.CreateKeyspace(ctx, testKeyspace, 3),
		OpCreateTable:    m.CreateTable(ctx, testKeyspace, testTable, time.Hour),
		OpTableRetention: retErr,
		OpWrite:          write(ctx, m, row("w", "v", 1)),
		OpRead:           readErr,
		OpScan:           scanErr,
	}
}

// inBackground runs f in a goroutine; the returned channel receives its
// error.
func inBackground(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// waitHeld waits until m holds n calls.
func waitHeld(t *testing.T, m *MemoryRegion, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Held() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the region holds %d calls after 10s, want %d", m.Held(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s had not returned after 10s", what)
		return nil
	}
}

func TestFaultErrOutage(t *testing.T) {
	m := newTestRegion(t)
	m.SetFault(Outage())
	for op, err := range every(m) {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s during an outage: %v, want ErrUnavailable", op, err)
		}
	}
	if got := stored(m, "w"); got != "" {
		t.Errorf("a write failed by the outage was applied: %q", got)
	}
	if m.Writes() != 0 || m.Calls(OpWrite) != 1 {
		t.Errorf("Writes %d, Calls(write) %d; want 0 applied of 1 received", m.Writes(), m.Calls(OpWrite))
	}
	// Close is not part of an outage unless the fault names it.
	if err := m.Close(); err != nil {
		t.Errorf("Close during an outage: %v, want nil", err)
	}
	m.SetFault(Fault{})
	for op, err := range every(m) {
		if err != nil {
			t.Errorf("%s after healing: %v", op, err)
		}
	}
	if got := stored(m, "w"); got != "v" {
		t.Errorf("write after healing stored %q, want v", got)
	}
}

func TestFaultErrRefusal(t *testing.T) {
	m := newTestRegion(t)
	refused := errors.New("no permission (test)")
	m.SetFault(Fault{Err: fmt.Errorf("region said: %w", refused)})
	for op, err := range every(m) {
		if !errors.Is(err, refused) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
			t.Errorf("%s: %v, want the refusal and no availability error", op, err)
		}
	}
	if got := stored(m, "w"); got != "" || m.Writes() != 0 {
		t.Errorf("a refused write was applied (%q, %d writes)", got, m.Writes())
	}
}

func TestFaultDelay(t *testing.T) {
	m := newTestRegion(t)
	const delay = 50 * time.Millisecond
	m.SetFault(Fault{Delay: delay})
	start := time.Now()
	if err := write(context.Background(), m, row("a", "1", 1)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("delayed write took %s, want at least %s", took, delay)
	}
	if got := stored(m, "a"); got != "1" {
		t.Errorf("delayed write stored %q, want 1", got)
	}

	t.Run("context ends first", func(t *testing.T) {
		m.SetFault(Fault{Delay: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := write(ctx, m, row("b", "2", 2))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write whose context ended during the delay: %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("write took %s: it did not honour its context", took)
		}
		if _, err := m.TableRetention(ctx, testKeyspace, testTable); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("TableRetention with an ended context: %v", err)
		}
		if got := stored(m, "b"); got != "" || m.Writes() != 1 {
			t.Errorf("a canceled write changed the region (%q, %d writes)", got, m.Writes())
		}
		if n := m.Held(); n != 0 {
			t.Errorf("%d calls still held after their contexts ended", n)
		}
	})
}

func TestFaultGate(t *testing.T) {
	m := newTestRegion(t)
	gate := make(chan struct{})
	m.SetFault(Fault{Gate: gate})
	done := inBackground(func() error { return write(context.Background(), m, row("a", "1", 1)) })
	readDone := inBackground(func() error { _, err := read(context.Background(), m, "a"); return err })
	waitHeld(t, m, 2)
	select {
	case err := <-done:
		t.Fatalf("write returned %v while its gate was shut", err)
	case <-time.After(20 * time.Millisecond):
	}
	if got := stored(m, "a"); got != "" {
		t.Fatalf("a held write was applied before its gate opened: %q", got)
	}
	close(gate)
	if err := receive(t, done, "the gated write"); err != nil {
		t.Fatalf("write after its gate opened: %v", err)
	}
	if err := receive(t, readDone, "the gated read"); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("read after its gate opened: %v", err)
	}
	if got := stored(m, "a"); got != "1" {
		t.Errorf("write stored %q, want 1", got)
	}
	waitHeld(t, m, 0)
	if err := write(context.Background(), m, row("b", "2", 2)); err != nil {
		t.Errorf("write through an open gate: %v", err)
	}

	t.Run("context ends while held", func(t *testing.T) {
		m.SetFault(Fault{Gate: make(chan struct{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := inBackground(func() error { return write(ctx, m, row("c", "3", 3)) })
		waitHeld(t, m, 1)
		cancel()
		if err := receive(t, done, "the canceled write"); !errors.Is(err, context.Canceled) {
			t.Fatalf("held write whose context ended: %v, want context.Canceled", err)
		}
		if got := stored(m, "c"); got != "" {
			t.Errorf("a canceled held write was applied: %q", got)
		}
		waitHeld(t, m, 0)
	})

	t.Run("then the error", func(t *testing.T) {
		gate := make(chan struct{})
		m.SetFault(Fault{Gate: gate, Err: Outage().Err})
		done := inBackground(func() error { return write(context.Background(), m, row("d", "4", 4)) })
		waitHeld(t, m, 1)
		close(gate)
		if err := receive(t, done, "the gated write"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("write after its gate opened: %v, want the fault's error", err)
		}
		if got := stored(m, "d"); got != "" {
			t.Errorf("a failed write was applied: %q", got)
		}
	})
}

func TestFaultAfter(t *testing.T) {
	m := newTestRegion(t)
	m.SetFault(Fault{Err: Outage().Err, After: 2})
	for i := range 4 {
		err := write(context.Background(), m, row(fmt.Sprint(i), "v", 1))
		if ok := i < 2; ok != (err == nil) {
			t.Errorf("write %d: %v; want the first 2 through and the rest failed", i, err)
		}
	}
	if m.Writes() != 2 || m.Calls(OpWrite) != 4 {
		t.Errorf("Writes %d, Calls(write) %d; want 2 and 4", m.Writes(), m.Calls(OpWrite))
	}

	// SetFault starts the count again.
	m.SetFault(Fault{Err: Outage().Err, After: 1})
	if err := write(context.Background(), m, row("x", "v", 1)); err != nil {
		t.Errorf("first write after SetFault(After: 1): %v, want it through", err)
	}
	if err := write(context.Background(), m, row("y", "v", 1)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second write after SetFault(After: 1): %v, want ErrUnavailable", err)
	}

	// Only the calls the fault's Ops match count towards After.
	m.SetFault(Fault{Err: Outage().Err, After: 1, Ops: []string{OpWrite}})
	for range 3 {
		if _, err := read(context.Background(), m, "x"); err != nil {
			t.Fatalf("read not named in Ops: %v", err)
		}
	}
	if err := write(context.Background(), m, row("z", "v", 1)); err != nil {
		t.Errorf("first write after reads: %v, want it through (reads do not count)", err)
	}
	if err := write(context.Background(), m, row("z", "v", 2)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second write: %v, want ErrUnavailable", err)
	}
}

func TestFaultOps(t *testing.T) {
	m := newTestRegion(t)
	m.SetFault(Fault{Err: Outage().Err, Ops: []string{OpWrite, OpTableRetention}})
	for op, err := range every(m) {
		if want := op == OpWrite || op == OpTableRetention; want != (err != nil) {
			t.Errorf("%s with a fault on write and table_retention: %v", op, err)
		}
	}

	t.Run("close", func(t *testing.T) {
		errClose := errors.New("close failed (test)")
		m.SetFault(Fault{Err: errClose, Ops: []string{OpClose}})
		if err := m.Close(); !errors.Is(err, errClose) {
			t.Errorf("Close with a fault naming it: %v, want %v", err, errClose)
		}
		if err := write(context.Background(), m, row("a", "1", 1)); err != nil {
			t.Errorf("write with a fault on close only: %v", err)
		}
		gate := make(chan struct{})
		m.SetFault(Fault{Gate: gate, Ops: []string{OpClose}})
		done := inBackground(m.Close)
		waitHeld(t, m, 1)
		close(gate)
		if err := receive(t, done, "the gated Close"); err != nil {
			t.Errorf("Close after its gate opened: %v", err)
		}
		if n := m.Calls(OpClose); n != 2 {
			t.Errorf("Calls(close) = %d, want 2", n)
		}
	})
}

func TestCallsAndWrites(t *testing.T) {
	m := NewMemoryRegion()
	ctx := context.Background()
	if err := write(ctx, m, row("a", "1", 1)); err == nil {
		t.Fatal("write to a missing table succeeded")
	}
	if err := m.CreateTable(ctx, testKeyspace, testTable, time.Hour); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := write(ctx, m, row("a", "1", int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	m.SetFault(Outage())
	_ = write(ctx, m, row("a", "1", 9))
	_, _ = read(ctx, m, "a")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	m.SetFault(Fault{})
	_ = write(canceled, m, row("a", "1", 10))
	want := map[string]int{OpCreateKeyspace: 0, OpCreateTable: 1, OpWrite: 6, OpRead: 1, OpScan: 0, OpTableRetention: 0, OpClose: 0}
	for op, n := range want {
		if got := m.Calls(op); got != n {
			t.Errorf("Calls(%s) = %d, want %d", op, got, n)
		}
	}
	// Applied: the three to an existing table, not the refused, failed or
	// canceled ones.
	if got := m.Writes(); got != 3 {
		t.Errorf("Writes() = %d, want 3", got)
	}
}

func TestObserve(t *testing.T) {
	m := NewMemoryRegion()
	var mu sync.Mutex
	var ops []string
	var writes []WriteRequest
	m.Observe = func(op string, req any) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op)
		if w, ok := req.(WriteRequest); ok {
			writes = append(writes, w)
		}
	}
	ctx := context.Background()
	if err := m.CreateTable(ctx, testKeyspace, testTable, time.Hour); err != nil {
		t.Fatal(err)
	}
	m.SetFault(Outage())
	if err := write(ctx, m, row("a", "1", 7)); err == nil {
		t.Fatal("write during an outage succeeded")
	}
	_, _ = read(ctx, m, "a")
	_ = m.Close()
	if want := []string{OpCreateTable, OpWrite, OpRead, OpClose}; !slices.Equal(ops, want) {
		t.Errorf("observed %v, want %v", ops, want)
	}
	if len(writes) != 1 || writes[0].Consistency != "LOCAL_QUORUM" || writes[0].Rows[0].Timestamp != 7 {
		t.Errorf("observed writes %+v, want the failed write", writes)
	}
}

func TestLookupIgnoresFault(t *testing.T) {
	m := newTestRegion(t)
	if err := write(context.Background(), m, row("a", "1", 1)); err != nil {
		t.Fatal(err)
	}
	m.SetFault(Fault{Err: Outage().Err, Gate: make(chan struct{}), Delay: time.Hour})
	done := inBackground(func() error {
		if got := stored(m, "a"); got != "1" {
			return fmt.Errorf("Lookup during a fault = %q, want 1", got)
		}
		if _, ok := m.Lookup(testKeyspace, "missing", []byte("pk"), []byte("a")); ok {
			return errors.New("Lookup found a row in a missing table")
		}
		return m.SetTableRetention(testKeyspace, testTable, 2*time.Hour)
	})
	if err := receive(t, done, "Lookup and SetTableRetention during a fault"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTableRetention(testKeyspace, "missing", time.Hour); err == nil {
		t.Error("SetTableRetention of a missing table succeeded")
	}
	m.SetFault(Fault{})
	if d, err := m.TableRetention(context.Background(), testKeyspace, testTable); err != nil || d != 2*time.Hour {
		t.Errorf("TableRetention = %v, %v; want the retention set during the fault, 2h", d, err)
	}
	if n := m.Calls(OpRead); n != 0 {
		t.Errorf("Lookup counted as %d reads", n)
	}
}

// TestWriteLastWriteWins: a write replaces the stored version only when it
// wins by Cassandra's order (quorum.Compare): a higher timestamp; on a tie
// a deletion, then the greater value.
func TestWriteLastWriteWins(t *testing.T) {
	marker := func(ts int64) Row { return Row{CK: []byte("k"), Deleted: true, Timestamp: ts} }
	cases := []struct {
		name        string
		first, then Row
		want        string
	}{
		{"higher timestamp wins", row("k", "old", 10), row("k", "new", 11), "new"},
		{"lower timestamp loses", row("k", "new", 11), row("k", "old", 10), "new"},
		{"lower timestamp loses with a greater value", row("k", "a", 11), row("k", "z", 10), "a"},
		{"tie: greater value wins", row("k", "a", 10), row("k", "b", 10), "b"},
		{"tie: smaller value loses", row("k", "b", 10), row("k", "a", 10), "b"},
		{"tie: same value", row("k", "a", 10), row("k", "a", 10), "a"},
		{"tie: deletion wins", row("k", "a", 10), marker(10), "<deleted>"},
		{"tie: value loses to a deletion", marker(10), row("k", "z", 10), "<deleted>"},
		{"newer value wins over a deletion", marker(10), row("k", "back", 11), "back"},
		{"older value loses to a deletion", marker(10), row("k", "old", 9), "<deleted>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestRegion(t)
			for _, r := range []Row{c.first, c.then} {
				if err := write(context.Background(), m, r); err != nil {
					t.Fatal(err)
				}
			}
			if got := stored(m, "k"); got != c.want {
				t.Errorf("stored %q, want %q", got, c.want)
			}
			if m.Writes() != 2 {
				t.Errorf("Writes() = %d, want 2 (a losing write is applied, and loses)", m.Writes())
			}
		})
	}
}

// TestTTL: a row lives its TTL on the region's clock (Now), which reads and
// scans report as what remains.
func TestTTL(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m := NewMemoryRegion()
	m.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ctx := context.Background()
	if err := m.CreateTable(ctx, testKeyspace, testTable, time.Hour); err != nil {
		t.Fatal(err)
	}
	short := row("a", "1", 1)
	short.TTL = 10
	if err := write(ctx, m, short); err != nil {
		t.Fatal(err)
	}
	if err := write(ctx, m, row("b", "2", 1)); err != nil {
		t.Fatal(err)
	}
	advance(4 * time.Second)
	r, err := read(ctx, m, "a")
	if err != nil || r.TTL != 6 {
		t.Fatalf("read 4s into a 10s TTL: %+v, %v; want TTL 6", r, err)
	}
	if r, _ := m.Lookup(testKeyspace, testTable, []byte("pk"), []byte("b")); r.TTL != 0 {
		t.Errorf("row without TTL reports TTL %d", r.TTL)
	}
	advance(6 * time.Second)
	if _, err := read(ctx, m, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("read after the TTL: %v, want ErrNotFound", err)
	}
	if got := stored(m, "a"); got != "" {
		t.Errorf("Lookup after the TTL = %q, want none", got)
	}
	rows, err := scan(ctx, m)
	if err != nil || len(rows) != 1 || string(rows[0].CK) != "b" {
		t.Errorf("scan after the TTL: %+v, %v; want only b", rows, err)
	}
	// An expired row is still a version: an older write does not win
	// over it, a newer one does.
	if err := write(ctx, m, row("a", "older", 0)); err != nil {
		t.Fatal(err)
	}
	if got := stored(m, "a"); got != "" {
		t.Errorf("an older write replaced an expired newer version: %q", got)
	}
	if err := write(ctx, m, row("a", "newer", 2)); err != nil {
		t.Fatal(err)
	}
	if got := stored(m, "a"); got != "newer" {
		t.Errorf("a newer write after expiry stored %q, want newer", got)
	}
}
