package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/metrics"
)

// Metrics holds a Store's Prometheus metrics. It implements
// prometheus.Collector; the Store never registers it anywhere, so register
// it yourself:
//
//	reg.MustRegister(st.Metrics())
//
// The metrics, all prefixed tidemark_store_:
//
//   - call_duration_seconds{op,level,result}: latency of each call as the
//     caller sees it (result is "ok", "not_found" or "error").
//   - region_duration_seconds{region,op,level}: latency of each request to
//     one region, synchronous or in the background.
//   - region_errors_total{region,op,kind}: failed region requests by kind
//     ("unavailable", "timeout", "circuit_open", "not_connected", "canceled",
//     "other").
//   - hinted_writes_total{region}: writes that a region missed and that
//     were stored as durable hints.
//   - hints_failed_total{region,reason}: rows that a region missed and that
//     are known not to be hinted: left to anti-entropy repair. reason is
//     "sink_error" (the sink refused or failed: Kafka down, its buffer
//     full), "pool_full" (every hint goroutine was busy: not attempted, so
//     that no caller waits), "no_sink" (none configured), "closing"
//     (CloseContext's deadline passed).
//   - hints_uncertain_total{region}: rows whose hint the sink did not
//     acknowledge in time: it may or may not be stored (a Kafka produce
//     that times out often lands); left to repair too.
//   - writes_rejected_total{region,op,kind}: writes a region answered with
//     an error that is not an availability failure (kind as for
//     region_errors_total, usually "other": for example the namespace's
//     table does not exist in that region). They are never hinted, since a
//     replay would be rejected too. Each is also logged. A synchronous
//     region's rejection is returned to the caller when it decides the
//     call; a background region's reaches no caller, and the region lacks
//     the write until the cause is fixed and repair runs.
//   - read_repairs_total{region,result}: background read repairs ("ok",
//     "error", "dropped" when the queue was full).
//   - breaker_state{region}: 0 closed, 1 half-open, 2 open (2 too while
//     the region is not connected).
//   - region_connected{region}: 1 once the Store is connected to the
//     region, 0 while it connects in the background (the region was
//     unreachable at Open).
//   - background_queue_depth: background writes waiting for a worker.
//   - background_queue_bytes: bytes held by those waiting writes.
//   - hints_pending: background writes whose hints wait for a hint worker
//     or are being stored (each ends hinted, failed or uncertain).
//   - debt_pending: repair debt entries waiting to be written to the home
//     region or being written (each ends recorded or overflowed).
//
// When the Store takes part in the convergence watermark
// (WatermarkConfig):
//
//   - heartbeats_total{region,result}: heartbeats sent ("ok", "error").
//   - watermark_registered_regions: regions that took the last
//     registration (repaird needs a majority to see the Store).
//   - unsettled_writes{region}: writes not yet applied, hinted or recorded
//     as debt for the region; what holds its heartbeats back.
//
// And the conflict log's, with detected_by="read_repair" (package repair's
// carry detected_by="repair", so both fit in one registry):
//
//   - tidemark_conflicts_total{namespace,detected_by}: conflicts read
//     repair found (detected_by "read_repair"): a version LWW dropped that
//     another writer made within Config.Conflicts.Window of the winner.
//   - tidemark_conflicts_dropped_total{namespace,detected_by,reason}: of
//     those, the ones not written to the log ("rate_limited",
//     "write_failed").
type Metrics struct {
	callDuration   *prometheus.HistogramVec
	regionDuration *prometheus.HistogramVec
	regionErrors   *prometheus.CounterVec
	hinted         *prometheus.CounterVec
	hintsFailed    *prometheus.CounterVec
	hintsUncertain *prometheus.CounterVec
	debtRecorded   *prometheus.CounterVec
	debtOverflow   *prometheus.CounterVec
	writesRejected *prometheus.CounterVec
	readRepairs    *prometheus.CounterVec
	breakerState   *prometheus.GaugeVec
	connected      *prometheus.GaugeVec
	queueDepth     prometheus.GaugeFunc
	queueBytes     prometheus.GaugeFunc
	hintsPending   prometheus.GaugeFunc
	debtPending    prometheus.GaugeFunc
	conflicts      *conflicts.Counters
	extra          metrics.Set // the watermark's (watermark.go), when the Store takes part
}

// gauges reads the Store's queues for the metrics that are functions.
type gauges struct {
	depth, bytes, hints, debt func() float64
}

