package hints

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/metrics"
)

// replayerMetrics are a Replayer's Prometheus collectors, all labelled
// with the replayer's region (see docs/hints.md, "Metrics"). The Replayer
// is the prometheus.Collector users register; it collects these.
type replayerMetrics struct {
	replayed      prometheus.Counter
	deadLettered  *prometheus.CounterVec
	applyFailures prometheus.Counter
	commitErrors  prometheus.Counter
	lag           prometheus.Gauge
	oldestAge     prometheus.GaugeFunc
	paused        prometheus.GaugeFunc

	heartbeatsSkipped *prometheus.CounterVec
	marksRecorded     prometheus.Counter
	marksFailed       prometheus.Counter
	deadTruncated     prometheus.Counter
}

// newReplayerMetrics creates the collectors of region's replayer. oldest
// returns the age of the oldest hint being worked on (0 when idle), paused
// whether replay is paused; both are read at every scrape.
func newReplayerMetrics(region string, oldest func() time.Duration, paused func() bool) *replayerMetrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Name: name, Help: help, ConstLabels: prometheus.Labels{"region": region}}
	}
	m := &replayerMetrics{
		replayed: prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_replayed_total",
			"Hints applied in the region."))),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts(opts("tidemark_hints_dead_lettered_total",
			"Hints sent to the dead-letter topic instead of being applied, by reason.")), []string{"reason"}),
		applyFailures: prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_apply_failures_total",
			"Failed attempts to apply a hint; each is retried (a hint that keeps failing while the region is reachable is dead-lettered after MaxHintAttempts)."))),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_commit_failures_total",
			"Offset commits that failed; their hints will be replayed again (harmless)."))),
		lag: prometheus.NewGauge(prometheus.GaugeOpts(opts("tidemark_hints_consumer_lag",
			"Records in the region's hint topic the consumer group has not committed: end offsets minus committed offsets, measured every 2 s; NaN (unknown) while the replayer is not running or Kafka does not answer."))),
		oldestAge: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tidemark_hints_oldest_unreplayed_age_seconds",
			"Age (from the earlier of CreatedAt and the write timestamp) of the oldest hint the replayer is working on; 0 when it is idle. Must stay well below the tombstone retention.")),
			func() float64 { return oldest().Seconds() }),
		paused: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tidemark_hints_replay_paused",
			"1 while replay is paused because the region (or the dead-letter topic) is unreachable.")),
			func() float64 {
				if paused() {
					return 1
				}
				return 0
			}),
	}
	m.heartbeatsSkipped = prometheus.NewCounterVec(prometheus.CounterOpts(opts("tidemark_hints_heartbeats_skipped_total",
		"Heartbeat records skipped — neither applied nor dead-lettered, and no mark — by reason (corrupt, unauthenticated, misrouted).")), []string{"reason"})
	m.marksRecorded = prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_marks_recorded_total",
		"Marks (heartbeats passed: every record before them in their partition applied or dead-lettered) recorded by ReplayerConfig.Marks.")))
	m.marksFailed = prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_marks_failed_total",
		"Marks ReplayerConfig.Marks failed to record; replay went on, and later heartbeats bring newer marks.")))
	m.deadTruncated = prometheus.NewCounter(prometheus.CounterOpts(opts("tidemark_hints_dead_letters_truncated_total",
		"Dead letters written without their value: too large for the dead-letter writer or topic (the header tidemark-dead-truncated has the value's size).")))
	for _, reason := range []string{ReasonCorrupt, ReasonUnauthenticated, ReasonExpired, ReasonMisrouted, ReasonRejected} {
		m.deadLettered.WithLabelValues(reason)
	}
	for _, reason := range heartbeatSkipReasons {
		m.heartbeatsSkipped.WithLabelValues(reason)
	}
	return m
}

func (m *replayerMetrics) collectors() metrics.Set {
	return metrics.Set{m.replayed, m.deadLettered, m.applyFailures, m.commitErrors, m.lag, m.oldestAge, m.paused,
		m.heartbeatsSkipped, m.marksRecorded, m.marksFailed, m.deadTruncated}
}
