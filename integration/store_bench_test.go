package integration

// Benchmarks of package store against raw gocql doing the same statements,
// at the same concurrency, in one run; ratios are reported by the "ratio"
// sub-benchmarks:
//
//	go test ./integration/ -run '^$' -bench BenchmarkStore -benchtime 3s
//
// Compare figures within one run only (the machine is shared).

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

// benchParallelism multiplies GOMAXPROCS for b.RunParallel.
const benchParallelism = 4

// latencies collects per-operation latencies from parallel goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(ds []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, ds...)
	l.mu.Unlock()
}

func (l *latencies) p99() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// benchResult is what a sub-benchmark measured, for the ratios.
type benchResult struct {
	opsPerSec float64
	p99       time.Duration
}

// runOps runs op in parallel b.N times and reports ops/s and p99.
func runOps(b *testing.B, op func(ctx context.Context, i int64) error) benchResult {
	b.Helper()
	var lat latencies
	var seq atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := seq.Add(1)
			t0 := time.Now()
			if err := op(ctx, i); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		lat.add(local)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	r := benchResult{opsPerSec: float64(b.N) / elapsed.Seconds(), p99: lat.p99()}
	b.ReportMetric(r.opsPerSec, "ops/s")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
	return r
}

func reportRatio(b *testing.B, name string, num, den benchResult) {
	b.Run("ratio_"+name, func(b *testing.B) {
		if den.opsPerSec == 0 || den.p99 == 0 {
			b.Skip("baseline did not run")
		}
		b.ReportMetric(num.opsPerSec/den.opsPerSec, "ops/s-ratio")
		b.ReportMetric(float64(num.p99)/float64(den.p99), "p99-ratio")
	})
}

// benchKeys spreads operations over partitions.
func benchKeys(i int64) ([]byte, []byte) {
	return fmt.Appendf(nil, "p%d", i%1000), fmt.Appendf(nil, "c%d", i)
}

var benchValue = make([]byte, 100)

// rawInsert writes one row exactly as the store's executor does.
func rawInsert(ctx context.Context, s *gocql.Session, ks string, pk, ck []byte, ts int64) error {
	return s.Query(schema.Insert(ks, storeNS), pk, ck, benchValue, false, schema.Digest(false, benchValue), ts, 0).
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

// BenchmarkStoreOneRegion: Put and Get at LocalQuorum through a one-region
// Store vs the same statements through raw gocql.
func BenchmarkStoreOneRegion(b *testing.B) {
	ks := newKeyspace(b, "a")
	r := region(b, "a")
	st, err := store.Open(context.Background(), store.Config{
		Regions:  []store.RegionConfig{{Name: "a", ContactPoints: r.Hosts, LocalDC: r.DC}},
		Home:     "a",
		Keyspace: ks,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ns, err := st.CreateNamespace(context.Background(), storeNS)
	if err != nil {
		b.Fatal(err)
	}
	raw := rawSession(b, "a", nil)
	var storePut, rawPut, storeGet, rawGet benchResult
	b.Run("store_put", func(b *testing.B) {
		storePut = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i)
			return ns.Put(ctx, pk, ck, benchValue)
		})
	})
	b.Run("raw_put", func(b *testing.B) {
		rawPut = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i)
			return rawInsert(ctx, raw, ks, pk, ck, time.Now().UnixMicro())
		})
	})
	reportRatio(b, "put", storePut, rawPut)
	// Reads of rows the put benchmarks wrote (i from 1 up).
	b.Run("store_get", func(b *testing.B) {
		storeGet = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i%500 + 1)
			_, err := ns.Get(ctx, pk, ck)
			return err
		})
	})
	b.Run("raw_get", func(b *testing.B) {
		stmt := schema.SelectRow(ks, storeNS)
		rawGet = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i%500 + 1)
			var v []byte
			var del bool
			var wt int64
			var ttl int
			return raw.Query(stmt, pk, ck).Consistency(gocql.LocalQuorum).Idempotent(true).ScanContext(ctx, &v, &del, &wt, &ttl)
		})
	})
	reportRatio(b, "get", storeGet, rawGet)
}

// discardHints counts hints and drops them.
type discardHints struct{ n atomic.Int64 }

func (d *discardHints) Hint(context.Context, hints.Hint) error { d.n.Add(1); return nil }

// BenchmarkStoreThreeRegions: LocalQuorum Put through a three-region Store
// (home written synchronously, two remote regions in the background) vs raw
// gocql doing the home write synchronously and the two remote writes
// concurrently in the background (bounded like the Store's workers); then
// the Store with one remote region cut (its breaker open, writes hinted) vs
// the healthy Store. All regions go through fault proxies in both.
func BenchmarkStoreThreeRegions(b *testing.B) {
	ks := newKeyspace(b, "a", "b", "c")
	names := []string{"a", "b", "c"}
	open := func(b *testing.B, sink store.HintSink) (*store.Store, *store.Namespace, map[string]interface{ Refuse() error }) {
		cfg := store.Config{Home: "a", Keyspace: ks, HintSink: sink, Timeout: 2 * time.Second}
		cuts := map[string]interface{ Refuse() error }{}
		for _, n := range names {
			p := frontRegion(b, n)
			cuts[n] = p
			r := proxiedRegion(b, n, p)
			cfg.Regions = append(cfg.Regions, store.RegionConfig{Name: n, ContactPoints: r.ContactPoints, LocalDC: r.LocalDC, AddressMap: r.AddressMap})
		}
		st, err := store.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		ns, err := st.CreateNamespace(context.Background(), storeNS)
		if err != nil {
			b.Fatal(err)
		}
		return st, ns, cuts
	}
	var storeRes, rawRes, cutRes benchResult
	b.Run("store_put_healthy", func(b *testing.B) {
		st, ns, _ := open(b, &discardHints{})
		storeRes = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i)
			return ns.Put(ctx, pk, ck, benchValue)
		})
		b.StopTimer()
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("raw_put", func(b *testing.B) {
		var sess []*gocql.Session
		for _, n := range names {
			sess = append(sess, rawSession(b, n, frontRegion(b, n)))
		}
		sem := make(chan struct{}, store.DefaultRemoteConcurrency)
		var wg sync.WaitGroup
		rawRes = runOps(b, func(ctx context.Context, i int64) error {
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
		})
		b.StopTimer()
		wg.Wait()
	})
	reportRatio(b, "store_vs_raw", storeRes, rawRes)
	b.Run("store_put_one_remote_cut", func(b *testing.B) {
		sink := &discardHints{}
		st, ns, cuts := open(b, sink)
		if err := cuts["c"].Refuse(); err != nil {
			b.Fatal(err)
		}
		// Trip c's breaker before measuring.
		for i := range 10 {
			_ = ns.Put(context.Background(), []byte("warm"), fmt.Appendf(nil, "%d", i), benchValue, store.WithConsistency(quorum.EachQuorum))
		}
		b.ResetTimer()
		cutRes = runOps(b, func(ctx context.Context, i int64) error {
			pk, ck := benchKeys(i)
			return ns.Put(ctx, pk, ck, benchValue)
		})
		b.StopTimer()
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(sink.n.Load())/float64(b.N), "hints/op")
	})
	reportRatio(b, "cut_vs_healthy", cutRes, storeRes)
}
