package integration

// The convergence watermark end to end: a Store heartbeats through the
// real Kafka producer, `repaird serve` replays every region's hints,
// records the marks and publishes each region's watermark. With every
// region healthy the watermarks follow the writes; with region c cut (for
// the store and the daemon alike) c's watermark stops at the cut while a's
// and b's go on; once c heals and its hints are replayed it passes the
// heal time. At every sample, the watermark's promise is checked against
// region c itself, read directly: c holds every acknowledged write with a
// version below its watermark.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

// ackedWrite is one acknowledged write of the test's writers.
type ackedWrite struct {
	key     string // "pk/ck", as readTable keys rows
	version int64
}

// writeLog is what the writers got acknowledged.
type writeLog struct {
	mu    sync.Mutex
	acked []ackedWrite
}

func (l *writeLog) add(key string, v int64) {
	l.mu.Lock()
	l.acked = append(l.acked, ackedWrite{key, v})
	l.mu.Unlock()
}

func (l *writeLog) snapshot() []ackedWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked)
}

// watermarkViolations returns the acknowledged writes below w (µs) that
// rows (a region's table, read after w was) does not hold: the key's
// version there is older, or the key is missing.
func watermarkViolations(acked []ackedWrite, w int64, rows map[string]rowState) []string {
	need := map[string]int64{}
	for _, a := range acked {
		if a.version < w && a.version > need[a.key] {
			need[a.key] = a.version
		}
	}
	var out []string
	for k, v := range need {
		if r, ok := rows[k]; !ok || r.writetime < v {
			out = append(out, fmt.Sprintf("%s: needs version %d (below the watermark %d), region has %v (present %v)", k, v, w, r.writetime, ok))
		}
	}
	sort.Strings(out)
	return out
}

// watermarkEnv is a Store over a, b, c (c behind a fault proxy) hinting to
// the real Kafka producer, and `repaird serve` replaying every region and
// computing the watermarks, c reached through the same proxy.
type watermarkEnv struct {
	st *store.Store
	ns *store.Namespace
	d  *servedDaemon
	pc *fault.Proxy
	ks string
}

