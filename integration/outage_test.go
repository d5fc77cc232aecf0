package integration

// A service that starts, and keeps serving, through outages on real
// servers: a remote region silent at Open, the home region cut, Kafka
// paused while a region is cut.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

// outageStore opens a Store over a, b, c with a and c behind the given
// proxies (nil: direct), hints to sink.
func outageStore(t testing.TB, ctx context.Context, ks string, proxies map[string]*fault.Proxy, sink store.HintSink, mut func(*store.Config)) (*store.Store, error) {
	t.Helper()
	cfg := store.Config{Home: "a", Keyspace: ks, Timeout: 3 * time.Second, ConnectTimeout: 30 * time.Second, HintSink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, name := range []string{"a", "b", "c"} {
		r := region(t, name)
		rc := store.RegionConfig{Name: name, ContactPoints: r.Hosts, LocalDC: r.DC}
		if p := proxies[name]; p != nil {
			pr := proxiedRegion(t, name, p)
			rc.ContactPoints, rc.AddressMap = pr.ContactPoints, pr.AddressMap
		}
		cfg.Regions = append(cfg.Regions, rc)
	}
	if mut != nil {
		mut(&cfg)
	}
	st, err := store.Open(ctx, cfg)
	if err == nil {
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = st.CloseContext(cctx)
		})
	}
	return st, err
}

func regionHealth(st *store.Store, name string) store.RegionHealth {
	for _, h := range st.Health() {
		if h.Region == name {
			return h
		}
	}
	return store.RegionHealth{}
}

