package integration

// Repair debt end to end: with region c cut and the Kafka broker paused,
// LocalQuorum writes go on; c's share of them cannot be hinted and becomes
// repair debt in the home region a. Once c and Kafka are back, `repaird
// serve` — with no namespace to schedule and no hint replayer, so neither a
// full run nor a replay can be what repairs c — drains the debt: every key
// converges, reading one row per key and region, and the debt is gone.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

// Not parallel: it pauses the shared broker.
func TestDebtDrainedAfterKafkaOutage(t *testing.T) {
	localEnv(t)
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, hintsNS, "a", "b", "c")
	prod := hintsProducer(t, newTopicPrefix(t), nil)
	pc := frontRegion(t, "c")
	t.Cleanup(func() { _ = pc.Heal() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"c": pc}, prod, func(c *store.Config) {
		c.HintTimeout = time.Second
	})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := st.Namespace(hintsNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.EnsureTopic(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := pc.Refuse(); err != nil {
		t.Fatal(err)
	}
	resume := pauseBroker(t)

	// 10 s of LocalQuorum writes, puts and deletes, from 8 goroutines.
	const outage = 10 * time.Second
	var writes atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for g := range 8 {
		wg.Go(func() {
			for i := 0; time.Since(start) < outage; i++ {
				pk, ck := fmt.Appendf(nil, "p%d", i%50), fmt.Appendf(nil, "g%d-%d", g, i%40)
				var err error
				if i%5 == 4 {
					err = ns.Delete(ctx, pk, ck)
				} else {
					err = ns.Put(ctx, pk, ck, fmt.Appendf(nil, "v%d", i))
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				writes.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("a LocalQuorum write failed with c cut and Kafka paused: %v", firstErr)
	}
	m := st.Metrics()
	// Every debt entry written (the home region is healthy) before c and
	// Kafka come back. The writes' hints keep failing (one HintTimeout
	// each, against the paused broker) after the writers stop, so "missed"
	// grows for a while and the debt follows it a batch behind: wait
	// until it has caught up. A lost entry never does.
	eventually(t, 3*time.Minute, "the debt recorded", func() error {
		recorded := gauge(t, m, "tidemark_store_debt_recorded_total", "region", "c")
		missed := gauge(t, m, "tidemark_store_hints_failed_total", "region", "c") + gauge(t, m, "tidemark_store_hints_uncertain_total", "region", "c")
		if recorded < missed {
			return fmt.Errorf("%v of %v missed writes recorded as debt (%v background writes waiting)",
				recorded, missed, gauge(t, m, "tidemark_store_background_queue_depth"))
		}
		return nil
	})
	recorded := gauge(t, m, "tidemark_store_debt_recorded_total", "region", "c")
	if overflow := gauge(t, m, "tidemark_store_debt_overflow_total", "region", "c"); overflow != 0 {
		t.Fatalf("%v debt entries overflowed", overflow)
	}
	if recorded == 0 {
		t.Fatal("no write was left to repair: the test did not exercise debt")
	}
	t.Logf("%d writes in %v; c missed: hinted %v, debt %v", writes.Load(), outage,
		gauge(t, m, "tidemark_store_hinted_writes_total", "region", "c"), recorded)

	if err := pc.Heal(); err != nil {
		t.Fatal(err)
	}
	resume()
	healed := time.Now()
	d := startDebtDaemon(t, ks)

	sa, sc := directSession(t, "a", ks), directSession(t, "c", ks)
	var converged time.Duration
	eventually(t, 2*time.Minute, "c holds every row a holds", func() error {
		if diff := diffTables(readTable(t, sa, ks), readTable(t, sc, ks)); diff != "" {
			return fmt.Errorf("c differs from a: %.400s", diff)
		}
		converged = time.Since(healed)
		return nil
	})
	t.Logf("c converged %v after c and Kafka came back (goal: within 30 s)", converged.Round(100*time.Millisecond))
	eventually(t, time.Minute, "the debt drained", func() error {
		var n int
		if err := sa.Query(fmt.Sprintf(`SELECT count(*) FROM %s.%s`, ks, schema.DebtTable)).ScanContext(ctx, &n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d debt entries left", n)
		}
		return nil
	})
	repaired := gauge(t, d.Registry(), "tidemark_repaird_debt_repaired_total", "region", "c")
	read := gauge(t, d.Registry(), "tidemark_repaird_debt_rows_read_total")
	if repaired == 0 {
		t.Fatal("the daemon repaired no debt entry")
	}
	if ratio := read / repaired; ratio > 3 {
		t.Errorf("the drain read %v rows for %v keys: %.2f per key, want at most 3 (one per region)", read, repaired, ratio)
	}
	runs := 0.0
	for _, v := range seriesOf(t, d.Registry(), "tidemark_repair_runs_started_total", "namespace") {
		runs += v
	}
	if runs != 0 {
		t.Errorf("%v repair runs started: the debt, not a run, must have repaired c", runs)
	}
	t.Logf("debt drain: %v entries repaired, %v rows read (%.2f per key)", repaired, read, read/repaired)
}

// startDebtDaemon runs `repaird serve` over regions a, b, c of keyspace ks
// with no namespace and no hints: only the repair debt worker works.
func startDebtDaemon(t *testing.T, ks string) *servedDaemon {
	t.Helper()
	return serveDaemon(t, fmt.Sprintf("home: a\nkeyspace: %s\n%srepair:\n  debt_interval: 1s\nhttp:\n  listen: 127.0.0.1:0\n",
		ks, regionsYAML(t, "a", "b", "c")))
}