// newWatermarkEnv starts it: the store heartbeats every beat, the daemon
// computes every compute with the clock-skew bound skew.
func newWatermarkEnv(t testing.TB, ctx context.Context, beat, compute, skew time.Duration) *watermarkEnv {
	t.Helper()
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, hintsNS, "a", "b", "c")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	pc := frontRegion(t, "c")
	t.Cleanup(func() { _ = pc.Heal() })
	for _, r := range []string{"a", "b", "c"} {
		if err := prod.EnsureTopic(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"c": pc}, prod, func(c *store.Config) {
		c.Watermark.Interval = beat
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.ProducerID() == "" {
		t.Fatal("a store hinting to the Kafka producer takes no part in the watermark")
	}
	ns, err := st.Namespace(hintsNS)
	if err != nil {
		t.Fatal(err)
	}
	group := strings.TrimSuffix(prefix, ".") + "-wm"
	d := serveDaemon(t, fmt.Sprintf("home: a\nkeyspace: %s\n%shints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [a, b, c]\nwatermark:\n  interval: %s\n  clock_skew: %s\nhttp:\n  listen: 127.0.0.1:0\n",
		ks, regionsYAMLVia(t, map[string]*fault.Proxy{"c": pc}, "a", "b", "c"), testEnv(t).KafkaBrokers()[0], prefix, group, compute, skew))
	return &watermarkEnv{st: st, ns: ns, d: d, pc: pc, ks: ks}
}

// watermark is the region's published watermark (zero: none yet).
func (e *watermarkEnv) watermark(ctx context.Context, region string) time.Time {
	w, err := e.st.ConvergedBefore(ctx, region)
	if err != nil {
		return time.Time{}
	}
	return w
}

func TestWatermark(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newWatermarkEnv(t, ctx, 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond)
	ns, d, pc, ks := e.ns, e.d, e.pc, e.ks

	// Writers: LocalQuorum puts and deletes over 400 keys, ~100 a second.
	var log writeLog
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopWriters(); wg.Wait() }()
	for g := range 2 {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				pk, ck := fmt.Sprintf("p%d", i%40), fmt.Sprintf("g%d-%d", g, i%10)
				var v int64
				var err error
				if i%7 == 6 {
					err = ns.Delete(wctx, []byte(pk), []byte(ck), store.WithVersionReport(&v))
				} else {
					err = ns.Put(wctx, []byte(pk), []byte(ck), fmt.Appendf(nil, "v%d", i), store.WithVersionReport(&v))
				}
				if err == nil {
					log.add(pk+"/"+ck, v)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	sc := directSession(t, "c", ks)
	wm := func(region string) time.Time { return e.watermark(ctx, region) }
	// check samples c's watermark, then reads c directly, and fails on
	// any acknowledged write below the watermark that c lacks.
	checks := 0
	check := func() time.Time {
		t.Helper()
		w := wm("c")
		if w.IsZero() {
			return w
		}
		rows := readTable(t, sc, ks)
		if v := watermarkViolations(log.snapshot(), w.UnixMicro(), rows); len(v) > 0 {
			t.Fatalf("c's watermark %s promises writes c does not hold (%d), first: %s", w.Format(time.RFC3339Nano), len(v), v[0])
		}
		checks++
		return w
	}

	// Healthy: every watermark follows the writes.
	start := time.Now()
	var lags []time.Duration
	for _, r := range []string{"a", "b", "c"} {
		eventually(t, time.Minute, "the watermark of "+r+" passes the start", func() error {
			if w := wm(r); !w.After(start) {
				return fmt.Errorf("watermark %v; daemon: %+v", w, d.Status().Watermarks)
			}
			return nil
		})
	}
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		for _, r := range []string{"a", "b"} {
			if w := wm(r); !w.IsZero() {
				lags = append(lags, time.Since(w))
			}
		}
		if w := check(); !w.IsZero() {
			lags = append(lags, time.Since(w))
		}
	}
	slices.Sort(lags)
	t.Logf("healthy: watermark lag p50 %v, p99 %v, max %v over %d samples (the store heartbeats every 200ms, the daemon computes every 200ms)",
		lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), len(lags))

	// Cut c: for the store and the daemon. c's watermark stops; a's and
	// b's go on.
	if err := pc.Refuse(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	var atCut time.Time
	for end := cut.Add(8 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		w := check()
		if time.Since(cut) > 3*time.Second && atCut.IsZero() {
			atCut = w
		}
	}
	stalled := check()
	if stalled.After(cut.Add(time.Second)) {
		t.Errorf("c's watermark %s went on more than 1s past the cut at %s", stalled.Format(time.RFC3339Nano), cut.Format(time.RFC3339Nano))
	}
	if stalled.After(atCut) {
		t.Errorf("c's watermark moved during the cut: %s 3s after it, %s at its end", atCut.Format(time.RFC3339Nano), stalled.Format(time.RFC3339Nano))
	}
	// a's and b's go on past the cut while c is still cut (how soon is
	// the lag's business, BenchmarkWatermarkLag's: under the full suite's
	// load a computation can take seconds).
	for _, r := range []string{"a", "b"} {
		eventually(t, time.Minute, "the watermark of "+r+" passes c's cut", func() error {
			if w := wm(r); !w.After(cut) {
				return fmt.Errorf("watermark %s, cut at %s; daemon: %+v", w.Format(time.RFC3339Nano), cut.Format(time.RFC3339Nano), d.Status().Watermarks)
			}
			return nil
		})
	}
	passedCut := time.Since(cut)
	if w := check(); w.After(stalled) {
		t.Errorf("c's watermark moved during the cut: %s at 8s, %s at %v", stalled.Format(time.RFC3339Nano), w.Format(time.RFC3339Nano), passedCut.Round(time.Millisecond))
	}
	t.Logf("during the cut: a and b past it %v after it (checked from 8s on); computations took %s",
		passedCut.Round(10*time.Millisecond), histogramSummary(t, d.Registry(), "tidemark_watermark_computation_seconds"))
	if v := d.Status().Watermarks; len(v) != 3 || v[2].Region != "c" || v[2].Producers < 1 {
		t.Errorf("/status watermarks during the cut: %+v", v)
	}

	// Heal: c's hints replay, and its watermark passes the heal time. The
	// writers stop first: their new versions would otherwise overwrite
	// c's keys directly and make the replay look faster than it is.
	stopWriters()
	wg.Wait()
	if err := pc.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	before := log.snapshot()
	sa := directSession(t, "a", ks)
	var replayed, passed time.Duration
	var trail []string // what held c's watermark, sampled, for a slow pass
	eventually(t, 2*time.Minute, "c's watermark passes the heal time", func() error {
		if replayed == 0 && len(watermarkViolations(before, healed.UnixMicro(), readTable(t, sc, ks))) == 0 {
			replayed = time.Since(healed)
		}
		v := d.Status().Watermarks[2]
		trail = append(trail, fmt.Sprintf("%v: limit %q, unsettled in the store %v, breaker %v, marks recorded %v failed %v; oldest mark per partition: %s",
			time.Since(healed).Round(10*time.Millisecond), v.Limit,
			gauge(t, e.st.Metrics(), "tidemark_store_unsettled_writes", "region", "c"), gauge(t, e.st.Metrics(), "tidemark_store_breaker_state", "region", "c"),
			gauge(t, d.Registry(), "tidemark_hints_marks_recorded_total", "region", "c"), gauge(t, d.Registry(), "tidemark_hints_marks_failed_total", "region", "c"),
			markAges(t, sc, ks, healed)))
		if w := check(); !w.After(healed) {
			return fmt.Errorf("watermark %s; daemon: %+v", w.Format(time.RFC3339Nano), d.Status().Watermarks[2])
		}
		passed = time.Since(healed)
		return nil
	})
	if replayed == 0 {
		replayed = passed
	}
	if passed > replayed+2*time.Second {
		t.Logf("the watermark passed the heal time more than 2s after the replay; what held it:\n  %s", strings.Join(trail, "\n  "))
	}
	t.Logf("after the heal: c held every write acknowledged before it %v later; its watermark passed the heal time %v later (goal: within replay + 2s); %d soundness checks, none failed",
		replayed.Round(10*time.Millisecond), passed.Round(10*time.Millisecond), checks)
	// The promise holds at the end too, for every region.
	for name, s := range map[string]*gocql.Session{"a": sa, "c": sc} {
		w := wm(name)
		if v := watermarkViolations(log.snapshot(), w.UnixMicro(), readTable(t, s, ks)); len(v) > 0 {
			t.Errorf("%s at the end: %s", name, v[0])
		}
	}
}

// markAges is, per partition of c's topic, how far c's newest mark is
// before (−) or after the heal, read from c's marks table.
func markAges(t testing.TB, s *gocql.Session, ks string, healed time.Time) string {
	it := s.Query(fmt.Sprintf(`SELECT ck, value FROM %s.%s WHERE pk = ?`, ks, schema.MarksTable), schema.MarksPartition("c")).Iter()
	var ck, value []byte
	var parts []string
	for it.Scan(&ck, &value) {
		_, p, err1 := schema.DecodeMarkKey(ck)
		m, err2 := schema.DecodeMark(value)
		if err1 != nil || err2 != nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("p%d %+.1fs", p, time.UnixMicro(m.Before).Sub(healed).Seconds()))
	}
	if err := it.Close(); err != nil {
		return err.Error()
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
