package integration

// BenchmarkOverhead compares the Store with raw gocql doing the same work,
// interleaved: after a warm-up, fixed-duration rounds alternate A B B A …,
// so that Cassandra's warm-up, memtable flushes and compactions fall on both
// sides alike. Each round runs the side's operation from `conc` goroutines;
// the reported figures are the median ops/s of the rounds, the p99 of every
// latency of the side pooled, and heap allocations per operation.
//
//	make bench            (pins the servers to core 0 and this process to core 1)
//	go test ./integration -run '^$' -bench BenchmarkOverhead -benchtime 1x
//
// TIDEMARK_BENCH_ROUNDS and TIDEMARK_BENCH_ROUND (a duration) tune it.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

type benchSide struct {
	name string
	op   func(ctx context.Context, i int64) error
	// before and after, when set, run around each of the side's rounds
	// (the warm-up included), outside the timed part: a fault to set up
	// and lift, a backlog to drain before the other side runs.
	before, after func()
}

type sideStats struct {
	rounds    []float64 // ops/s per round
	seconds   []int64   // acknowledged operations in each whole second of the rounds
	lat       []time.Duration
	ops       int64
	mallocs   uint64
	errs      int64
	firstErr  error
	errorOnce sync.Once
}

func (s *sideStats) medianOps() float64 {
	r := slices.Clone(s.rounds)
	slices.Sort(r)
	if len(r) == 0 {
		return 0
	}
	return r[len(r)/2]
}

func (s *sideStats) p99() time.Duration {
	l := slices.Clone(s.lat)
	slices.Sort(l)
	if len(l) == 0 {
		return 0
	}
	return l[len(l)*99/100]
}

