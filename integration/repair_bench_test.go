package integration

// Repair cost against the real regions: time and bytes read per row for 10k
// and 100k rows at 0%, 0.1% and 10% divergence, digest repair versus a naive
// baseline that reads and compares whole rows. Run:
//
//	go test ./integration/ -run '^$' -bench BenchmarkRepair -benchtime 1x -timeout 30m
//
// (TIDEMARK_BENCH_ROWS=10000,100000,1000000 adds 1M rows.)

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

const benchValueSize = 256

// naiveRegion is the baseline: its scan reads whole rows (values included)
// and compares them by a digest computed on the client, as a repair without
// a stored digest column would have to. It counts every payload byte read.
type naiveRegion struct {
	*repair.CQLRegion
	s     *gocql.Session
	ks    string
	bytes atomic.Int64
}

func (n *naiveRegion) ScanDigests(ctx context.Context, ns string, r repair.TokenRange, pageSize int) repair.RowStream {
	op := ">"
	if r.IncludesStart() {
		op = ">="
	}
	// Bench-only statement: the schema has no full-row range read.
	stmt := fmt.Sprintf(`SELECT token(pk), pk, ck, value, deleted, writetime(digest), ttl(digest) FROM %s.%s WHERE token(pk) %s ? AND token(pk) <= ?`, n.ks, ns, op)
	iter := n.s.Query(stmt, r.Start, r.End).Consistency(gocql.LocalQuorum).PageSize(pageSize).IterContext(ctx)
	return &naiveStream{n: n, iter: iter, sc: iter.Scanner()}
}

func (n *naiveRegion) ReadRow(ctx context.Context, ns string, pk, ck []byte) (repair.RowValue, bool, error) {
	v, ok, err := n.CQLRegion.ReadRow(ctx, ns, pk, ck)
	n.bytes.Add(int64(4*4 + len(v.Value) + 1 + 8 + 4))
	return v, ok, err
}

type naiveStream struct {
	n     *naiveRegion
	iter  *gocql.Iter
	sc    gocql.Scanner
	row   repair.DigestRow
	value []byte
	err   error
}

func (s *naiveStream) Next() bool {
	if s.err != nil || !s.sc.Next() {
		return false
	}
	r := &s.row
	if err := s.sc.Scan(&r.Token, &r.PK, &r.CK, &s.value, &r.Deleted, &r.Timestamp, &r.TTL); err != nil {
		s.err = err
		return false
	}
	r.Digest = schema.Digest(r.Deleted, s.value)
	s.n.bytes.Add(int64(7*4 + 8 + len(r.PK) + len(r.CK) + len(s.value) + 1 + 8 + 4))
	return true
}
func (s *naiveStream) Row() *repair.DigestRow { return &s.row }
func (s *naiveStream) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.sc.Err()
}
func (s *naiveStream) Close() error { return s.iter.Close() }

func benchRowCounts() []int {
	v := os.Getenv("TIDEMARK_BENCH_ROWS")
	if v == "" {
		return []int{10_000, 100_000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func BenchmarkRepair(b *testing.B) {
	for _, n := range benchRowCounts() {
		f := newRepairFixture(b, "a", "b")
		ts := time.Now().UnixMicro()
		start := time.Now()
		rows := baseRows(n, ts, benchValueSize)
		f.load(b, "a", rows)
		f.load(b, "b", rows)
		b.Logf("loaded %d rows x 2 regions in %s", n, time.Since(start).Round(time.Millisecond))
		version := 10
		for _, pct := range []float64{0, 0.001, 0.10} {
			for _, mode := range []string{"digest", "naive"} {
				b.Run(fmt.Sprintf("rows=%d/div=%g%%/%s", n, pct*100, mode), func(b *testing.B) {
					var rep *repair.Report
					var naiveBytes int64
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						version++
						k := int(float64(n) * pct)
						div := make([]repairRow, 0, k)
						for j := 0; j < k; j++ {
							idx := (j * 7919) % n
							pk, ck := rowKey(idx)
							div = append(div, repairRow{pk: pk, ck: ck, value: value(idx, version, benchValueSize), ts: ts + int64(version)})
						}
						f.load(b, "a", div) // region b misses these writes
						regions := f.cqlRegions(b)
						var naive []*naiveRegion
						if mode == "naive" {
							for ri, name := range f.regions {
								cr, _ := repair.NewCQLRegion(f.sessions[name], f.ks)
								nr := &naiveRegion{CQLRegion: cr, s: f.sessions[name], ks: f.ks}
								naive = append(naive, nr)
								regions[ri] = repair.Region{Name: name, Reader: nr, Writer: cr}
							}
						}
						r, err := repair.New(regions, repair.Options{Segments: max(n/5000, 4), Parallelism: 2, PageSize: 2000,
							DisableFingerprints: true}) // digest scans and the naive baseline; fingerprints: BenchmarkFingerprint
						if err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						rep, err = r.Run(context.Background(), repairNS)
						b.StopTimer()
						if err != nil {
							b.Fatal(err)
						}
						if rep.RowsDiffering != int64(k) || rep.RowsWritten != int64(k) {
							b.Fatalf("differing %d written %d, injected %d", rep.RowsDiffering, rep.RowsWritten, k)
						}
						naiveBytes = 0
						for _, nr := range naive {
							naiveBytes += nr.bytes.Load()
						}
					}
					var bytesRead, fetches int64
					for _, rs := range rep.Regions {
						bytesRead += rs.BytesRead
						fetches += rs.ValueFetches
					}
					if mode == "naive" {
						bytesRead = naiveBytes
					}
					if mode == "digest" && pct == 0 && fetches != 0 {
						b.Fatalf("digest repair at 0%% divergence fetched %d values", fetches)
					}
					b.ReportMetric(float64(bytesRead)/float64(rep.RowsScanned), "B/row")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rep.RowsScanned), "ns/row")
					b.ReportMetric(float64(fetches), "fetches/op") // of the last run
					b.ReportMetric(float64(rep.RowsWritten), "written/op")
				})
			}
		}
	}
}

// serverCPU is the CPU time the regions' Cassandra nodes have used so far
// (env.Process.CPUTime): benchmarks report the servers' share of a mode
// beside its wall time, since with the servers pinned to one core
// (bench.sh) the wall time of a server-bound mode is mostly theirs.
func serverCPU(tb testing.TB, regions ...string) time.Duration {
	tb.Helper()
	l := localEnv(tb)
	var sum time.Duration
	for _, name := range regions {
		for _, n := range l.Nodes(name) {
			sum += n.CPUTime()
		}
	}
	return sum
}

// settleServers waits until the regions' nodes are quiet (less than a
// tenth of a core over half a second), so that the flushes and
// compactions a bulk load starts are not charged to whichever mode is
// measured first. It gives up after two minutes, saying so.
func settleServers(tb testing.TB, regions ...string) {
	tb.Helper()
	start := time.Now()
	const window = 500 * time.Millisecond
	prev := serverCPU(tb, regions...)
	for time.Since(start) < 2*time.Minute {
		time.Sleep(window)
		cur := serverCPU(tb, regions...)
		if cur-prev < window/10 {
			tb.Logf("servers of %v quiet after %s", regions, time.Since(start).Round(100*time.Millisecond))
			return
		}
		prev = cur
	}
	tb.Logf("servers of %v still busy after %s; measuring anyway", regions, time.Since(start).Round(time.Second))
}