func newMetrics(g gauges) *Metrics {
	const ns, sub = "tidemark", "store"
	gaugeFunc := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, f)
	}
	buckets := prometheus.ExponentialBuckets(0.0002, 2, 16) // 0.2ms .. ~6.5s
	return &Metrics{
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "call_duration_seconds",
			Help:    "Latency of store calls as the caller sees it.",
			Buckets: buckets,
		}, []string{"op", "level", "result"}),
		regionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "region_duration_seconds",
			Help:    "Latency of requests to one region.",
			Buckets: buckets,
		}, []string{"region", "op", "level"}),
		regionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "region_errors_total",
			Help: "Failed requests to a region, by kind.",
		}, []string{"region", "op", "kind"}),
		hinted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "hinted_writes_total",
			Help: "Rows a region missed that were stored as durable hints.",
		}, []string{"region"}),
		hintsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "hints_failed_total",
			Help: "Rows a region missed that are known not to be hinted, by reason: left to anti-entropy repair.",
		}, []string{"region", "reason"}),
		hintsUncertain: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "hints_uncertain_total",
			Help: "Rows a region missed whose hint was not acknowledged in time: it may or may not be stored.",
		}, []string{"region"}),
		writesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "writes_rejected_total",
			Help: "Region writes refused with an error that is not an availability failure: not hinted.",
		}, []string{"region", "op", "kind"}),
		readRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "read_repairs_total",
			Help: "Background read repairs of stale regions, by result.",
		}, []string{"region", "result"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "breaker_state",
			Help: "Circuit breaker state per region: 0 closed, 1 half-open, 2 open.",
		}, []string{"region"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "region_connected",
			Help: "1 once the store is connected to the region, 0 while it connects in the background.",
		}, []string{"region"}),
		debtRecorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "debt_recorded_total",
			Help: "Repair debt entries written to the home region: keys a region missed that no hint will bring it, by that region.",
		}, []string{"region"}),
		debtOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "debt_overflow_total",
			Help: "Repair debt entries not recorded (queue_full, write_failed), by the region that missed the write; its namespace gets an overflow entry (a full repair).",
		}, []string{"region", "reason"}),
		queueDepth:   gaugeFunc("background_queue_depth", "Background region writes waiting for a worker.", g.depth),
		queueBytes:   gaugeFunc("background_queue_bytes", "Key and value bytes held by background writes waiting for a worker.", g.bytes),
		hintsPending: gaugeFunc("hints_pending", "Background writes whose hints wait for a hint worker or are being stored.", g.hints),
		debtPending:  gaugeFunc("debt_pending", "Repair debt entries waiting to be written to the home region or being written.", g.debt),
		conflicts:    conflicts.NewCounters(conflicts.ByReadRepair),
	}
}

func (m *Metrics) collectors() metrics.Set {
	return metrics.Set{m.callDuration, m.regionDuration, m.regionErrors, m.hinted,
		m.hintsFailed, m.hintsUncertain, m.debtRecorded, m.debtOverflow, m.writesRejected, m.readRepairs, m.breakerState, m.connected, m.queueDepth, m.queueBytes, m.hintsPending, m.debtPending, m.conflicts.Collectors(), m.extra}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.collectors().Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.collectors().Collect(ch) }

func (m *Metrics) observeRegion(region, op, level string, d time.Duration, err error) {
	m.regionDuration.WithLabelValues(region, op, level).Observe(d.Seconds())
	if err != nil {
		m.regionErrors.WithLabelValues(region, op, errorKind(err)).Inc()
	}
}

func (m *Metrics) observeCall(op, level string, d time.Duration, err error) {
	result := "ok"
	switch {
	case err == nil:
	case isNotFound(err):
		result = "not_found"
	default:
		result = "error"
	}
	m.callDuration.WithLabelValues(op, level, result).Observe(d.Seconds())
}

func (m *Metrics) setBreaker(region string, st gobreaker.State) {
	v := 0.0
	switch st {
	case gobreaker.StateHalfOpen:
		v = 1
	case gobreaker.StateOpen:
		v = 2
	}
	m.breakerState.WithLabelValues(region).Set(v)
}

// initRegion creates region's hint series at zero, so that "no write was
// left to repair" reads 0 from the start instead of being absent.
func (m *Metrics) initRegion(region string) {
	m.hinted.WithLabelValues(region)
	m.hintsUncertain.WithLabelValues(region)
	for _, reason := range []string{lostSink, lostPoolFull, lostNoSink, lostClosing} {
		m.hintsFailed.WithLabelValues(region, reason)
	}
	m.debtRecorded.WithLabelValues(region)
	for _, reason := range []string{"queue_full", "write_failed"} {
		m.debtOverflow.WithLabelValues(region, reason)
	}
}

func (m *Metrics) setConnected(region string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.connected.WithLabelValues(region).Set(v)
}
