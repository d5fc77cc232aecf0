package integration

// Segment fingerprints against the real regions: repair with fingerprints
// (aggregates first, digest scans of the ranges that differ) against
// today's digest scan of every segment, at 0%, 0.1% and 10% divergence.
// Run:
//
//	make bench BENCH=BenchmarkFingerprint
//	TIDEMARK_BENCH_ROWS=10000,100000,1000000 make bench BENCH=BenchmarkFingerprint
//
// The conflict log is off in both modes (its table is created at a run's
// start, a fixed cost unrelated to the comparison). B/row and ns/row are
// per row of the table (bytes read from both regions:
// aggregate answers, digest scans, value fetches); server-ns/row is the CPU
// the two regions' nodes spent per row. After the load, the servers are
// left to settle (flushes, compactions) and each mode runs once unmeasured,
// so that neither the load's aftermath nor the servers' JIT warm-up is
// charged to whichever mode is measured first.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/repair"
)

func BenchmarkFingerprint(b *testing.B) {
	for _, n := range benchRowCounts() {
		f := newRepairFixture(b, "a", "b")
		ts := time.Now().UnixMicro()
		start := time.Now()
		rows := baseRows(n, ts, benchValueSize)
		f.load(b, "a", rows)
		f.load(b, "b", rows)
		b.Logf("loaded %d rows x 2 regions in %s", n, time.Since(start).Round(time.Millisecond))
		settleServers(b, "a", "b")
		for _, mode := range []string{"fingerprint", "digest"} {
			cpu, wall := serverCPU(b, "a", "b"), time.Now()
			if _, err := f.benchRepairer(b, n, mode).Run(context.Background(), repairNS); err != nil {
				b.Fatal(err)
			}
			b.Logf("warm-up, %s: %s, servers' CPU %s", mode, time.Since(wall).Round(time.Millisecond), (serverCPU(b, "a", "b") - cpu).Round(10*time.Millisecond))
		}
		version := 10
		for _, pct := range []float64{0, 0.001, 0.10} {
			for _, mode := range []string{"fingerprint", "digest"} {
				b.Run(fmt.Sprintf("rows=%d/div=%g%%/%s", n, pct*100, mode), func(b *testing.B) {
					var rep *repair.Report
					var cpuUsed time.Duration
					k := int(float64(n) * pct)
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						version++
						div := make([]repairRow, 0, k)
						for j := 0; j < k; j++ {
							idx := (j * 7919) % n
							pk, ck := rowKey(idx)
							div = append(div, repairRow{pk: pk, ck: ck, value: value(idx, version, benchValueSize), ts: ts + int64(version)})
						}
						f.load(b, "a", div) // region b misses these writes
						r := f.benchRepairer(b, n, mode)
						cpu := serverCPU(b, "a", "b")
						b.StartTimer()
						var err error
						rep, err = r.Run(context.Background(), repairNS)
						b.StopTimer()
						cpuUsed += serverCPU(b, "a", "b") - cpu
						if err != nil {
							b.Fatal(err)
						}
						if rep.RowsDiffering != int64(k) || rep.RowsWritten != int64(k) {
							b.Fatalf("differing %d written %d, injected %d", rep.RowsDiffering, rep.RowsWritten, k)
						}
						if rep.RowsScanned+rep.RowsInSync != int64(n) {
							b.Fatalf("rows scanned %d + in sync %d, want the table's %d", rep.RowsScanned, rep.RowsInSync, n)
						}
					}
					var bytesRead, fetches, queries int64
					for _, rs := range rep.Regions {
						bytesRead += rs.BytesRead
						fetches += rs.ValueFetches
						queries += rs.FingerprintQueries
					}
					if pct == 0 && fetches != 0 {
						b.Fatalf("repair at 0%% divergence fetched %d values", fetches)
					}
					b.ReportMetric(float64(bytesRead)/float64(n), "B/row")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/row")
					b.ReportMetric(float64(cpuUsed.Nanoseconds())/float64(b.N)/float64(n), "server-ns/row")
					b.ReportMetric(float64(queries), "aggregates/op")
					b.ReportMetric(float64(rep.RowsScanned), "scanned/op")
					b.ReportMetric(float64(rep.RowsWritten), "written/op")
					if k > 0 {
						b.ReportMetric(float64(rep.RowsWritten)/float64(k), "written/differing")
					}
				})
			}
		}
	}
}

// benchRepairer is the repair both modes run: fingerprints first, or
// (mode "digest") today's digest scan of every segment.
func (f *repairFixture) benchRepairer(b *testing.B, n int, mode string) *repair.Repairer {
	b.Helper()
	r, err := repair.New(f.cqlRegions(b), repair.Options{Segments: max(n/5000, 4), Parallelism: 2, PageSize: 2000,
		DisableFingerprints: mode == "digest",
		// The conflict log's table is created at a run's start: a fixed
		// second, the same in both modes.
		Conflicts: repair.ConflictConfig{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	return r
}
