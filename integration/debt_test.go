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

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

// Not parallel: it pauses the shared broker.
func TestDebtDrainedAfterKafkaOutage(t *testing.T) {
	r := debtOutage(t, 10*time.Second, 0, false)
	t.Logf("%d writes in %v; c missed: hinted %v, debt %v", r.writes, r.outage, r.hinted, r.debt)
	t.Logf("c converged %v after c and Kafka came back (goal: within 30 s)", r.converged.Round(100*time.Millisecond))
	if r.repaired == 0 {
		t.Fatal("the daemon repaired no debt entry")
	}
	if ratio := r.read / r.repaired; ratio > 3 {
		t.Errorf("the drain read %v rows for %v keys: %.2f per key, want at most 3 (one per region)", r.read, r.repaired, ratio)
	}
	if r.runs != 0 {
		t.Errorf("%v repair runs started: the debt, not a run, must have repaired c", r.runs)
	}
	t.Logf("debt drain: %v entries repaired, %v rows read (%.2f per key)", r.repaired, r.read, r.read/r.repaired)
}

// debtOutageResult is what debtOutage measured.
type debtOutageResult struct {
	outage    time.Duration
	writes    int64   // acknowledged LocalQuorum writes during the outage
	hinted    float64 // c's share of them hinted (none reach Kafka: it is paused)
	debt      float64 // debt entries recorded for c
	converged time.Duration
	repaired  float64 // debt entries the daemon repaired
	read      float64 // rows the drain read
	runs      float64 // repair runs the daemon started (0: the debt alone repaired c)
	overflow  float64 // debt entries not recorded (allowOverflow): only a full run covers them
}

