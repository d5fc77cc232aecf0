package integration

// Repair debt at the size of the goal: region c cut and the Kafka
// broker paused for a minute under a LocalQuorum workload, then both back;
// how long until c holds every row a holds, with only the debt worker
// running (no full run, no replayer), and how many rows the drain read per
// key in debt. Run:
//
//	make bench BENCH=BenchmarkDebtDrain
//	TIDEMARK_BENCH_DEBT_OUTAGE=10s make bench BENCH=BenchmarkDebtDrain
//
// The workload is TestDebtDrainedAfterKafkaOutage's (debtOutage): 8
// goroutines, puts and deletes over 1 600 keys, at 1 000 writes a second
// and as fast as they go. Debt that overflows the store's bound
// (MaxPendingDebt) is reported, not a failure: it is the bound working
// (the namespace is left to a full run).

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func BenchmarkDebtDrain(b *testing.B) {
	outage := time.Minute
	if v := os.Getenv("TIDEMARK_BENCH_DEBT_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("TIDEMARK_BENCH_DEBT_OUTAGE=%q: want a positive duration such as 60s", v)
		}
		outage = d
	}
	for _, perSecond := range []int{1000, 0} {
		name := fmt.Sprintf("outage=%s/writes=%d_per_s", outage, perSecond)
		if perSecond == 0 {
			name = fmt.Sprintf("outage=%s/writes=unthrottled", outage)
		}
		b.Run(name, func(b *testing.B) {
			var r debtOutageResult
			for i := 0; i < b.N; i++ {
				r = debtOutage(b, outage, perSecond, true)
			}
			if r.repaired == 0 {
				b.Fatal("the daemon repaired no debt entry")
			}
			if r.runs != 0 {
				b.Fatalf("%v repair runs started: the debt, not a run, must have repaired c", r.runs)
			}
			b.ReportMetric(r.converged.Seconds(), "converged-s")
			b.ReportMetric(r.read/r.repaired, "rows-read/key")
			b.ReportMetric(r.debt, "debt-entries")
			b.ReportMetric(r.repaired, "keys-repaired")
			b.ReportMetric(float64(r.writes), "writes")
			b.ReportMetric(r.hinted, "hinted")
			b.ReportMetric(r.overflow, "overflowed")
		})
	}
}
