package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/mock/gomock"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/store/driver"
)

// regionNamesABC are the regions of the test deployments; "a" is home.
var regionNamesABC = []string{"a", "b", "c"}

// DefaultRetentionForTests is the retention of namespace "ns" in the
// environments of newFaultEnv and newMockEnv.
const DefaultRetentionForTests = time.Hour

// memEnv is a Store over three MemoryRegions, a (home), b and c, with
// namespace "ns" created in each. Every call a region receives from then on
// is recorded in arrival order (driver.MemoryRegion.Observe), failed calls
// included, so a test can check what was asked of each region.
type memEnv struct {
	st   *Store
	ns   *Namespace
	mem  map[string]*driver.MemoryRegion
	sink *recordingSink // the hint sink of newFaultEnv (unless mut replaced it)

	mu    sync.Mutex
	calls []regionCall
}

// regionCall is one call a MemoryRegion received.
type regionCall struct {
	region, op string
	req        any // the driver request of a write, read or scan
}

// newMemEnv opens a Store over three MemoryRegions with the Config's
// defaults (breakers on, no hint sink), changed by mut, and creates
// namespace "ns". When mut sets Config.Now, the regions' clocks are that
// clock too.
func newMemEnv(t *testing.T, mut func(*Config)) *memEnv {
	return openMemEnv(t, mut)
}

// newFaultEnv is newMemEnv for tests of failure handling: breakers off and
// a recordingSink (e.sink) unless mut says otherwise, and namespace "ns"
// created with DefaultRetentionForTests.
func newFaultEnv(t *testing.T, mut func(*Config)) *memEnv {
	sink := &recordingSink{}
	e := openMemEnv(t, func(c *Config) {
		c.HintSink = sink
		c.Breaker.Disabled = true
		if mut != nil {
			mut(c)
		}
	}, WithRetention(DefaultRetentionForTests))
	e.sink = sink
	return e
}

func openMemEnv(t *testing.T, mut func(*Config), nsOpts ...NamespaceOption) *memEnv {
	t.Helper()
	e := &memEnv{mem: map[string]*driver.MemoryRegion{}}
	cfg := Config{Home: "a", Keyspace: "ks"}
	for _, n := range regionNamesABC {
		m := driver.NewMemoryRegion()
		m.Observe = func(op string, req any) {
			e.mu.Lock()
			e.calls = append(e.calls, regionCall{region: n, op: op, req: req})
			e.mu.Unlock()
		}
		e.mem[n] = m
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
	}
	cfg.NewExecutor = driver.MemoryFactory(e.mem)
	// Repair debt writes go to the home region too; the tests of what
	// each region receives do not expect them. The debt tests turn it on.
	cfg.MaxPendingDebt = -1
	if mut != nil {
		mut(&cfg)
	}
	if cfg.Now != nil {
		for _, m := range e.mem {
			m.Now = cfg.Now
		}
	}
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	if e.ns, err = st.CreateNamespace(context.Background(), "ns", nsOpts...); err != nil {
		t.Fatal(err)
	}
	e.forget()
	return e
}

// forget drops the calls recorded so far.
func (e *memEnv) forget() {
	e.mu.Lock()
	e.calls = nil
	e.mu.Unlock()
}

// existingTable creates namespace table name with retention in every
// region directly (as another process would have), so that the Store does
// not know its retention; the calls are not recorded.
func (e *memEnv) existingTable(t *testing.T, name string, retention time.Duration) {
	t.Helper()
	for _, n := range regionNamesABC {
		if err := e.mem[n].CreateTable(context.Background(), "ks", name, retention); err != nil {
			t.Fatal(err)
		}
	}
	e.forget()
}

// asked returns the regions that received a call of op, one entry per
// call, in arrival order.
func (e *memEnv) asked(op string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, c := range e.calls {
		if c.op == op {
			out = append(out, c.region)
		}
	}
	return out
}

// writes returns the write requests region received, in arrival order.
func (e *memEnv) writes(region string) []driver.WriteRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []driver.WriteRequest
	for _, c := range e.calls {
		if w, ok := c.req.(driver.WriteRequest); ok && c.region == region {
			out = append(out, w)
		}
	}
	return out
}

// hints returns the hints stored in e.sink so far.
func (e *memEnv) hints() []record.Hint { return e.sink.all() }