// debtOutage cuts region c and pauses the broker for outage while 8
// goroutines write (puts and deletes, LocalQuorum, home a; perSecond
// writes a second in all, 0 for as fast as they go), checks that every
// missed write was recorded as debt without overflow, then heals both,
// starts a debt-only daemon and measures how long until c holds every row
// a holds, and until the debt table is empty. An overflowed entry fails
// unless allowOverflow (the daemon repairs no namespace, so it starts no
// full run for one: c still converges when the overflowed writes' keys were
// missed again later and recorded, as with this workload's 1 600 keys).
func debtOutage(t testing.TB, outage time.Duration, perSecond int, allowOverflow bool) debtOutageResult {
	t.Helper()
	localEnv(t)
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, hintsNS, "a", "b", "c")
	prod := hintsProducer(t, newTopicPrefix(t), nil)
	pc := frontRegion(t, "c")
	t.Cleanup(func() { _ = pc.Heal() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+5*outage)
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

	res := debtOutageResult{outage: outage}
	limit := rate.NewLimiter(rate.Inf, 1)
	if perSecond > 0 {
		limit = rate.NewLimiter(rate.Limit(perSecond), 8)
	}
	var writes atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for g := range 8 {
		wg.Go(func() {
			for i := 0; time.Since(start) < outage; i++ {
				if err := limit.Wait(ctx); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
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
	res.writes = writes.Load()
	m := st.Metrics()
	// Every debt entry written (the home region is healthy) before c and
	// Kafka come back. The writes' hints keep failing after the writers
	// stop (one HintTimeout each, against the paused broker, at most
	// HintConcurrency at a time), and each failure becomes debt a batch
	// later: wait until the store is quiet — no background write, hint or
	// debt entry pending, the missed count unchanged since the last look —
	// and then every missed write must be recorded. Comparing the counters
	// while hints still fail cannot tell a lost entry from one in flight.
	lastMissed := -1.0
	eventually(t, 3*time.Minute+3*outage, "the debt recorded", func() error {
		missed := gauge(t, m, "tidemark_store_hints_failed_total", "region", "c") + gauge(t, m, "tidemark_store_hints_uncertain_total", "region", "c")
		recorded := gauge(t, m, "tidemark_store_debt_recorded_total", "region", "c")
		hintsPending, debtPending := gauge(t, m, "tidemark_store_hints_pending"), gauge(t, m, "tidemark_store_debt_pending")
		depth := gauge(t, m, "tidemark_store_background_queue_depth")
		moved := missed != lastMissed
		lastMissed = missed
		if hintsPending > 0 || debtPending > 0 || depth > 0 || moved {
			return fmt.Errorf("not quiet yet: %v hints, %v debt entries, %v background writes pending; %v of %v missed writes recorded",
				hintsPending, debtPending, depth, recorded, missed)
		}
		if overflow := gauge(t, m, "tidemark_store_debt_overflow_total", "region", "c"); recorded+overflow != missed {
			return fmt.Errorf("quiet, but %v of %v missed writes recorded as debt and %v overflowed: %v lost", recorded, missed, overflow, missed-recorded-overflow)
		}
		return nil
	})
	res.debt = gauge(t, m, "tidemark_store_debt_recorded_total", "region", "c")
	res.hinted = gauge(t, m, "tidemark_store_hinted_writes_total", "region", "c")
	res.overflow = gauge(t, m, "tidemark_store_debt_overflow_total", "region", "c")
	if res.overflow != 0 {
		by := seriesOf(t, m, "tidemark_store_debt_overflow_total", "reason")
		if !allowOverflow {
			t.Fatalf("%v debt entries overflowed, by reason %v", res.overflow, by)
		}
		t.Logf("%v debt entries overflowed, by reason %v", res.overflow, by)
	}
	if res.debt == 0 {
		t.Fatal("no write was left to repair: the test did not exercise debt")
	}

	if err := pc.Heal(); err != nil {
		t.Fatal(err)
	}
	resume()
	healed := time.Now()
	d := startDebtDaemon(t, ks)

	sa, sc := directSession(t, "a", ks), directSession(t, "c", ks)
	eventually(t, 2*time.Minute, "c holds every row a holds", func() error {
		if diff := diffTables(readTable(t, sa, ks), readTable(t, sc, ks)); diff != "" {
			return fmt.Errorf("c differs from a: %.400s", diff)
		}
		res.converged = time.Since(healed)
		return nil
	})
	eventually(t, time.Minute, "the debt drained", func() error {
		var n int
		if err := sa.Query(fmt.Sprintf(`SELECT count(*) FROM %s.%s`, ks, schema.DebtTable)).ScanContext(ctx, &n); err != nil {
			return err
		}
		// An overflow leaves its namespace's overflow entry for a full
		// run, which this daemon does not make.
		want := 0
		if res.overflow > 0 {
			want = 1
		}
		if n != want {
			return fmt.Errorf("%d debt entries left, want %d", n, want)
		}
		return nil
	})
	// The daemon adds a pass's counts once the pass is over, after its
	// deletes emptied the table: read them once they have stopped moving
	// for longer than a pass (debt_interval 1s).
	counts := func() (float64, float64) {
		return gauge(t, d.Registry(), "tidemark_repaird_debt_repaired_total", "region", "c"),
			gauge(t, d.Registry(), "tidemark_repaird_debt_rows_read_total")
	}
	res.repaired, res.read = counts()
	eventually(t, 30*time.Second, "the drain's counts settled", func() error {
		time.Sleep(1500 * time.Millisecond)
		repaired, read := counts()
		if repaired != res.repaired || read != res.read || repaired == 0 {
			res.repaired, res.read = repaired, read
			return fmt.Errorf("%v keys repaired, %v rows read, still moving", repaired, read)
		}
		return nil
	})
	for _, v := range seriesOf(t, d.Registry(), "tidemark_repair_runs_started_total", "namespace") {
		res.runs += v
	}
	return res
}

// startDebtDaemon runs `repaird serve` over regions a, b, c of keyspace ks
// with no namespace and no hints: only the repair debt worker works.
func startDebtDaemon(t testing.TB, ks string) *servedDaemon {
	t.Helper()
	return serveDaemon(t, fmt.Sprintf("home: a\nkeyspace: %s\n%srepair:\n  debt_interval: 1s\nhttp:\n  listen: 127.0.0.1:0\n",
		ks, regionsYAML(t, "a", "b", "c")))
}
