package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// conflictCounter reads one sample of the metric name with labels from
// the Store's metrics (0 when there is none).
func conflictCounter(t *testing.T, st *Store, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(st.Metrics()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestReadRepairRecordsConflicts: a Get at All whose regions hold
// different versions records the losers that another writer made within
// the window, once per losing version, with the region holding it.
func TestReadRepairRecordsConflicts(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	base := now.Add(-time.Hour).UnixMicro()
	ts := func(us int64, w int) int64 { return (base+us)&^MaxWriterID | int64(w) }
	row := func(t int64, v string) *driver.Row {
		if v == "" {
			return &driver.Row{CK: []byte("ck"), Deleted: true, Timestamp: t}
		}
		return &driver.Row{CK: []byte("ck"), Value: []byte(v), Timestamp: t}
	}
	minute := int64(time.Minute / time.Microsecond)
	cases := []struct {
		name    string
		regions map[string]*driver.Row // nil: absent
		want    []string               // "winner ts/writer -> loser ts/writer in region"
	}{
		{"two writers", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(640, 2), "y"), "c": row(ts(640, 2), "y")},
			[]string{fmt.Sprintf("put %d/2 beat put %d/1 in a", ts(640, 2), ts(0, 1))}},
		{"one loser in two regions is one conflict", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(0, 1), "x"), "c": row(ts(640, 2), "y")},
			[]string{fmt.Sprintf("put %d/2 beat put %d/1 in a", ts(640, 2), ts(0, 1))}},
		{"delete beats a concurrent put", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(640, 2), ""), "c": nil},
			[]string{fmt.Sprintf("delete %d/2 beat put %d/1 in a", ts(640, 2), ts(0, 1))}},
		{"two losers", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(64, 3), "z"), "c": row(ts(640, 2), "y")},
			[]string{fmt.Sprintf("put %d/2 beat put %d/1 in a", ts(640, 2), ts(0, 1)), fmt.Sprintf("put %d/2 beat put %d/3 in b", ts(640, 2), ts(64, 3))}},
		{"same writer", map[string]*driver.Row{"a": row(ts(0, 4), "x"), "b": row(ts(640, 4), "y"), "c": row(ts(640, 4), "y")}, nil},
		{"outside the window", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(2*minute, 2), "y"), "c": nil}, nil},
		{"agreement", map[string]*driver.Row{"a": row(ts(0, 1), "x"), "b": row(ts(0, 1), "x"), "c": row(ts(0, 1), "x")}, nil},
		{"missing is no version", map[string]*driver.Row{"a": nil, "b": row(ts(0, 1), "x"), "c": nil}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			log := conflicts.NewMemory()
			e := newFaultEnv(t, func(cfg *Config) {
				cfg.Now = func() time.Time { return now }
				cfg.ConflictSink = log
			})
			for name, r := range c.regions {
				if r == nil {
					continue
				}
				if err := e.mem[name].Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: "ns", PK: []byte("pk"), Rows: []driver.Row{*r}}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithConsistency(quorum.All))
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			// The Store lists the sink's records (the read repair may still
			// be running: only the call is checked here).
			_, lerr := e.st.Conflicts(context.Background(), "ns", ConflictQuery{Since: now.Add(-2 * time.Hour), Until: now})
			if err := e.st.Close(); err != nil { // waits for the read repair
				t.Fatal(err)
			}
			if lerr != nil {
				t.Fatal(lerr)
			}
			got, err := log.ListConflicts(context.Background(), "ns", ConflictQuery{Since: now.Add(-2 * time.Hour), Until: now})
			if err != nil {
				t.Fatal(err)
			}
			var desc []string
			for _, r := range got {
				kind := func(s ConflictSide) string {
					if s.Deleted {
						return "delete"
					}
					return "put"
				}
				if r.Namespace != "ns" || string(r.PK) != "pk" || string(r.CK) != "ck" || r.DetectedBy != "read_repair" || !r.DetectedAt.Equal(now) {
					t.Errorf("record %s: wrong row, detector or time", r)
				}
				if r.Winner.Writer != quorum.WriterOf(r.Winner.Timestamp) || r.Loser.Writer != quorum.WriterOf(r.Loser.Timestamp) {
					t.Errorf("record %s: writer ids do not match the timestamps", r)
				}
				desc = append(desc, fmt.Sprintf("%s %d/%d beat %s %d/%d in %s", kind(r.Winner), r.Winner.Timestamp, r.Winner.Writer,
					kind(r.Loser), r.Loser.Timestamp, r.Loser.Writer, r.LoserRegion))
			}
			slices.Sort(desc)
			slices.Sort(c.want)
			if !slices.Equal(desc, c.want) {
				t.Fatalf("recorded %q, want %q", desc, c.want)
			}
			if n := conflictCounter(t, e.st, "tidemark_conflicts_total", map[string]string{"namespace": "ns", "detected_by": "read_repair"}); int(n) != len(c.want) {
				t.Fatalf("tidemark_conflicts_total = %v, want %d", n, len(c.want))
			}
		})
	}
}

// TestConflictsConfig: bad conflict settings fail Open with
// ErrInvalidConfig; without a sink and with NewExecutor, Conflicts says
// there is no log.
func TestConflictsConfig(t *testing.T) {
	for _, cc := range []ConflictConfig{{Window: -time.Second}, {TTL: time.Millisecond}, {PerSecond: -1}, {Burst: -1}} {
		cfg := Config{Home: "a", Keyspace: "ks", Regions: []RegionConfig{{Name: "a", ContactPoints: []string{"a.invalid"}}},
			NewExecutor: driver.MemoryFactory(map[string]*driver.MemoryRegion{"a": driver.NewMemoryRegion()}), Conflicts: cc}
		if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Open with %+v: %v, want ErrInvalidConfig", cc, err)
		}
	}
	e := newMemEnv(t, nil)
	if _, err := e.st.Conflicts(context.Background(), "ns", ConflictQuery{}); !errors.Is(err, ErrNoConflictLog) {
		t.Fatalf("Conflicts without a log: %v, want ErrNoConflictLog", err)
	}
	if _, err := e.st.Conflicts(context.Background(), "x; drop", ConflictQuery{}); !errors.Is(err, ErrInvalidNamespace) {
		t.Fatalf("Conflicts of a bad namespace: %v, want ErrInvalidNamespace", err)
	}
}

// TestStoreConflictsLists: Store.Conflicts returns what the sink holds,
// newest winning write first, limited.
func TestStoreConflictsLists(t *testing.T) {
	log := conflicts.NewMemory()
	e := newMemEnv(t, func(c *Config) { c.ConflictSink = log })
	now := time.Now()
	for i := range 3 {
		r := Conflict{Namespace: "ns", PK: []byte(fmt.Sprint("pk", i)), Winner: ConflictSide{Timestamp: now.Add(time.Duration(-i) * time.Minute).UnixMicro()},
			Loser: ConflictSide{Timestamp: now.Add(time.Duration(-i)*time.Minute - time.Second).UnixMicro()}, DetectedBy: "repair"}
		if err := log.WriteConflict(context.Background(), r, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.st.Conflicts(context.Background(), "ns", ConflictQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].PK) != "pk0" || string(got[1].PK) != "pk1" {
		t.Fatalf("Conflicts = %v, want pk0 and pk1", got)
	}
	if _, err := e.st.Conflicts(context.Background(), "ns", ConflictQuery{Limit: -1}); !errors.Is(err, conflicts.ErrInvalidQuery) {
		t.Fatalf("negative limit: %v, want ErrInvalidQuery", err)
	}
}