// timestamps returns the distinct timestamps of every row written to any
// region and of every hint.
func (e *memEnv) timestamps() []int64 {
	seen := map[int64]bool{}
	for _, n := range regionNamesABC {
		for _, w := range e.writes(n) {
			for _, r := range w.Rows {
				seen[r.Timestamp] = true
			}
		}
	}
	for _, h := range e.hints() {
		seen[h.Timestamp] = true
	}
	var out []int64
	for ts := range seen {
		out = append(out, ts)
	}
	return out
}

// markerTTLs returns the TTLs of the deletion markers in every write any
// region received.
func (e *memEnv) markerTTLs() []int {
	var ttls []int
	for _, n := range regionNamesABC {
		for _, w := range e.writes(n) {
			for _, r := range w.Rows {
				if r.Deleted {
					ttls = append(ttls, r.TTL)
				}
			}
		}
	}
	return ttls
}

// checkWrites checks that region received exactly the writes want, in any
// order.
func (e *memEnv) checkWrites(t *testing.T, region string, want ...writeSpec) {
	t.Helper()
	matchExactly(t, "region "+region+" received", e.writes(region), want)
}

// checkHints checks that the hints got are exactly want, in any order.
func checkHints(t *testing.T, got []record.Hint, want ...hintSpec) {
	t.Helper()
	matchExactly(t, "hints", got, want)
}

// matchExactly checks that every item of got matches one spec of want and
// every spec one item.
func matchExactly[T any, S interface {
	matches(T) bool
	String() string
}](t *testing.T, what string, got []T, want []S) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && w.matches(g) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("%s: no %v among %+v", what, w, got)
		}
	}
	for i, g := range got {
		if !used[i] {
			t.Errorf("%s: unexpected %+v (want only %v)", what, g, want)
		}
	}
}

// writeSpec describes a driver.WriteRequest of one row to ks.ns.
type writeSpec struct {
	pk, ck, value string
	deleted       bool
	cons          string // "" = any
}

func writeOf(pk, ck, value string, cons string) writeSpec {
	return writeSpec{pk: pk, ck: ck, value: value, cons: cons}
}

func deleteOf(pk, ck string, cons string) writeSpec {
	return writeSpec{pk: pk, ck: ck, deleted: true, cons: cons}
}

func (m writeSpec) matches(w driver.WriteRequest) bool {
	if len(w.Rows) != 1 {
		return false
	}
	r := w.Rows[0]
	if m.cons != "" && w.Consistency != m.cons {
		return false
	}
	if m.deleted {
		if !r.Deleted || r.Value != nil || r.TTL <= 0 {
			return false
		}
	} else if r.Deleted || !bytes.Equal(r.Value, []byte(m.value)) {
		return false
	}
	return w.Keyspace == "ks" && w.Table == "ns" && string(w.PK) == m.pk && string(r.CK) == m.ck && r.Timestamp > 0
}

func (m writeSpec) String() string {
	return fmt.Sprintf("write ns pk=%q ck=%q value=%q deleted=%v cons=%q", m.pk, m.ck, m.value, m.deleted, m.cons)
}

// hintSpec describes a hint for one target, from home region a.
type hintSpec struct {
	target, pk, ck, value string
	deleted               bool
	expires               bool
}

func hintOf(target, pk, ck, value string) hintSpec {
	return hintSpec{target: target, pk: pk, ck: ck, value: value}
}

func (m hintSpec) matches(h record.Hint) bool {
	if m.deleted != h.Deleted || (!m.deleted && !bytes.Equal(h.Value, []byte(m.value))) || (m.deleted && h.Value != nil) {
		return false
	}
	if m.expires == h.ExpiresAt.IsZero() {
		return false
	}
	return h.Target == m.target && h.Origin == "a" && h.Namespace == "ns" && string(h.PK) == m.pk &&
		string(h.CK) == m.ck && h.Timestamp > 0 && !h.CreatedAt.IsZero()
}

func (m hintSpec) String() string {
	return fmt.Sprintf("hint for %s pk=%q ck=%q value=%q deleted=%v expires=%v", m.target, m.pk, m.ck, m.value, m.deleted, m.expires)
}

// recordingSink keeps every hint it is given. Hint returns err: nil, the
// default, makes every hint durable at once. Set err before use.
type recordingSink struct {
	err error

	mu    sync.Mutex
	hints []record.Hint
}

func (r *recordingSink) Hint(_ context.Context, h record.Hint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hints = append(r.hints, h)
	return r.err
}

func (r *recordingSink) all() []record.Hint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hints)
}

