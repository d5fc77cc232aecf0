package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/mock/gomock"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/store/driver"
)

// regionNamesABC are the regions of the mock deployments; "a" is home.
var regionNamesABC = []string{"a", "b", "c"}

// mockEnv is a Store over gomock executors and a gomock hint sink.
type mockEnv struct {
	t     *testing.T
	ctrl  *gomock.Controller
	execs map[string]*MockExecutor
	sink  *MockHintSink
	st    *Store
	ns    *Namespace

	mu  sync.Mutex
	tss map[int64]int // timestamps seen in writes and hints
}

// newMockEnv opens a Store over mocks for regions a, b, c. Breakers are
// disabled unless mut enables them. Executors expect Close; every other
// call must be set up by the test (an unexpected call fails it).
func newMockEnv(t *testing.T, mut func(*Config)) *mockEnv {
	t.Helper()
	ctrl := gomock.NewController(t)
	e := &mockEnv{t: t, ctrl: ctrl, execs: map[string]*MockExecutor{}, sink: NewMockHintSink(ctrl), tss: map[int64]int{}}
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
	if mut != nil {
		mut(&cfg)
	}
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e.st = st
	ns, err := st.Namespace("ns", WithRetention(DefaultRetentionForTests))
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns
	t.Cleanup(func() { _ = st.Close() })
	return e
}

// DefaultRetentionForTests is the retention the mock namespace is given, so
// deletes need no TableRetention call.
const DefaultRetentionForTests = time.Hour

func (e *mockEnv) seen(ts int64) {
	e.mu.Lock()
	e.tss[ts]++
	e.mu.Unlock()
}

// timestamps returns the distinct timestamps seen so far.
func (e *mockEnv) timestamps() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []int64
	for ts := range e.tss {
		out = append(out, ts)
	}
	return out
}

// expectWrite makes region's executor expect n writes matching m, returning
// err, recording the timestamps.
func (e *mockEnv) expectWrite(region string, m gomock.Matcher, err error, n int) *gomock.Call {
	return e.execs[region].EXPECT().Write(gomock.Any(), m).Times(n).DoAndReturn(
		func(_ context.Context, w driver.WriteRequest) error {
			for _, r := range w.Rows {
				e.seen(r.Timestamp)
			}
			return err
		})
}

// expectHint makes the sink expect n hints matching m, returning err.
func (e *mockEnv) expectHint(m gomock.Matcher, err error, n int) *gomock.Call {
	return e.sink.EXPECT().Hint(gomock.Any(), m).Times(n).DoAndReturn(
		func(_ context.Context, h record.Hint) error {
			e.seen(h.Timestamp)
			return err
		})
}

// writeMatcher matches a driver.WriteRequest of one row.
type writeMatcher struct {
	pk, ck, value string
	deleted       bool
	cons          string // "" = any
}

func writeOf(pk, ck, value string, cons string) writeMatcher {
	return writeMatcher{pk: pk, ck: ck, value: value, cons: cons}
}

func deleteOf(pk, ck string, cons string) writeMatcher {
	return writeMatcher{pk: pk, ck: ck, deleted: true, cons: cons}
}

func (m writeMatcher) Matches(x any) bool {
	w, ok := x.(driver.WriteRequest)
	if !ok || len(w.Rows) != 1 {
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

func (m writeMatcher) String() string {
	return fmt.Sprintf("write ns pk=%q ck=%q value=%q deleted=%v cons=%q", m.pk, m.ck, m.value, m.deleted, m.cons)
}

// hintMatcher matches a hint for one target.
type hintMatcher struct {
	target, pk, ck, value string
	deleted               bool
	expires               bool
}

func hintOf(target, pk, ck, value string) hintMatcher {
	return hintMatcher{target: target, pk: pk, ck: ck, value: value}
}

func (m hintMatcher) Matches(x any) bool {
	h, ok := x.(record.Hint)
	if !ok {
		return false
	}
	if m.deleted != h.Deleted || (!m.deleted && !bytes.Equal(h.Value, []byte(m.value))) || (m.deleted && h.Value != nil) {
		return false
	}
	if m.expires == h.ExpiresAt.IsZero() {
		return false
	}
	return h.Target == m.target && h.Origin == "a" && h.Namespace == "ns" && string(h.PK) == m.pk &&
		string(h.CK) == m.ck && h.Timestamp > 0 && !h.CreatedAt.IsZero()
}

func (m hintMatcher) String() string {
	return fmt.Sprintf("hint for %s pk=%q ck=%q value=%q deleted=%v expires=%v", m.target, m.pk, m.ck, m.value, m.deleted, m.expires)
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

// recordingSink keeps every hint, durable at once.
type recordingSink struct {
	mu    sync.Mutex
	hints []record.Hint
}

func (r *recordingSink) Hint(_ context.Context, h record.Hint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hints = append(r.hints, h)
	return nil
}

// replay applies every hint to its target region, as repaird's replayer
// does: same timestamp, remaining TTL.
func (r *recordingSink) replay(t *testing.T, regions map[string]*driver.MemoryRegion) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.hints {
		ttl := 0
		if !h.ExpiresAt.IsZero() {
			ttl = int(time.Until(h.ExpiresAt)/time.Second) + 1
		}
		err := regions[h.Target].Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: h.Namespace, PK: h.PK,
			Rows: []driver.Row{{CK: h.CK, Value: h.Value, Deleted: h.Deleted, Timestamp: h.Timestamp, TTL: ttl}}})
		if err != nil {
			t.Fatalf("replay hint: %v", err)
		}
	}
}

// queuedCount is how many background writes wait in st's queue.
func queuedCount(st *Store) int64 {
	n, _ := st.queued.held()
	return n
}
