package integration

// Segment fingerprints against the real regions: repair with fingerprints
// (aggregates first, digest scans of the ranges that differ) against
// today's digest scan of every segment, at 0%, 0.1% and 10% divergence.
// Run:
//
//	make bench BENCH=BenchmarkFingerprint
//	TIDEMARK_BENCH_ROWS=10000,100000,1000000 make bench BENCH=BenchmarkFingerprint
//	TIDEMARK_BENCH_ROWS=1000000 TIDEMARK_BENCH_PAIRS=7 make bench BENCH='BenchmarkFingerprint/rows=1000000/div=0%'
//
// Each sub-benchmark (rows, divergence) measures the three modes in
// rounds: one repair of each — a full run with fingerprints, today's
// digest scan, an incremental run (repair.Options.Since, from a cutoff
// above the loaded rows and below the divergence injected, as an
// unsettled write is above the watermark) — the order rotating from round
// to round (TIDEMARK_BENCH_PAIRS rounds, default 1), so that servers
// warming up or slowing down through the run are charged to every mode
// alike — with -count, Go would run every repair of one mode before the
// next's. The comparisons are fp/digest-time, fp/digest-server,
// inc/digest-time and inc/digest-server: the median over the rounds of
// each round's ratio of wall time and of the servers' CPU (the upper
// median for an even number). The per-mode metrics are means per
// row of the table: B/row (bytes read from both regions: aggregate
// answers, digest scans, value fetches), ns/row, server-ns/row (the CPU
// the two regions' nodes spent); ns/op is a whole round's time, loading
// the divergence included, and means nothing here. The conflict log is
// off in every mode (its table is created at a run's start, a fixed cost
// unrelated to the comparison). After the load, the servers are left to
// settle (flushes, compactions) and each mode runs once unmeasured, so
// that neither the load's aftermath nor the servers' JIT warm-up is
// charged to whichever mode is measured first.

