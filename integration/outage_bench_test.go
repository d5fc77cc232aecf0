package integration

// BenchmarkOutage: the figures of "keep serving through any outage"
// (docs/benchmarks.md), each a ratio of two sides measured in one run.
//
//	make bench BENCH=BenchmarkOutage
//
// The sides are interleaved rounds (compareSidesOpts) except where the
// figure is a time to an event (open) or a count (burst).

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

func BenchmarkOutage(b *testing.B) {
	// One remote region refusing connections: its share of each write is
	// a hint on real Kafka; the healthy side discards nothing, it has no
	// hints to make.
	b.Run("put_one_cut_vs_healthy", func(b *testing.B) {
		ks := newKeyspace(b, "a", "b", "c")
		healthy := openBenchStore(b, ks, []string{"a", "b", "c"}, &discardHints{}, "")
		prod := hintsProducer(b, newTopicPrefix(b), nil)
		sink := &countingSink{next: prod}
		cut := openBenchStore(b, ks, []string{"a", "b", "c"}, sink, "c")
		compareSides(b,
			benchSide{name: "cut", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return cut.Put(ctx, pk, ck, benchValue)
			}},
			benchSide{name: "healthy", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return healthy.Put(ctx, pk, ck, benchValue)
			}})
		if sink.n.Load() == 0 {
			b.Fatal("the cut region's writes were not hinted")
		}
		b.Logf("hints for the cut region: %d", sink.n.Load())
	})

	// The same with the Kafka broker paused (SIGSTOP) for each of the cut
	// side's rounds: the hints cannot be stored, the writes must not wait
	// for them. The broker resumes after the round, and the producer gets
	// a few seconds to drain before the healthy side runs.
	b.Run("put_one_cut_kafka_paused_vs_healthy", func(b *testing.B) {
		l := localEnv(b)
		ks := newKeyspace(b, "a", "b", "c")
		healthy := openBenchStore(b, ks, []string{"a", "b", "c"}, &discardHints{}, "")
		prod := hintsProducer(b, newTopicPrefix(b), nil)
		sink := &countingSink{next: prod}
		cutStore, cut := openBench(b, ks, []string{"a", "b", "c"}, sink, "c", nil)
		if err := prod.EnsureTopic(context.Background(), "c"); err != nil {
			b.Fatal(err)
		}
		paused := false
		resume := func() {
			if paused {
				paused = false
				if err := l.Broker().Resume(); err != nil {
					b.Errorf("resume kafka: %v", err)
				}
				time.Sleep(3 * time.Second)
			}
		}
		b.Cleanup(resume)
		o := defaultCompare()
		o.rounds, o.round, o.slowestSecond = envInt("TIDEMARK_BENCH_ROUNDS", 4), envDur("TIDEMARK_BENCH_ROUND", 5*time.Second), true
		compareSidesOpts(b, o,
			benchSide{name: "cut_kafka_paused", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return cut.Put(ctx, pk, ck, benchValue)
			}, before: func() {
				if err := l.Broker().Pause(); err != nil {
					b.Fatal(err)
				}
				paused = true
			}, after: resume},
			benchSide{name: "healthy", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return healthy.Put(ctx, pk, ck, benchValue)
			}})
		m := cutStore.Metrics()
		b.Logf("the cut region's writes: hinted %d, left to repair %.0f, uncertain %.0f",
			sink.n.Load(), gauge(b, m, "tidemark_store_hints_failed_total", "region", "c"),
			gauge(b, m, "tidemark_store_hints_uncertain_total", "region", "c"))
	})

	// Time from Open to the first acknowledged LocalQuorum Put, with
	// region c silent (a proxy that accepts connections and never answers:
	// the worst case, nothing refuses) vs all reachable; medians of
	// alternating rounds.
	b.Run("open_one_unreachable_vs_reachable", func(b *testing.B) {
		ks := newKeyspace(b, "a", "b", "c")
		createTable(b, ks, storeNS, "a", "b", "c")
		pc := frontRegion(b, "c")
		b.Cleanup(func() { _ = pc.Heal() })
		firstPut := func(silent bool) time.Duration {
			b.Helper()
			if silent {
				if err := pc.Blackhole(); err != nil {
					b.Fatal(err)
				}
			} else if err := pc.Heal(); err != nil {
				b.Fatal(err)
			}
			cfg := store.Config{Home: "a", Keyspace: ks, HintSink: &discardHints{}, ConnectTimeout: 30 * time.Second,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			for _, n := range []string{"a", "b", "c"} {
				r := region(b, n)
				rc := store.RegionConfig{Name: n, ContactPoints: r.Hosts, LocalDC: r.DC}
				if n == "c" {
					rc.ContactPoints, rc.AddressMap = pc.ContactPoints(), pc.AddressMap()
				}
				cfg.Regions = append(cfg.Regions, rc)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			st, err := store.Open(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer ccancel()
				_ = st.CloseContext(cctx)
			}()
			ns, err := st.Namespace(storeNS)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if err := ns.Put(ctx, []byte("open"), []byte("first"), benchValue); err == nil {
					return time.Since(start)
				} else if ctx.Err() != nil {
					b.Fatalf("no LocalQuorum Put within a minute of Open (silent=%v): %v", silent, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		rounds := envInt("TIDEMARK_BENCH_ROUNDS", 6)
		var silent, reachable []time.Duration
		firstPut(false) // warm-up: the driver's first sessions, the JIT of the servers
		for r := range rounds {
			if r%2 == 0 {
				silent = append(silent, firstPut(true))
				reachable = append(reachable, firstPut(false))
			} else {
				reachable = append(reachable, firstPut(false))
				silent = append(silent, firstPut(true))
			}
		}
		ms, mr := medianDur(silent), medianDur(reachable)
		b.ReportMetric(float64(ms.Microseconds())/1000, "unreachable-ms")
		b.ReportMetric(float64(mr.Microseconds())/1000, "reachable-ms")
		b.ReportMetric(float64(ms)/float64(mr), "time-ratio")
		b.Logf("open to first LocalQuorum Put, median of %d: c silent %v, all reachable %v (%.2fx); rounds silent %v, reachable %v",
			rounds, ms.Round(time.Millisecond), mr.Round(time.Millisecond), float64(ms)/float64(mr), silent, reachable)
	})

	// All regions healthy, LocalQuorum Puts from 64 goroutines (the home
	// region's full rate on this machine): how many remote writes became
	// hints (the queue full, or a healthy region's write failing). The
	// goal is none.
	b.Run("burst_all_healthy", func(b *testing.B) {
		ks := newKeyspace(b, "a", "b", "c")
		sink := &countingSink{next: &discardHints{}}
		st, ns := openBench(b, ks, []string{"a", "b", "c"}, sink, "", nil)
		var seq atomic.Int64
		st2 := &sideStats{}
		d := envDur("TIDEMARK_BENCH_ROUND", 10*time.Second)
		conc := envInt("TIDEMARK_BENCH_CONC", 64)
		runRound(st2, benchSide{name: "burst", op: func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i)
			return ns.Put(ctx, pk, ck, benchValue)
		}}, conc, d, &seq, true)
		// The background writes finish (or become hints) at Close.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.CloseContext(cctx); err != nil {
			b.Fatal(err)
		}
		// Every remote write that did not reach its region is a hint
		// (hinted_writes_total, a series per region from Open) or counted
		// as not hinted (hints_failed_total, whose series exist only once
		// counted); the sink never refuses, so the sink's count is both.
		hinted := gauge(b, st.Metrics(), "tidemark_store_hinted_writes_total")
		b.ReportMetric(st2.medianOps(), "ops/s")
		b.ReportMetric(float64(st2.ops), "writes")
		b.ReportMetric(float64(sink.n.Load()), "hints")
		b.ReportMetric(float64(st2.p99().Microseconds())/1000, "p99-ms")
		b.Logf("burst: %d LocalQuorum Puts in %v at concurrency %d (%.0f/s, p99 %v): %d remote writes became hints (hinted_writes_total %.0f); region errors by region/kind: %v",
			st2.ops, d, conc, st2.medianOps(), st2.p99().Round(10*time.Microsecond), sink.n.Load(), hinted, seriesOf(b, st.Metrics(), "tidemark_store_region_errors_total", "region", "kind"))
	})

	// The same single-region LocalQuorum Put workload over TLS with
	// password authentication (region s) vs plain (region a); both
	// keyspaces replicate once, so that each write is one replica's.
	b.Run("put_tls_auth_vs_plain", func(b *testing.B) {
		sec := secureEnv(b)
		ks := uniqueName(b, "ks")
		ra := region(b, "a")
		admin := adminSession(b, ra)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, q := range []string{schema.CreateKeyspace(ks, ra.DC, 1), schema.CreateTable(ks, storeNS, schema.DefaultRetention)} {
			if err := admin.Query(q).ExecContext(ctx); err != nil {
				b.Fatalf("region a: %s: %v", q, err)
			}
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = admin.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx)
		})
		secureKeyspace(b, sec, ks, storeNS)
		plain := openBenchStore(b, ks, []string{"a"}, nil, "")
		secSt, err := store.Open(ctx, store.Config{Home: sec.Region.Name, Keyspace: ks,
			Regions: []store.RegionConfig{{Name: sec.Region.Name, ContactPoints: sec.Region.Hosts, LocalDC: sec.Region.DC,
				Username: sec.Username, Password: sec.Password, TLS: secureTLS(b, sec, "")}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = secSt.Close() })
		secure, err := secSt.Namespace(storeNS)
		if err != nil {
			b.Fatal(err)
		}
		compareSides(b,
			benchSide{name: "tls_auth", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return secure.Put(ctx, pk, ck, benchValue)
			}},
			benchSide{name: "plain", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return plain.Put(ctx, pk, ck, benchValue)
			}})
	})
}

// seriesOf is every series of the metric name in c, keyed by the values
// of the given labels joined with "/".
func seriesOf(t testing.TB, c prometheus.Collector, name string, labels ...string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key []string
			for _, l := range labels {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == l {
						key = append(key, lp.GetValue())
					}
				}
			}
			out[strings.Join(key, "/")] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

// medianDur is the median of ds (which it sorts).
func medianDur(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