// slowestSecond is the fewest operations acknowledged in one whole second
// of the side's rounds (-1 when no round lasted a second).
func (s *sideStats) slowestSecond() int64 {
	if len(s.seconds) == 0 {
		return -1
	}
	return slices.Min(s.seconds)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// runRound runs op from conc goroutines for d and adds to st.
func runRound(st *sideStats, side benchSide, conc int, d time.Duration, seq *atomic.Int64, record bool) {
	var wg sync.WaitGroup
	var n atomic.Int64
	perSecond := make([]atomic.Int64, int(d/time.Second)+1)
	lats := make([][]time.Duration, conc)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	deadline := time.Now().Add(d)
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			ctx := context.Background()
			for time.Now().Before(deadline) {
				i := seq.Add(1)
				t0 := time.Now()
				err := side.op(ctx, i)
				local = append(local, time.Since(t0))
				if err != nil {
					atomic.AddInt64(&st.errs, 1)
					st.errorOnce.Do(func() { st.firstErr = err })
					continue
				}
				n.Add(1)
				if sec := int(time.Since(start) / time.Second); sec < len(perSecond) {
					perSecond[sec].Add(1)
				}
			}
			lats[g] = local
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if !record {
		return
	}
	st.rounds = append(st.rounds, float64(n.Load())/elapsed.Seconds())
	for sec := range int(d / time.Second) { // whole seconds only
		st.seconds = append(st.seconds, perSecond[sec].Load())
	}
	for _, l := range lats {
		st.lat = append(st.lat, l...)
	}
	st.ops += n.Load()
	st.mallocs += ms1.Mallocs - ms0.Mallocs
}

// compareOpts shapes an interleaved comparison.
type compareOpts struct {
	rounds int           // recorded rounds of each side (after one warm-up round each)
	round  time.Duration // one round
	conc   int           // goroutines running the side's operation
	// slowestSecond reports each side's fewest acknowledged operations in
	// one whole second of its rounds.
	slowestSecond bool
}

// defaultCompare is the comparison of BenchmarkOverhead: six 3-second
// rounds a side at concurrency 16, unless TIDEMARK_BENCH_ROUNDS,
// TIDEMARK_BENCH_ROUND and TIDEMARK_BENCH_CONC say otherwise.
func defaultCompare() compareOpts {
	return compareOpts{
		rounds: envInt("TIDEMARK_BENCH_ROUNDS", 6),
		round:  envDur("TIDEMARK_BENCH_ROUND", 3*time.Second),
		conc:   envInt("TIDEMARK_BENCH_CONC", 16),
	}
}

// compareSides interleaves a (the Store) and base (raw gocql) and reports
// both sides and their ratios.
func compareSides(b *testing.B, a, base benchSide) { compareSidesOpts(b, defaultCompare(), a, base) }

// compareSidesOpts is compareSides shaped by o.
func compareSidesOpts(b *testing.B, o compareOpts, a, base benchSide) {
	rounds, d, conc := o.rounds, o.round, o.conc
	var seq atomic.Int64
	stats := map[string]*sideStats{a.name: {}, base.name: {}}
	round := func(s benchSide, record bool) {
		if s.before != nil {
			s.before()
		}
		runRound(stats[s.name], s, conc, d, &seq, record)
		if s.after != nil {
			s.after()
		}
	}
	// Warm-up: both sides, not recorded.
	round(a, false)
	round(base, false)
	for r := 0; r < rounds; r++ {
		order := []benchSide{a, base}
		if r%2 == 1 {
			order = []benchSide{base, a}
		}
		for _, s := range order {
			round(s, true)
		}
	}
	for _, s := range []benchSide{a, base} {
		st := stats[s.name]
		if st.errs > 0 {
			b.Fatalf("%s: %d errors, first: %v", s.name, st.errs, st.firstErr)
		}
		b.ReportMetric(st.medianOps(), s.name+"-ops/s")
		b.ReportMetric(float64(st.p99().Microseconds())/1000, s.name+"-p99-ms")
		b.ReportMetric(float64(st.mallocs)/float64(max(st.ops, 1)), s.name+"-allocs/op")
		if o.slowestSecond {
			b.ReportMetric(float64(st.slowestSecond()), s.name+"-slowest-second-ops")
		}
	}
	sa, sb := stats[a.name], stats[base.name]
	b.ReportMetric(sa.medianOps()/sb.medianOps(), "ops-ratio")
	b.ReportMetric(float64(sa.p99())/float64(sb.p99()), "p99-ratio")
	b.Logf("%s vs %s: %d rounds of %s at concurrency %d: ops/s %.0f vs %.0f (ratio %.3f), p99 %s vs %s (ratio %.3f), allocs/op %.0f vs %.0f",
		a.name, base.name, rounds, d, conc, sa.medianOps(), sb.medianOps(), sa.medianOps()/sb.medianOps(),
		sa.p99().Round(10*time.Microsecond), sb.p99().Round(10*time.Microsecond), float64(sa.p99())/float64(sb.p99()),
		float64(sa.mallocs)/float64(max(sa.ops, 1)), float64(sb.mallocs)/float64(max(sb.ops, 1)))
	if o.slowestSecond {
		b.Logf("fewest acknowledged operations in one second: %s %d, %s %d (per second, %s: %v)",
			a.name, sa.slowestSecond(), base.name, sb.slowestSecond(), a.name, sa.seconds)
	}
}

// openBenchStore opens a Store over the named regions, directly (no proxies)
// unless cut names a region to put behind a refusing proxy.
func openBenchStore(b *testing.B, ks string, names []string, sink store.HintSink, cut string) *store.Namespace {
	b.Helper()
	_, ns := openBench(b, ks, names, sink, cut, nil)
	return ns
}

// openBench is openBenchStore that also returns the Store, and lets mut
// adjust the configuration before Open (home is names[0]). The cut
// region's proxy refuses once the namespace exists, so the Store starts
// healthy and then loses the region, as in an outage.
func openBench(b *testing.B, ks string, names []string, sink store.HintSink, cut string, mut func(*store.Config)) (*store.Store, *store.Namespace) {
	b.Helper()
	cfg := store.Config{Home: names[0], Keyspace: ks, HintSink: sink}
	var cutProxy *fault.Proxy
	for _, n := range names {
		r := region(b, n)
		rc := store.RegionConfig{Name: n, ContactPoints: r.Hosts, LocalDC: r.DC}
		if n == cut {
			cutProxy = frontRegion(b, n)
			rc.ContactPoints, rc.AddressMap = cutProxy.ContactPoints(), cutProxy.AddressMap()
			b.Cleanup(func() { _ = cutProxy.Heal() })
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	if mut != nil {
		mut(&cfg)
	}
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	ns, err := st.CreateNamespace(context.Background(), storeNS)
	if err != nil {
		b.Fatal(err)
	}
	if cutProxy != nil {
		if err := cutProxy.Refuse(); err != nil {
			b.Fatal(err)
		}
	}
	return st, ns
}

func BenchmarkOverhead(b *testing.B) {
	b.Run("put_1_region", func(b *testing.B) {
		ks := newKeyspace(b, "a")
		ns := openBenchStore(b, ks, []string{"a"}, nil, "")
		raw := rawSession(b, "a", nil)
		compareSides(b,
			benchSide{name: "store", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return ns.Put(ctx, pk, ck, benchValue)
			}},
			benchSide{name: "raw", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return rawInsert(ctx, raw, ks, pk, ck, time.Now().UnixMicro())
			}})
	})
	b.Run("get_1_region", func(b *testing.B) {
		ks := newKeyspace(b, "a")
		ns := openBenchStore(b, ks, []string{"a"}, nil, "")
		raw := rawSession(b, "a", nil)
		for i := int64(1); i <= 1000; i++ {
			pk, ck := benchKeys(i)
			if err := ns.Put(context.Background(), pk, ck, benchValue); err != nil {
				b.Fatal(err)
			}
		}
		stmt := schema.SelectRow(ks, storeNS)
		compareSides(b,
			benchSide{name: "store", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i%1000 + 1)
				_, err := ns.Get(ctx, pk, ck)
				return err
			}},
			benchSide{name: "raw", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i%1000 + 1)
				var v []byte
				var del bool
				var wt int64
				var ttl int
				return raw.Query(stmt, pk, ck).Consistency(gocql.LocalQuorum).Idempotent(true).ScanContext(ctx, &v, &del, &wt, &ttl)
			}})
	})
	b.Run("put_3_regions", func(b *testing.B) {
		ks := newKeyspace(b, "a", "b", "c")
		ns := openBenchStore(b, ks, []string{"a", "b", "c"}, &discardHints{}, "")
		var sess []*gocql.Session
		for _, n := range []string{"a", "b", "c"} {
			sess = append(sess, rawSession(b, n, nil))
		}
		// The baseline does the same work: the home write synchronously and
		// the two remote writes concurrently in the background, bounded.
		sem := make(chan struct{}, store.DefaultRemoteConcurrency)
		var wg sync.WaitGroup
		b.Cleanup(wg.Wait)
		compareSides(b,
			benchSide{name: "store", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				return ns.Put(ctx, pk, ck, benchValue)
			}},
			benchSide{name: "raw", op: func(ctx context.Context, i int64) error {
				pk, ck := benchKeys(i)
				ts := time.Now().UnixMicro()
				for _, s := range sess[1:] {
					sem <- struct{}{}
					wg.Go(func() {
						defer func() { <-sem }()
						_ = rawInsert(context.Background(), s, ks, pk, ck, ts)
					})
				}
				return rawInsert(ctx, sess[0], ks, pk, ck, ts)
			}})
	})
	// One remote region cut vs all healthy: BenchmarkOutage/put_one_cut_vs_healthy.
}

