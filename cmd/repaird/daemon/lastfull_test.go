package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/repair"
)

// gauge returns the value of the gauge name{namespace=ns} in reg, or false.
func gauge(t *testing.T, reg *prometheus.Registry, name, ns string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if ns == "" && len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue(), true
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

const lastFullGauge = "tidemark_repair_last_full_repair_timestamp_seconds"

// finishedRun records a complete run of ns that started at started and
// finished at finished.
func finishedRun(t *testing.T, store *repair.MemProgress, ns string, started, finished time.Time) repair.RunInfo {
	t.Helper()
	ctx := context.Background()
	store.Now = func() time.Time { return started }
	run, err := store.Begin(ctx, ns, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Finish(ctx, run, finished); err != nil {
		t.Fatal(err)
	}
	return run
}

// After a restart the daemon publishes the last full repair recorded in the
// progress store, as the run's start, even while a region (and so every
// repair run) is unreachable; reading the store is retried until it works.
func TestLastFullRepairRestoredAtStartup(t *testing.T) {
	started := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	finished := started.Add(20 * time.Hour)
	store := repair.NewMemProgress()
	run := finishedRun(t, store, "users", started, finished)

	var calls atomic.Int32
	d, err := New(testConfig(t), Options{Connect: unreachable(&calls), RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	d.openProgress = func(context.Context) (repair.ProgressStore, error) {
		if opens.Add(1) < 3 {
			return nil, errors.New("home region not reachable yet")
		}
		return store, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := gauge(t, d.Registry(), lastFullGauge, "users")
		if ok {
			if want := float64(started.UnixNano()) / 1e9; v != want {
				t.Fatalf("restored gauge = %v, want the run's start %v (finish %v)", v, want, float64(finished.Unix()))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s series for users after startup (%d store opens)", lastFullGauge, opens.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Status().Namespaces["users"]
	if !st.LastFullRepair.Equal(started) || !st.LastFullRepairEnded.Equal(finished) || st.LastFullRepairRun != run.ID {
		t.Errorf("/status users = %+v; want last full repair %v (run %s, ended %v)", st, started, run.ID, finished)
	}
	if _, ok := gauge(t, d.Registry(), lastFullGauge, "orders"); ok {
		t.Error("a series for orders, which never completed a run")
	}
	if !d.Status().Namespaces["orders"].LastFullRepair.IsZero() {
		t.Error("orders has a last full repair")
	}
}

func TestStatusLastFullRepairIsTheRunStart(t *testing.T) {
	b := newStatusBoard(testConfig(t))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name     string
		apply    func()
		wantAt   time.Time
		wantRun  string
		warnings []string
	}{
		{"a resumed run completes", func() {
			b.begin("users")
			b.finish("users", &repair.Report{RunID: "r1", Complete: true, Resumed: true, RunStarted: t0,
				Warnings: []string{"abandoned unfinished run r0"}}, nil, "")
		}, t0, "r1", []string{"abandoned unfinished run r0"}},
		{"an incomplete run changes nothing", func() {
			b.begin("users")
			b.finish("users", &repair.Report{RunID: "r2", RunStarted: t0.Add(time.Hour)}, errors.New("incomplete"), "")
		}, t0, "r1", nil},
		{"a dry run changes nothing", func() {
			b.begin("users")
			b.finish("users", &repair.Report{RunID: "r3", DryRun: true, Complete: true, RunStarted: t0.Add(2 * time.Hour)}, nil, "")
		}, t0, "r1", nil},
		{"an older run restored late changes nothing", func() {
			b.restored("users", repair.RunInfo{ID: "r-old", StartedAt: t0.Add(-time.Hour), FinishedAt: t0})
		}, t0, "r1", nil},
		{"a newer complete run", func() {
			b.begin("users")
			b.finish("users", &repair.Report{RunID: "r4", Complete: true, RunStarted: t0.Add(48 * time.Hour)}, nil, "")
		}, t0.Add(48 * time.Hour), "r4", nil},
	}
	for _, s := range steps {
		s.apply()
		n := b.snapshot().Namespaces["users"]
		if !n.LastFullRepair.Equal(s.wantAt) || n.LastFullRepairRun != s.wantRun {
			t.Errorf("%s: last full repair %v (run %s), want %v (run %s)", s.name, n.LastFullRepair, n.LastFullRepairRun, s.wantAt, s.wantRun)
		}
		if s.warnings != nil && (len(n.LastRun.Warnings) != 1 || n.LastRun.Warnings[0] != s.warnings[0]) {
			t.Errorf("%s: last run warnings %q, want %q", s.name, n.LastRun.Warnings, s.warnings)
		}
	}
}

func TestReplayerGroupPerRegion(t *testing.T) {
	tests := []struct {
		name, hints string
		want        map[string]string
	}{
		{"default group", "hints:\n  brokers: [\"127.0.0.1:9092\"]\n  regions: [a, b]\n",
			map[string]string{"a": "tidemark-hints-a", "b": "tidemark-hints-b"}},
		{"configured group", "hints:\n  brokers: [\"127.0.0.1:9092\"]\n  group: repaird\n  regions: [b]\n",
			map[string]string{"b": "repaird-b"}},
		{"home region by default", "hints:\n  brokers: [\"127.0.0.1:9092\"]\n  group: g\n",
			map[string]string{"a": "g-a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, baseYAML+tc.hints)
			d, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var replayers []string
			for _, w := range d.workers {
				if len(w.Name) > 6 && w.Name[:6] == "hints/" {
					replayers = append(replayers, w.Name[6:])
				}
			}
			if len(replayers) != len(tc.want) {
				t.Fatalf("replayer workers %v, want regions of %v", replayers, tc.want)
			}
			for _, region := range replayers {
				if got := d.replayerConfig(region, nil, nil); got.GroupID != tc.want[region] || got.Region != region {
					t.Errorf("region %s: group %q, want %q", region, got.GroupID, tc.want[region])
				}
			}
		})
	}
}
