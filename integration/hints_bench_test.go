package integration

// Hint benchmarks on the real environment. Run them with
//
//	go test ./integration/ -run '^$' -bench BenchmarkHints -benchtime 1x -count 3
//
// Figures are reported as custom metrics (hints/s, rows/s, replay/raw,
// s/10k); compare the ratios, not the absolute numbers, between machines.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
)

// BenchmarkHintsProduce measures hints acknowledged by Kafka (acks=all) per
// second: each iteration produces 10,000 hints with 200-byte values from 32
// goroutines.
func BenchmarkHintsProduce(b *testing.B) {
	prefix := newTopicPrefix(b)
	prod := hintsProducer(b, prefix, nil)
	ctx := context.Background()
	if err := prod.EnsureTopic(ctx, "b"); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 200)
	const perIter, workers = 10000, 32
	var seq atomic.Int64
	base := time.Now().UnixMicro()
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := seq.Add(1)
					if i > int64(perIter)*int64(b.N) {
						return
					}
					h := record.Hint{Target: "b", Origin: "a", Namespace: hintsNS, PK: fmt.Appendf(nil, "p%d", i), CK: []byte("c"), Value: value, Timestamp: base + i}
					if err := prod.Hint(ctx, h); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(perIter*b.N)/b.Elapsed().Seconds(), "hints/s")
}

// countingApplier counts applies and notes when the first one started.
type countingApplier struct {
	next    hints.Applier
	n       atomic.Int64
	started atomic.Int64 // unix ns of the first Apply
}

func (c *countingApplier) Apply(ctx context.Context, h record.Hint) error {
	c.started.CompareAndSwap(0, time.Now().UnixNano())
	err := c.next.Apply(ctx, h)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// BenchmarkHintsReplayVsRaw replays a 10,000-hint backlog into region B and
// writes the same rows to B with plain gocql (16 concurrent writers, the
// replayer's default concurrency), and reports both rates and their ratio
// (target: replay/raw >= 0.8). Replay time runs from the first Apply to the
// last, so it excludes joining the consumer group.
func BenchmarkHintsReplayVsRaw(b *testing.B) {
	const n = 10000
	ks := newKeyspace(b, "b")
	hintsTable(b, ks, "b")
	admin := adminSession(b, region(b, "b"))
	if err := admin.Query(schema.CreateTable(ks, hintsNS+"_raw", schema.DefaultRetention)).Exec(); err != nil {
		b.Fatal(err)
	}
	if err := admin.AwaitSchemaAgreement(context.Background()); err != nil {
		b.Fatal(err)
	}
	sb := directSession(b, "b", ks)
	ctx := context.Background()
	var rawSecs, replaySecs float64
	for iter := range b.N {
		b.StopTimer()
		prefix := newTopicPrefix(b)
		prod := hintsProducer(b, prefix, nil)
		muts := makeMutations(n, uint64(iter)+10)
		if err := parallel(n, 32, func(i int) error {
			m := muts[i]
			m.at = time.Now()
			muts[i] = m
			return prod.Hint(ctx, m.hint("b"))
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		begin := time.Now()
		if err := parallel(n, hints.DefaultReplayConcurrency, func(i int) error {
			return sb.Query(schema.Insert(ks, hintsNS+"_raw"), muts[i].bind(time.Now())...).ExecContext(ctx)
		}); err != nil {
			b.Fatal(err)
		}
		rawSecs += time.Since(begin).Seconds()

		ca := &countingApplier{next: hints.NewCQLApplier(sb, ks)}
		r := hintsReplayer(b, prefix, "b", ca, nil)
		stop := runReplayer(b, r)
		deadline := time.Now().Add(5 * time.Minute)
		for ca.n.Load() < n {
			if time.Now().After(deadline) {
				b.Fatalf("replayed %d of %d in 5 minutes", ca.n.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
		replaySecs += time.Since(time.Unix(0, ca.started.Load())).Seconds()
		stop()
	}
	raw, replay := float64(b.N*n)/rawSecs, float64(b.N*n)/replaySecs
	b.ReportMetric(raw, "raw-rows/s")
	b.ReportMetric(replay, "replay-rows/s")
	b.ReportMetric(replay/raw, "replay/raw")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHintsHealToConvergence: a 10,000-hint backlog for region B; time
// from starting the replayer (the region healed) until every hint is applied
// in B and committed (consumer lag 0), group join included.
func BenchmarkHintsHealToConvergence(b *testing.B) {
	const n = 10000
	ks := newKeyspace(b, "b")
	hintsTable(b, ks, "b")
	sb := directSession(b, "b", ks)
	ctx := context.Background()
	var total float64
	for iter := range b.N {
		b.StopTimer()
		prefix := newTopicPrefix(b)
		prod := hintsProducer(b, prefix, nil)
		muts := makeMutations(n, uint64(iter)+100)
		if err := parallel(n, 32, func(i int) error {
			m := muts[i]
			m.at = time.Now()
			return prod.Hint(ctx, m.hint("b"))
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		begin := time.Now()
		r := hintsReplayer(b, prefix, "b", hints.NewCQLApplier(sb, ks), nil)
		stop := runReplayer(b, r)
		deadline := begin.Add(5 * time.Minute)
		for gauge(b, r, "tidemark_hints_replayed_total") < n || gauge(b, r, "tidemark_hints_consumer_lag") != 0 {
			if time.Now().After(deadline) {
				b.Fatal("no convergence in 5 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(begin).Seconds()
		stop()
	}
	b.ReportMetric(total/float64(b.N), "s/10k-hints")
	b.ReportMetric(0, "ns/op")
}