// TestOpenThroughOutages: Open succeeds with a remote region silent (its
// proxy accepts connections and never answers) well within ConnectTimeout,
// LocalQuorum writes succeed and hint it; a second Store opened with the
// home region refusing connections serves Any and fails LocalQuorum fast,
// naming the home region; once both heal, the breakers close, the
// regions connect, and the hints replay into the silent region.
func TestOpenThroughOutages(t *testing.T) {
	t.Parallel()
	const n = 50
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, storeNS, "a", "b", "c")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	pa, pc := frontRegion(t, "a"), frontRegion(t, "c")
	t.Cleanup(func() { _ = pa.Heal(); _ = pc.Heal() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	if err := pc.Blackhole(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	st, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"a": pa, "c": pc}, prod, nil)
	if err != nil {
		t.Fatalf("Open with region c silent: %v", err)
	}
	opened := time.Since(begin)
	t.Logf("Open with c silent took %v (ConnectTimeout 30s)", opened.Round(time.Millisecond))
	if opened >= 15*time.Second {
		t.Fatalf("Open took %v with c silent: it waited on c's connect timeout", opened)
	}
	if h := regionHealth(st, "c"); h.Connected || !errors.Is(h.LastError, store.ErrUnavailable) {
		t.Fatalf("Health of c: %+v, want unconnected with an availability error", h)
	}
	ns, err := st.Namespace(storeNS)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ns.Put(ctx, fmt.Appendf(nil, "p%d", i), []byte("c"), []byte("v")); err != nil {
			t.Fatalf("LocalQuorum Put %d with c silent: %v", i, err)
		}
	}
	eventually(t, time.Minute, "every write hinted for c", func() error {
		if got := gauge(t, st.Metrics(), "tidemark_store_hinted_writes_total", "region", "c"); got != n {
			return fmt.Errorf("%v hinted", got)
		}
		return nil
	})

	// The home region cut: a Store opened now still starts.
	if err := pa.Refuse(); err != nil {
		t.Fatal(err)
	}
	st2, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"a": pa, "c": pc}, prod, nil)
	if err != nil {
		t.Fatalf("Open with the home region refusing and c silent: %v", err)
	}
	ns2, err := st2.Namespace(storeNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns2.Put(ctx, []byte("any"), []byte("c"), []byte("v"), store.WithConsistency(quorum.Any)); err != nil {
		t.Fatalf("Any with the home region down: %v", err)
	}
	start := time.Now()
	err = ns2.Put(ctx, []byte("lq"), []byte("c"), []byte("v"))
	took := time.Since(start)
	var re *store.RegionError
	if !errors.As(err, &re) || re.Region != "a" || !errors.Is(err, store.ErrNotConnected) {
		t.Fatalf("LocalQuorum with the home region down: %v, want an error naming a, not connected", err)
	}
	if took > time.Second {
		t.Fatalf("LocalQuorum took %v to fail with the home region down, want it to fail fast", took)
	}

	if err := pa.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := pc.Heal(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*store.Store{st, st2} {
		eventually(t, 2*time.Minute, "every region connected, every breaker closed", func() error {
			for _, h := range s.Health() {
				if !h.Connected || h.Breaker != "closed" {
					return fmt.Errorf("%+v", h)
				}
			}
			return nil
		})
	}
	if err := ns2.Put(ctx, []byte("lq"), []byte("c"), []byte("v"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatalf("All after healing: %v", err)
	}
	sc := directSession(t, "c", ks)
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: testEnv(t).KafkaBrokers(), TopicPrefix: prefix, Region: "c", GroupID: prefix + "replayer-c",
		Applier: hints.NewCQLApplier(sc, ks), Partitions: 4, ReplicationFactor: 1,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	runReplayer(t, r)
	eventually(t, 2*time.Minute, "the hinted writes in c", func() error {
		for i := range n {
			if !readRegionRow(t, "c", ks, fmt.Appendf(nil, "p%d", i), []byte("c")).found {
				return fmt.Errorf("p%d missing in c", i)
			}
		}
		return nil
	})
}

// TestKafkaPausedWhileRegionCut pauses the broker (SIGSTOP) for 15 s
// while region c is cut, under a LocalQuorum workload: the writes do not
// wait for Kafka — no second passes without acknowledged writes and no
// write takes more than a second (the call timeout is 3 s) — and every
// write c missed is accounted for: hinted, known not hinted (left to
// repair), or uncertain. Not parallel: it pauses the shared broker.
func TestKafkaPausedWhileRegionCut(t *testing.T) {
	localEnv(t)
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, storeNS, "a", "b", "c")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	pc := frontRegion(t, "c")
	t.Cleanup(func() { _ = pc.Heal() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"c": pc}, prod, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := st.Namespace(storeNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.EnsureTopic(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := pc.Refuse(); err != nil {
		t.Fatal(err)
	}

	const before, paused, after = 5 * time.Second, 15 * time.Second, 5 * time.Second
	start := time.Now()
	total := before + paused + after
	perSecond := make([]atomic.Int64, int(total/time.Second)+2)
	var writes, failed atomic.Int64
	var slowest atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range 16 {
		wg.Go(func() {
			for time.Since(start) < total {
				i := seq.Add(1)
				t0 := time.Now()
				err := ns.Put(ctx, fmt.Appendf(nil, "p%d", i%500), fmt.Appendf(nil, "c%d", i), benchValue)
				d := time.Since(t0)
				for {
					old := slowest.Load()
					if int64(d) <= old || slowest.CompareAndSwap(old, int64(d)) {
						break
					}
				}
				writes.Add(1)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				perSecond[int(time.Since(start)/time.Second)].Add(1)
			}
		})
	}
	time.Sleep(before)
	resume := pauseBroker(t)
	time.Sleep(paused)
	resume()
	wg.Wait()

	if failed.Load() > 0 {
		t.Fatalf("%d of %d LocalQuorum writes failed, first: %v", failed.Load(), writes.Load(), firstErr)
	}
	var counts []int64
	for s := range int(total / time.Second) {
		counts = append(counts, perSecond[s].Load())
	}
	t.Logf("%d LocalQuorum writes in %v (Kafka paused from %v to %v); acknowledged per second: %v; slowest %v",
		writes.Load(), total, before, before+paused, counts, time.Duration(slowest.Load()).Round(time.Millisecond))
	if i := slices.Index(counts, 0); i >= 0 {
		t.Fatalf("second %d had no acknowledged write (per second: %v)", i, counts)
	}
	if d := time.Duration(slowest.Load()); d > time.Second {
		t.Fatalf("a LocalQuorum write took %v with Kafka paused: the hint path made it wait", d)
	}

	// Every write c missed is hinted, known not hinted, or uncertain.
	m := st.Metrics()
	eventually(t, 2*time.Minute, "every write to c accounted for", func() error {
		hinted := gauge(t, m, "tidemark_store_hinted_writes_total", "region", "c")
		notHinted := gauge(t, m, "tidemark_store_hints_failed_total", "region", "c")
		uncertain := gauge(t, m, "tidemark_store_hints_uncertain_total", "region", "c")
		if got := hinted + notHinted + uncertain; got != float64(writes.Load()) {
			return fmt.Errorf("hinted %v + not hinted %v + uncertain %v = %v, want %d", hinted, notHinted, uncertain, got, writes.Load())
		}
		t.Logf("c missed %d writes: hinted %v, known not hinted %v (left to repair), uncertain %v", writes.Load(), hinted, notHinted, uncertain)
		return nil
	})
}
