package repair

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/metrics"
)

// Metrics are repair's Prometheus collectors. Create them with NewMetrics,
// register them with your registry (Metrics is a prometheus.Collector) and
// pass them in Options.Metrics; several Repairers may share one.
type Metrics struct {
	rowsScanned     *prometheus.CounterVec
	rowsDiffering   *prometheus.CounterVec
	rowsWritten     *prometheus.CounterVec
	bytesRead       *prometheus.CounterVec
	valueFetches    *prometheus.CounterVec
	segmentDuration *prometheus.HistogramVec
	segmentFailures *prometheus.CounterVec
	lastFullRepair  *prometheus.GaugeVec

	mu       sync.Mutex
	lastFull map[string]time.Time
}

// NewMetrics creates repair's collectors, named tidemark_repair_*.
func NewMetrics() *Metrics {
	return &Metrics{
		rowsScanned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_rows_scanned_total",
			Help: "Rows read by digest scans, per namespace and region.",
		}, []string{"namespace", "region"}),
		rowsDiffering: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_rows_differing_total",
			Help: "Rows found lacking the winning version, per namespace and region.",
		}, []string{"namespace", "region"}),
		rowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_rows_written_total",
			Help: "Rows written by repair, per namespace and region.",
		}, []string{"namespace", "region"}),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_bytes_read_total",
			Help: "Payload bytes read by repair (digest scans and value fetches), per namespace and region.",
		}, []string{"namespace", "region"}),
		valueFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_value_fetches_total",
			Help: "Point reads of row values, per namespace and region.",
		}, []string{"namespace", "region"}),
		segmentDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidemark_repair_segment_duration_seconds",
			Help:    "Time to repair one segment, per namespace and outcome (ok, failed).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"namespace", "outcome"}),
		segmentFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repair_segment_failures_total",
			Help: "Failed segment attempts, per namespace.",
		}, []string{"namespace"}),
		lastFullRepair: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidemark_repair_last_full_repair_timestamp_seconds",
			Help: "Unix time at which the last complete repair run of the namespace started: every delete older than this has reached every region (see docs/repair.md).",
		}, []string{"namespace"}),
		lastFull: map[string]time.Time{},
	}
}

func (m *Metrics) collectors() metrics.Set {
	return metrics.Set{m.rowsScanned, m.rowsDiffering, m.rowsWritten, m.bytesRead,
		m.valueFetches, m.segmentDuration, m.segmentFailures, m.lastFullRepair}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.collectors().Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.collectors().Collect(ch) }

// The methods below accept a nil *Metrics, so that repair can run without.

func (m *Metrics) addScanned(ns, region string, rows, bytes int64) {
	if m == nil {
		return
	}
	m.rowsScanned.WithLabelValues(ns, region).Add(float64(rows))
	m.bytesRead.WithLabelValues(ns, region).Add(float64(bytes))
}

func (m *Metrics) addFetch(ns, region string, bytes int64) {
	if m == nil {
		return
	}
	m.valueFetches.WithLabelValues(ns, region).Inc()
	m.bytesRead.WithLabelValues(ns, region).Add(float64(bytes))
}

func (m *Metrics) addDiffering(ns, region string) {
	if m != nil {
		m.rowsDiffering.WithLabelValues(ns, region).Inc()
	}
}

func (m *Metrics) addWritten(ns, region string) {
	if m != nil {
		m.rowsWritten.WithLabelValues(ns, region).Inc()
	}
}

func (m *Metrics) observeSegment(ns string, d time.Duration, ok bool) {
	if m == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "failed"
		m.segmentFailures.WithLabelValues(ns).Inc()
	}
	m.segmentDuration.WithLabelValues(ns, outcome).Observe(d.Seconds())
}

// SetLastFullRepair records that a complete run of namespace started at
// started. The gauge tidemark_repair_last_full_repair_timestamp_seconds keeps
// the latest start recorded: an older one (a run abandoned and completed
// late, or a value restored from the progress store after a newer run
// completed) does not move it back. Repairer.Run calls it when a run
// completes; a long-running process should also call it at startup with
// [ProgressStore.LastFinished]'s StartedAt, so that the series exists again
// after a restart. A nil *Metrics does nothing.
func (m *Metrics) SetLastFullRepair(namespace string, started time.Time) {
	if m == nil || started.IsZero() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if last, ok := m.lastFull[namespace]; ok && !started.After(last) {
		return
	}
	m.lastFull[namespace] = started
	m.lastFullRepair.WithLabelValues(namespace).Set(float64(started.UnixNano()) / 1e9)
}
