package repair

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/conflicts"
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
	runSegments     *prometheus.GaugeVec
	runSegmentsDone *prometheus.GaugeVec
	runsStarted     *prometheus.CounterVec
	runsFinished    *prometheus.CounterVec
	conflicts       *conflicts.Counters
	fpQueries       *prometheus.CounterVec
	segmentsInSync  *prometheus.CounterVec
	rowsInSync      *prometheus.CounterVec
	backfilled      *prometheus.CounterVec

	mu       sync.Mutex
	lastFull map[string]time.Time
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

// NewMetrics creates repair's collectors, named tidemark_repair_*, and the
// conflict log's tidemark_conflicts_total and
// tidemark_conflicts_dropped_total with detected_by="repair" (a Store's
// Metrics hold detected_by="read_repair": both fit in one registry).
func NewMetrics() *Metrics {
	return &Metrics{
		rowsScanned: counterVec("tidemark_repair_rows_scanned_total",
			"Rows read by digest scans, per namespace and region.", "namespace", "region"),
		rowsDiffering: counterVec("tidemark_repair_rows_differing_total",
			"Rows found lacking the winning version, per namespace and region.", "namespace", "region"),
		rowsWritten: counterVec("tidemark_repair_rows_written_total",
			"Rows written by repair, per namespace and region.", "namespace", "region"),
		bytesRead: counterVec("tidemark_repair_bytes_read_total",
			"Payload bytes read by repair (digest scans, value fetches and fingerprint answers), per namespace and region.", "namespace", "region"),
		valueFetches: counterVec("tidemark_repair_value_fetches_total",
			"Point reads of row values, per namespace and region.", "namespace", "region"),
		segmentDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidemark_repair_segment_duration_seconds",
			Help:    "Time to repair one segment, per namespace and outcome (ok, failed).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"namespace", "outcome"}),
		segmentFailures: counterVec("tidemark_repair_segment_failures_total",
			"Failed segment attempts, per namespace.", "namespace"),
		lastFullRepair: gaugeVec("tidemark_repair_last_full_repair_timestamp_seconds",
			"Unix time at which the last complete repair run of the namespace started: every delete older than this has reached every region (see docs/repair.md).", "namespace"),
		runSegments: gaugeVec("tidemark_repair_run_segments",
			"Segments of the namespace's current (or last) full run.", "namespace"),
		runSegmentsDone: gaugeVec("tidemark_repair_run_segments_done",
			"Segments of the namespace's current (or last) full run that are done, by any process.", "namespace"),
		runsStarted: counterVec("tidemark_repair_runs_started_total",
			"Runs this process began or joined, per namespace and kind (full, partial, incremental).", "namespace", "kind"),
		runsFinished: counterVec("tidemark_repair_runs_finished_total",
			"Runs this process ended, per namespace, kind (full, partial, incremental) and outcome (complete, incomplete, aborted, interrupted, failed).", "namespace", "kind", "outcome"),
		conflicts: conflicts.NewCounters(conflicts.ByRepair),
		fpQueries: counterVec("tidemark_repair_fingerprint_queries_total",
			"Aggregate (fingerprint) queries over token ranges, per namespace and region.", "namespace", "region"),
		segmentsInSync: counterVec("tidemark_repair_segments_in_sync_total",
			"Segments found in sync by their fingerprints, without a digest scan, per namespace.", "namespace"),
		rowsInSync: counterVec("tidemark_repair_rows_in_sync_total",
			"Rows of ranges found in sync by their fingerprints (not scanned), per namespace.", "namespace"),
		backfilled: counterVec("tidemark_repair_fingerprints_backfilled_total",
			"Rows given the fingerprint they lacked (written before the fp column), per namespace and region.", "namespace", "region"),
		lastFull: map[string]time.Time{},
	}
}

func (m *Metrics) collectors() metrics.Set {
	return metrics.Set{m.rowsScanned, m.rowsDiffering, m.rowsWritten, m.bytesRead,
		m.valueFetches, m.segmentDuration, m.segmentFailures, m.lastFullRepair,
		m.runSegments, m.runSegmentsDone, m.runsStarted, m.runsFinished, m.conflicts.Collectors(),
		m.fpQueries, m.segmentsInSync, m.rowsInSync, m.backfilled}
}

// conflictCounters returns the conflict log's counters (nil for a nil
// *Metrics: not counted).
func (m *Metrics) conflictCounters() *conflicts.Counters {
	if m == nil {
		return nil
	}
	return m.conflicts
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

func (m *Metrics) addFingerprintQuery(ns, region string, bytes int64) {
	if m == nil {
		return
	}
	m.fpQueries.WithLabelValues(ns, region).Inc()
	m.bytesRead.WithLabelValues(ns, region).Add(float64(bytes))
}

func (m *Metrics) addSegmentInSync(ns string) {
	if m != nil {
		m.segmentsInSync.WithLabelValues(ns).Inc()
	}
}

func (m *Metrics) addInSync(ns string, rows int64) {
	if m != nil {
		m.rowsInSync.WithLabelValues(ns).Add(float64(rows))
	}
}

func (m *Metrics) addBackfilled(ns, region string, rows int64) {
	if m != nil && rows > 0 {
		m.backfilled.WithLabelValues(ns, region).Add(float64(rows))
	}
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

func (m *Metrics) setSegments(ns string, total, done int) {
	if m == nil {
		return
	}
	m.runSegments.WithLabelValues(ns).Set(float64(total))
	m.runSegmentsDone.WithLabelValues(ns).Set(float64(done))
}

func (m *Metrics) runStarted(ns, kind string) {
	if m != nil {
		m.runsStarted.WithLabelValues(ns, kind).Inc()
	}
}

func (m *Metrics) runFinished(ns, kind, outcome string) {
	if m != nil {
		m.runsFinished.WithLabelValues(ns, kind, outcome).Inc()
	}
}