// replay applies every hint to its target region, as repaird's replayer
// does: same timestamp, remaining TTL.
func (r *recordingSink) replay(t *testing.T, regions map[string]*driver.MemoryRegion) {
	t.Helper()
	for _, h := range r.all() {
		ttl, expires := 0, int64(0)
		if !h.ExpiresAt.IsZero() {
			expires = h.ExpiresAt.Unix()
			ttl = int(time.Until(h.ExpiresAt)/time.Second) + 1
		}
		err := regions[h.Target].Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: h.Namespace, PK: h.PK,
			Rows: []driver.Row{{CK: h.CK, Value: h.Value, Deleted: h.Deleted, Timestamp: h.Timestamp, TTL: ttl, Expires: expires}}})
		if err != nil {
			t.Fatalf("replay hint: %v", err)
		}
	}
}

// mockEnv is a Store over gomock executors and a gomock hint sink, for the
// tests about which calls are made at all: any call a test did not set up
// fails it.
type mockEnv struct {
	execs map[string]*MockExecutor
	sink  *MockHintSink
	st    *Store
	ns    *Namespace
}

// newMockEnv opens a Store over mocks for regions a, b, c. Breakers are
// disabled. Executors expect Close; every other call must be set up by the
// test (an unexpected call fails it).
func newMockEnv(t *testing.T) *mockEnv {
	t.Helper()
	ctrl := gomock.NewController(t)
	e := &mockEnv{execs: map[string]*MockExecutor{}, sink: NewMockHintSink(ctrl)}
	cfg := Config{Home: "a", Keyspace: "ks", HintSink: e.sink, Breaker: BreakerConfig{Disabled: true}}
	for _, n := range regionNamesABC {
		m := NewMockExecutor(ctrl)
		m.EXPECT().Close().Return(nil).AnyTimes()
		e.execs[n] = m
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
	}
	cfg.NewExecutor = func(_ context.Context, rc driver.Config) (driver.Executor, error) {
		return e.execs[rc.Region], nil
	}
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e.st = st
	ns, err := st.Namespace("ns")
	if err != nil {
		t.Fatal(err)
	}
	st.retentions.Set("ns", DefaultRetentionForTests) // as a Delete would have read it
	e.ns = ns
	t.Cleanup(func() { _ = st.Close() })
	return e
}

// metricValue returns the value of a collector holding exactly one gauge or
// counter sample.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var vals []float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		switch {
		case d.Gauge != nil:
			vals = append(vals, d.Gauge.GetValue())
		case d.Counter != nil:
			vals = append(vals, d.Counter.GetValue())
		}
	}
	if len(vals) != 1 {
		t.Fatalf("collector has %d samples, want 1", len(vals))
	}
	return vals[0]
}

// queuedCount is how many background writes wait in st's queue.
func queuedCount(st *Store) int64 { return int64(len(st.queue)) }

// waitFor waits until cond holds, failing the test after 30s.
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

// waitHeld waits until region m holds n calls at its fault's Gate or Delay.
func waitHeld(t *testing.T, m *driver.MemoryRegion, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d calls held by the region", n), func() bool { return m.Held() == n })
}

func put(t *testing.T, ns *Namespace, ck string, opts ...CallOption) error {
	t.Helper()
	return ns.Put(context.Background(), []byte("pk"), []byte(ck), []byte("v"+ck), opts...)
}

// putN writes rows "1" … "n" (values "v1" … "vn") as put does.
func putN(t *testing.T, ns *Namespace, n int, opts ...CallOption) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if err := put(t, ns, fmt.Sprint(i), opts...); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}

// writesOf describes the writes put makes of rows from … to in region
// requests.
func writesOf(from, to int) []writeSpec {
	var out []writeSpec
	for i := from; i <= to; i++ {
		out = append(out, writeOf("pk", fmt.Sprint(i), fmt.Sprint("v", i), ""))
	}
	return out
}

// hintsOf describes the hints for target of rows from … to written by put.
func hintsOf(target string, from, to int) []hintSpec {
	var out []hintSpec
	for i := from; i <= to; i++ {
		out = append(out, hintOf(target, "pk", fmt.Sprint(i), fmt.Sprint("v", i)))
	}
	return out
}

// notHinted is how many rows region missed that were not stored as hints:
// hints_failed_total of every reason plus hints_uncertain_total.
func notHinted(t *testing.T, st *Store, region string) float64 {
	t.Helper()
	n := metricValue(t, st.metrics.hintsUncertain.WithLabelValues(region))
	for _, reason := range []string{lostSink, lostPoolFull, lostNoSink, lostClosing} {
		n += metricValue(t, st.metrics.hintsFailed.WithLabelValues(region, reason))
	}
	return n
}
