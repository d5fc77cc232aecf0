package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkWatermarkLag measures the convergence watermark's lag (now −
// watermark) with every region healthy, under ~100 LocalQuorum writes a
// second, for the default intervals (the store heartbeats every 500ms,
// repaird computes every 250ms with a 500ms clock-skew bound) and for
// 200ms/200ms/100ms. Each configuration samples every region's
// watermark every 100ms for 20s; the figures are p50, p99 and the
// largest lag in seconds (goal: p99 ≤ 2s). Run with `make bench
// BENCH=BenchmarkWatermarkLag`.
func BenchmarkWatermarkLag(b *testing.B) {
	for _, c := range []struct {
		name                string
		beat, compute, skew time.Duration
	}{
		{"defaults", 500 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond},
		{"fast", 200 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			e := newWatermarkEnv(b, ctx, c.beat, c.compute, c.skew)
			wctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			defer func() { stop(); wg.Wait() }()
			wg.Go(func() {
				for i := 0; wctx.Err() == nil; i++ {
					_ = e.ns.Put(wctx, fmt.Appendf(nil, "p%d", i%50), fmt.Appendf(nil, "c%d", i%10), fmt.Appendf(nil, "v%d", i))
					time.Sleep(10 * time.Millisecond)
				}
			})
			start := time.Now()
			eventually(b, time.Minute, "every watermark passes the start", func() error {
				for _, r := range []string{"a", "b", "c"} {
					if w := e.watermark(ctx, r); !w.After(start) {
						return fmt.Errorf("%s: %v", r, w)
					}
				}
				return nil
			})
			b.ResetTimer()
			var lags []float64
			for range b.N {
				for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
					for _, r := range []string{"a", "b", "c"} {
						if w := e.watermark(ctx, r); !w.IsZero() {
							lags = append(lags, time.Since(w).Seconds())
						}
					}
				}
			}
			b.StopTimer()
			slices.Sort(lags)
			b.ReportMetric(lags[len(lags)/2], "lag-p50-s")
			b.ReportMetric(lags[len(lags)*99/100], "lag-p99-s")
			b.ReportMetric(lags[len(lags)-1], "lag-max-s")
			b.ReportMetric(float64(len(lags)), "samples")
		})
	}
}