import (
	"context"
	"fmt"
	"slices"
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
		// The cutoff of the incremental runs: above the loaded rows, below
		// every divergence injected (an unsettled write is above the
		// watermark). The version index is created by the first
		// incremental run and built before anything is measured.
		since := ts + 1
		for _, mode := range benchModes {
			cpu, wall := serverCPU(b, "a", "b"), time.Now()
			if _, err := f.benchRepairer(b, n, mode, since).Run(context.Background(), repairNS); err != nil {
				b.Fatal(err)
			}
			b.Logf("warm-up, %s: %s, servers' CPU %s", mode, time.Since(wall).Round(time.Millisecond), (serverCPU(b, "a", "b") - cpu).Round(10*time.Millisecond))
		}
		wall := time.Now()
		f.waitIndexQueryable(b)
		b.Logf("version index built %s after the warm-up", time.Since(wall).Round(time.Millisecond))
		settleServers(b, "a", "b")
		version := 10
		pairs := envInt("TIDEMARK_BENCH_PAIRS", 1)
		for _, pct := range []float64{0, 0.001, 0.10} {
			b.Run(fmt.Sprintf("rows=%d/div=%g%%", n, pct*100), func(b *testing.B) {
				k := int(float64(n) * pct)
				var runs [len(benchModes)]modeRuns
				var ratios, serverRatios, incRatios, incServerRatios []float64
				// One repair of each mode, the same divergence injected
				// before each; the order rotates from round to round, so
				// that a server warming up (or slowing down) through the
				// benchmark is charged to every mode alike.
				runPair := func(p int) {
					order := []int{0, 1, 2}
					for range p % 3 {
						order = append(order[1:], order[0])
					}
					if (p/3)%2 == 1 {
						slices.Reverse(order)
					}
					var wall, cpu [len(benchModes)]time.Duration
					for _, m := range order {
						version++
						div := make([]repairRow, 0, k)
						for j := 0; j < k; j++ {
							idx := (j * 7919) % n
							pk, ck := rowKey(idx)
							div = append(div, repairRow{pk: pk, ck: ck, value: value(idx, version, benchValueSize), ts: ts + int64(version)})
						}
						f.load(b, "a", div) // region b misses these writes
						r := f.benchRepairer(b, n, benchModes[m], since)
						c0, w0 := serverCPU(b, "a", "b"), time.Now()
						rep, err := r.Run(context.Background(), repairNS)
						wall[m], cpu[m] = time.Since(w0), serverCPU(b, "a", "b")-c0
						if err != nil {
							b.Fatal(err)
						}
						if rep.RowsDiffering != int64(k) || rep.RowsWritten != int64(k) {
							b.Fatalf("%s: differing %d written %d, injected %d", benchModes[m], rep.RowsDiffering, rep.RowsWritten, k)
						}
						if benchModes[m] != "incremental" && rep.RowsScanned+rep.RowsInSync != int64(n) {
							b.Fatalf("%s: rows scanned %d + in sync %d, want the table's %d", benchModes[m], rep.RowsScanned, rep.RowsInSync, n)
						}
						runs[m].add(rep, wall[m], cpu[m])
						if pct == 0 && runs[m].fetches != 0 {
							b.Fatalf("%s: repair at 0%% divergence fetched %d values", benchModes[m], runs[m].fetches)
						}
					}
					ratios = append(ratios, float64(wall[0])/float64(wall[1]))
					serverRatios = append(serverRatios, float64(cpu[0])/float64(cpu[1]))
					incRatios = append(incRatios, float64(wall[2])/float64(wall[1]))
					incServerRatios = append(incServerRatios, float64(cpu[2])/float64(cpu[1]))
					b.Logf("round %d (%s first): time fp %s, digest %s, incremental %s = %.2fx, %.3fx of digest; servers' CPU %s / %s / %s = %.2fx, %.3fx",
						p+1, benchModes[order[0]], wall[0].Round(time.Millisecond), wall[1].Round(time.Millisecond), wall[2].Round(time.Millisecond),
						ratios[len(ratios)-1], incRatios[len(incRatios)-1],
						cpu[0].Round(10*time.Millisecond), cpu[1].Round(10*time.Millisecond), cpu[2].Round(10*time.Millisecond),
						serverRatios[len(serverRatios)-1], incServerRatios[len(incServerRatios)-1])
				}
				for i := 0; i < b.N; i++ {
					for p := 0; p < pairs; p++ {
						runPair(p)
					}
				}
				for m, r := range runs {
					r.report(b, benchModes[m], n)
				}
				b.ReportMetric(median(ratios), "fp/digest-time")
				b.ReportMetric(median(serverRatios), "fp/digest-server")
				b.ReportMetric(median(incRatios), "inc/digest-time")
				b.ReportMetric(median(incServerRatios), "inc/digest-server")
				if k > 0 {
					b.ReportMetric(float64(runs[0].written)/float64(runs[0].n)/float64(k), "written/differing")
				}
			})
		}
	}
}

// benchModes are the repairs BenchmarkFingerprint compares, by index: a
// full run with fingerprints, today's digest scan, and an incremental run
// (repair.Options.Since) from a cutoff above the loaded rows.
var benchModes = [3]string{"fingerprint", "digest", "incremental"}

// modeRuns sums one mode's measured repairs.
type modeRuns struct {
	n                       int
	wall, cpu               time.Duration
	bytes, fetches, queries int64
	scanned, written        int64
}

func (r *modeRuns) add(rep *repair.Report, wall, cpu time.Duration) {
	r.n++
	r.wall += wall
	r.cpu += cpu
	r.scanned += rep.RowsScanned
	r.written += rep.RowsWritten
	for _, rs := range rep.Regions {
		r.bytes += rs.BytesRead
		r.fetches += rs.ValueFetches
		r.queries += rs.FingerprintQueries
	}
}

// report writes the mode's means per repair and per row of the table
// (rows), each metric named after the mode.
func (r modeRuns) report(b *testing.B, mode string, rows int) {
	per := float64(r.n) * float64(rows)
	b.ReportMetric(float64(r.bytes)/per, mode+"-B/row")
	b.ReportMetric(float64(r.wall.Nanoseconds())/per, mode+"-ns/row")
	b.ReportMetric(float64(r.cpu.Nanoseconds())/per, mode+"-server-ns/row")
	b.ReportMetric(float64(r.scanned)/float64(r.n), mode+"-scanned/op")
	if mode != "digest" {
		b.ReportMetric(float64(r.queries)/float64(r.n), mode+"-aggregates/op")
	}
}

