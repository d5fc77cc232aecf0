package conflicts

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tidemark/tidemark/quorum"
)

func TestLogObserve(t *testing.T) {
	mem := NewMemory()
	c := NewCounters(ByRepair)
	at := time.Unix(1_900_000_000, 0)
	l := New(ByRepair, mem, Config{PerSecond: 1e-9, Burst: 1}, c, nil, func() time.Time { return at })
	w := quorum.Version{Timestamp: 1000<<6 | 2, Value: []byte("y")}
	lose := quorum.Version{Timestamp: 999<<6 | 1, Value: []byte("x")}
	same := quorum.Version{Timestamp: 999<<6 | 2, Value: []byte("x")}
	if l.Observe(context.Background(), "ns", []byte("pk"), nil, w, same, "a") {
		t.Fatal("a writer overwriting itself is a conflict")
	}
	if !l.Observe(context.Background(), "ns", []byte("pk"), nil, w, lose, "a") {
		t.Fatal("no conflict between two writers 64 µs apart")
	}
	// The burst is spent: counted, dropped, not written.
	if !l.Observe(context.Background(), "ns", []byte("pk2"), nil, w, lose, "a") {
		t.Fatal("no conflict")
	}
	if got := value(t, c.recorded.WithLabelValues("ns")); got != 2 {
		t.Fatalf("recorded %v, want 2", got)
	}
	if got := value(t, c.dropped.WithLabelValues("ns", "rate_limited")); got != 1 {
		t.Fatalf("dropped %v, want 1", got)
	}
	if mem.Writes() != 1 {
		t.Fatalf("%d writes, want 1", mem.Writes())
	}
	rs := mem.records
	want := Record{Namespace: "ns", PK: []byte("pk"), Winner: Side{Timestamp: w.Timestamp, Writer: 2}, Loser: Side{Timestamp: lose.Timestamp, Writer: 1},
		LoserRegion: "a", DetectedBy: ByRepair, DetectedAt: at}
	if len(rs) != 1 || rs[0].String() != want.String() {
		t.Fatalf("records %v, want %v", rs, want)
	}
	var nilLog *Log
	if nilLog.Observe(context.Background(), "ns", nil, nil, w, lose, "a") || nilLog.Window() != 0 {
		t.Fatal("a nil Log detects")
	}
	if New(ByRepair, nil, Config{}, c, nil, nil) != nil || New(ByRepair, mem, Config{Disabled: true}, c, nil, nil) != nil {
		t.Fatal("New without a sink, or disabled, returned a Log")
	}
}

func TestQueryResolve(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	q, err := Query{}.Resolve(now)
	if err != nil || !q.Until.Equal(now) || !q.Since.Equal(now.Add(-DefaultTTL)) || q.Limit != DefaultListLimit {
		t.Fatalf("defaults: %+v, %v", q, err)
	}
	for _, bad := range []Query{{Limit: -1}, {Since: now, Until: now}, {Since: now.Add(-100 * DefaultTTL), Until: now}} {
		if _, err := bad.Resolve(now); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("%+v: %v, want ErrInvalidQuery", bad, err)
		}
	}
}

func TestMerge(t *testing.T) {
	r := func(pk string, w, l int64) Record {
		return Record{Namespace: "ns", PK: []byte(pk), Winner: Side{Timestamp: w}, Loser: Side{Timestamp: l}}
	}
	got := Merge([]Record{r("a", 10, 9), r("b", 20, 19), r("a", 10, 9), r("a", 10, 8)}, 0)
	if len(got) != 3 || string(got[0].PK) != "b" || got[1].Loser.Timestamp != 8 || got[2].Loser.Timestamp != 9 {
		t.Fatalf("Merge = %v", got)
	}
	if got := Merge([]Record{r("a", 10, 9), r("b", 20, 19)}, 1); len(got) != 1 || string(got[0].PK) != "b" {
		t.Fatalf("Merge limited = %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if bad := (Config{}).WithDefaults().Validate(); bad != nil {
		t.Fatalf("defaults invalid: %v", bad)
	}
	if bad := (Config{Window: -1, TTL: time.Millisecond, PerSecond: -1, Burst: -1}).Validate(); len(bad) != 4 {
		t.Fatalf("want 4 problems, got %v", bad)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