// benchKeys spreads operations over partitions.
func benchKeys(i int64) ([]byte, []byte) {
	return fmt.Appendf(nil, "p%d", i%1000), fmt.Appendf(nil, "c%d", i)
}

var benchValue = make([]byte, 100)

// rawInsert writes one row exactly as the store's executor does.
func rawInsert(ctx context.Context, s *gocql.Session, ks string, pk, ck []byte, ts int64) error {
	return s.Query(schema.Insert(ks, storeNS), schema.InsertValues(pk, ck, schema.RowCells(false, benchValue, 0), ts, 0)...).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
}

func rawSession(b *testing.B, name string, p interface {
	ContactPoints() []string
	AddressMap() map[string]string
}) *gocql.Session {
	b.Helper()
	r := region(b, name)
	cr := cluster.Region{Name: name, ContactPoints: r.Hosts, LocalDC: r.DC, Timeout: 5 * time.Second}
	if p != nil {
		cr.ContactPoints, cr.AddressMap = p.ContactPoints(), p.AddressMap()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cluster.Connect(ctx, cr, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// discardHints counts hints and drops them.
type discardHints struct{ n atomic.Int64 }

func (d *discardHints) Hint(context.Context, record.Hint) error { d.n.Add(1); return nil }

// countingSink counts hints that reached its next sink.
type countingSink struct {
	next store.HintSink
	n    atomic.Int64
}

func (c *countingSink) Hint(ctx context.Context, h record.Hint) error {
	err := c.next.Hint(ctx, h)
	if err == nil {
		c.n.Add(1)
	}
	return err
}
