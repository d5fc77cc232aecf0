package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/metrics"
)

// Run states reported by tidemark_repaird_run_state.
var runStates = []string{"idle", "running", "paused"}

// daemonMetrics are repaird's own collectors (tidemark_repaird_*), beside
// repair's and the hint replayers'. The gauges are computed at every
// scrape from the daemon's state.
type daemonMetrics struct {
	d        *Daemon
	actions  *prometheus.CounterVec
	regionUp *prometheus.Desc
	runState *prometheus.Desc
	budget   *prometheus.Desc
	overdue  *prometheus.Desc
	unsigned *prometheus.Desc
	debtKeys *prometheus.Desc
	debtAge  *prometheus.Desc
}

// BudgetWarning is the share of the tombstone retention that the last
// full repair's age may reach before repaird warns (log, /status,
// tidemark_repaird_full_repair_overdue).
const BudgetWarning = 0.9

func newDaemonMetrics(d *Daemon) *daemonMetrics {
	return &daemonMetrics{
		d: d,
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repaird_control_actions_total",
			Help: "Control API requests, by action (start, pause, resume, abort, tune) and result (ok, unauthorized, forbidden, invalid, not_found, conflict, error).",
		}, []string{"action", "result"}),
		regionUp: prometheus.NewDesc("tidemark_repaird_region_connected",
			"1 while the daemon holds a session to the region, 0 while it cannot connect.", []string{"region"}, nil),
		runState: prometheus.NewDesc("tidemark_repaird_run_state",
			"1 for the state of the namespace's full run in this daemon (idle, running, paused), 0 for the others.", []string{"namespace", "state"}, nil),
		budget: prometheus.NewDesc("tidemark_repaird_full_repair_budget_ratio",
			"Age of the last full repair (from its start) divided by the tombstone retention; at 1 deleted rows may resurrect. Absent until a full repair is known.", []string{"namespace"}, nil),
		overdue: prometheus.NewDesc("tidemark_repaird_full_repair_overdue",
			"1 when the last full repair's age passed 90% of the tombstone retention (or none is known after 90% of it since the daemon started).", []string{"namespace"}, nil),
		unsigned: prometheus.NewDesc("tidemark_repaird_unsigned_hints_accepted",
			"1 when hmac_keys are listed but require_hmac: false lets unsigned hints be applied.", nil, nil),
		debtKeys: prometheus.NewDesc("tidemark_repaird_debt_keys",
			"Repair debt entries pending after the last pass (keys the region lacks that no hint brings), by the region that lacks them and namespace.", []string{"region", "namespace"}, nil),
		debtAge: prometheus.NewDesc("tidemark_repaird_debt_oldest_age_seconds",
			"Age of the oldest repair debt entry pending after the last pass (0: none), by the region that lacks the key.", []string{"region"}, nil),
	}
}

func (m *daemonMetrics) collectors() metrics.Set {
	return metrics.Set{m.actions, m.d.debt.repaired, m.d.debt.rowsRead, m.d.wm.converged, m.d.wm.lag, m.d.wm.took, m.d.wm.exits}
}

// Describe implements prometheus.Collector.
func (m *daemonMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.collectors().Describe(ch)
	for _, d := range []*prometheus.Desc{m.regionUp, m.runState, m.budget, m.overdue, m.unsigned, m.debtKeys, m.debtAge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *daemonMetrics) Collect(ch chan<- prometheus.Metric) {
	m.collectors().Collect(ch)
	d := m.d
	for name, r := range d.sessions.State() {
		ch <- prometheus.MustNewConstMetric(m.regionUp, prometheus.GaugeValue, bool01(r.Connected), name)
	}
	for _, ns := range d.cfg.Names() {
		state := d.runState(ns)
		for _, s := range runStates {
			ch <- prometheus.MustNewConstMetric(m.runState, prometheus.GaugeValue, bool01(s == state), ns, s)
		}
		b := d.budget(ns)
		if b.known {
			ch <- prometheus.MustNewConstMetric(m.budget, prometheus.GaugeValue, b.ratio, ns)
		}
		ch <- prometheus.MustNewConstMetric(m.overdue, prometheus.GaugeValue, bool01(b.overdue), ns)
	}
	ch <- prometheus.MustNewConstMetric(m.unsigned, prometheus.GaugeValue, bool01(d.cfg.Hints.UnsignedWarning() != ""))
	now := d.now()
	for _, v := range d.debt.views(d.cfg, now) {
		for ns, n := range v.Keys {
			ch <- prometheus.MustNewConstMetric(m.debtKeys, prometheus.GaugeValue, float64(n), v.Region, ns)
		}
		ch <- prometheus.MustNewConstMetric(m.debtAge, prometheus.GaugeValue, v.OldestAgeSeconds, v.Region)
	}
}

func (m *daemonMetrics) action(action, result string) {
	m.actions.WithLabelValues(action, result).Inc()
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// runState is the state of the namespace's full run in this daemon.
func (d *Daemon) runState(ns string) string {
	a := d.runs.get(ns, kindFull)
	if a == nil {
		return "idle"
	}
	if a.ctl.State().Paused {
		return "paused"
	}
	return "running"
}

// budgetState is the last full repair's age against the retention.
type budgetState struct {
	known     bool
	age       time.Duration
	retention time.Duration
	ratio     float64
	overdue   bool
}

// budget measures the namespace's last full repair against its
// tombstone retention: the one its tables record when a run has read it,
// the configured one otherwise.
func (d *Daemon) budget(ns string) budgetState {
	ret := d.cfg.Schedule(ns).Retention
	last, tableRet := d.status.lastFull(ns)
	if tableRet > 0 {
		ret = tableRet
	}
	b := budgetState{retention: ret}
	now := d.now()
	if last.IsZero() {
		b.overdue = now.Sub(d.status.startedAt()) > time.Duration(BudgetWarning*float64(ret))
		return b
	}
	b.known, b.age = true, now.Sub(last)
	b.ratio = b.age.Seconds() / ret.Seconds()
	b.overdue = b.ratio > BudgetWarning
	return b
}