// median is the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// benchRepairer is the repair each mode runs: fingerprints first, (mode
// "digest") today's digest scan of every segment, or (mode
// "incremental") an incremental run from since.
func (f *repairFixture) benchRepairer(b *testing.B, n int, mode string, since int64) *repair.Repairer {
	b.Helper()
	if mode != "incremental" {
		since = 0
	}
	r, err := repair.New(f.cqlRegions(b), repair.Options{Segments: max(n/5000, 4), Parallelism: 2, PageSize: 2000,
		DisableFingerprints: mode == "digest", Since: since,
		// The conflict log's table is created at a run's start: a fixed
		// second, the same in both modes.
		Conflicts: repair.ConflictConfig{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkVersionIndexWriteCost measures what the version index
// (schema.CreateVersionIndex, for incremental runs) costs writes: the same
// rows loaded into two tables of region a, one indexed, in rounds whose
// order alternates; reported as the median over the rounds of the
// indexed table's wall time and servers' CPU over the plain one's.
//
//	TIDEMARK_BENCH_PAIRS=5 make bench BENCH=BenchmarkVersionIndexWriteCost
func BenchmarkVersionIndexWriteCost(b *testing.B) {
	plain, indexed := newRepairFixture(b, "a"), newRepairFixture(b, "a")
	inc := indexed.cqlRegions(b)[0].Reader.(repair.IncrementalFingerprinter)
	if err := inc.EnsureVersionIndex(context.Background(), repairNS); err != nil {
		b.Fatal(err)
	}
	const perRound = 50_000
	rounds := envInt("TIDEMARK_BENCH_PAIRS", 3)
	ts := time.Now().UnixMicro()
	// Warm both tables' write paths (the index's memtable included).
	plain.load(b, "a", baseRows(5000, ts, benchValueSize))
	indexed.load(b, "a", baseRows(5000, ts, benchValueSize))
	settleServers(b, "a")
	var wallRatios, cpuRatios []float64
	var wall, cpu [2]time.Duration
	for i := 0; i < b.N; i++ {
		for r := range rounds {
			rows := make([]repairRow, perRound)
			for j := range rows {
				pk, ck := rowKey((r+1)*perRound + j)
				rows[j] = repairRow{pk: pk, ck: ck, value: value(j, r, benchValueSize), ts: ts + int64(r+1)}
			}
			var w, c [2]time.Duration
			order := []int{0, 1}
			if r%2 == 1 {
				order = []int{1, 0}
			}
			for _, m := range order {
				f := []*repairFixture{plain, indexed}[m]
				c0, w0 := serverCPU(b, "a"), time.Now()
				f.load(b, "a", rows)
				w[m], c[m] = time.Since(w0), serverCPU(b, "a")-c0
				wall[m] += w[m]
				cpu[m] += c[m]
			}
			wallRatios = append(wallRatios, float64(w[1])/float64(w[0]))
			cpuRatios = append(cpuRatios, float64(c[1])/float64(c[0]))
			b.Logf("round %d: %d rows, plain %s (servers %s), indexed %s (servers %s)", r+1, perRound,
				w[0].Round(time.Millisecond), c[0].Round(10*time.Millisecond), w[1].Round(time.Millisecond), c[1].Round(10*time.Millisecond))
		}
	}
	n := float64(b.N * rounds * perRound)
	b.ReportMetric(float64(wall[0].Nanoseconds())/n, "plain-ns/row")
	b.ReportMetric(float64(wall[1].Nanoseconds())/n, "indexed-ns/row")
	b.ReportMetric(float64(cpu[0].Nanoseconds())/n, "plain-server-ns/row")
	b.ReportMetric(float64(cpu[1].Nanoseconds())/n, "indexed-server-ns/row")
	b.ReportMetric(median(wallRatios), "indexed/plain-time")
	b.ReportMetric(median(cpuRatios), "indexed/plain-server")
}
