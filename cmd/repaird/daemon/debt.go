package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/repair"
)

// Repair debt (docs/repair.md, "Repair debt"): the keys a region missed
// that no hint brings, recorded by the stores whose home is this daemon's
// home region in its keyspace. The "debt" worker drains them every
// repair.debt_interval: each key read in every region and written where it
// is missing (repair.Repairer.DrainDebt), the entry removed once every
// region holds the winner. An overflow entry (debt a store could not
// record) starts a full run of its namespace and is removed once a full
// run that started after it has completed.

// debtBatch bounds the entries one pass reads per target region.
const debtBatch = 5000

// DebtView is one target region's repair debt, in /status and /v1/debt.
type DebtView struct {
	// Region is the region that lacks the keys.
	Region string `json:"region"`
	// Keys is the entries pending after the last pass, per namespace.
	Keys map[string]int `json:"keys"`
	// OldestAgeSeconds is the age of the oldest pending entry (0: none).
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Repaired is the entries repaired since the daemon started.
	Repaired int64 `json:"repaired"`
	// Overflows are the namespaces with an overflow entry: some debt was
	// not recorded, a full run covers it.
	Overflows []string `json:"overflows,omitempty"`
	// LastPass is when the last pass over this region's debt ended.
	LastPass time.Time `json:"last_pass,omitzero"`
	// Error is the last pass's error, if any.
	Error string `json:"error,omitempty"`
}

// debtBoard holds the debt worker's state for /status and the metrics.
type debtBoard struct {
	mu      sync.Mutex
	regions map[string]*DebtView
	oldest  map[string]time.Time
	// repaired counts entries repaired and rows read by region.
	repaired *prometheus.CounterVec
	rowsRead *prometheus.CounterVec
}

func newDebtBoard() *debtBoard {
	return &debtBoard{regions: map[string]*DebtView{}, oldest: map[string]time.Time{},
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repaird_debt_repaired_total",
			Help: "Repair debt entries repaired (the key written where missing, or found converged) and removed, by the region that lacked the key.",
		}, []string{"region"}),
		rowsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_repaird_debt_rows_read_total",
			Help: "Point reads the repair debt drain made (one per key and region), by the region that lacked the keys.",
		}, []string{"region"}),
	}
}

func (b *debtBoard) view(region string) *DebtView {
	v := b.regions[region]
	if v == nil {
		v = &DebtView{Region: region, Keys: map[string]int{}}
		b.regions[region] = v
	}
	return v
}

func (b *debtBoard) record(region string, rep repair.DrainReport, err error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.view(region)
	v.Keys = copyCounts(rep.PendingByNamespace)
	v.Repaired += int64(rep.Repaired)
	v.Overflows = v.Overflows[:0]
	for _, o := range rep.Overflows {
		v.Overflows = append(v.Overflows, o.Namespace)
	}
	b.oldest[region] = rep.Oldest
	v.LastPass, v.Error = now, ""
	if err != nil {
		v.Error = err.Error()
	}
	b.repaired.WithLabelValues(region).Add(float64(rep.Repaired))
	b.rowsRead.WithLabelValues(region).Add(float64(rep.RowsRead))
}

// views returns every region's view, in config order.
func (b *debtBoard) views(cfg *config.Config, now time.Time) []DebtView {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []DebtView
	for _, r := range cfg.Regions {
		v := *b.view(r.Name)
		v.Keys = copyCounts(v.Keys)
		v.Overflows = append([]string(nil), v.Overflows...)
		if o := b.oldest[r.Name]; !o.IsZero() {
			v.OldestAgeSeconds = now.Sub(o).Seconds()
		}
		out = append(out, v)
	}
	return out
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// debtInterval is repair.debt_interval with its default; 0: never.
func debtInterval(cfg *config.Config) time.Duration {
	switch d := cfg.Repair.DebtInterval; {
	case d < 0:
		return 0
	case d == 0:
		return config.DefaultDebtInterval
	default:
		return d
	}
}

// drainDebt is the "debt" worker: a pass over every region's debt in the
// home region's keyspace every debt interval, until ctx ends.
func (d *Daemon) drainDebt(ctx context.Context) error {
	every := debtInterval(d.cfg)
	for {
		d.debtPass(ctx)
		if !wait.Sleep(ctx, every) {
			return nil
		}
	}
}

// debtPass drains each target region's debt once. Regions that cannot be
// reached make the pass wait for the next one.
func (d *Daemon) debtPass(ctx context.Context) {
	regions, err := d.openRegions(ctx)
	if err != nil {
		d.log.Debug("repaird: repair debt: regions not reachable; next pass", "err", err)
		return
	}
	home, err := d.sessions.Get(ctx, d.cfg.Home)
	if err != nil {
		return
	}
	debt, err := repair.NewCQLDebt(home, d.cfg.Keyspace)
	if err != nil {
		d.log.Error("repaird: repair debt", "err", err)
		return
	}
	opts := RepairOptions(d.cfg, "")
	opts.Metrics, opts.Logger = d.metrics, d.log
	rep, err := repair.New(regions, opts)
	if err != nil {
		d.log.Error("repaird: repair debt", "err", err)
		return
	}
	for _, r := range d.cfg.Regions {
		pass, err := rep.DrainDebt(ctx, debt, r.Name, debtBatch)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.log.Warn("repaird: repair debt: some keys not repaired; next pass", "region", r.Name, "err", err)
		}
		if pass.Repaired > 0 {
			d.log.Info("repaird: repair debt repaired", "region", r.Name, "keys", pass.Repaired,
				"rows_read", pass.RowsRead, "rows_written", pass.RowsWritten, "pending", pass.Pending)
		}
		d.handleOverflows(ctx, debt, pass.Overflows)
		d.debt.record(r.Name, pass, err, d.now())
	}
}

// handleOverflows starts a full run of each overflowed namespace that
// this daemon repairs, and removes the overflow entry once a full run that
// started after it has completed.
func (d *Daemon) handleOverflows(ctx context.Context, debt repair.DebtStore, overflows []repair.DebtEntry) {
	for _, o := range overflows {
		trigger, ok := d.triggers[o.Namespace]
		if !ok {
			d.log.Warn("repaird: repair debt overflowed for a namespace this daemon does not repair; repair it with a full run",
				"namespace", o.Namespace, "region", o.Target)
			continue
		}
		last, _ := d.status.lastFull(o.Namespace)
		if last.After(o.At) {
			if err := debt.RemoveDebt(ctx, o); err != nil {
				d.log.Warn("repaird: remove an overflow entry", "namespace", o.Namespace, "err", err)
			}
			continue
		}
		select {
		case trigger <- struct{}{}:
			d.log.Warn("repaird: repair debt overflowed: starting a full run", "namespace", o.Namespace, "region", o.Target,
				"overflowed_at", o.At)
		default: // a run is already due
		}
	}
}

// debtRecorder records the hints the daemon's replayers dead-letter as
// rejected as repair debt in the home region's keyspace, where the debt
// worker drains it (hints.ReplayerConfig.Debt).
type debtRecorder struct{ d *Daemon }

func (r debtRecorder) RecordDebt(ctx context.Context, h record.Hint, reason string) error {
	home, err := r.d.sessions.Get(ctx, r.d.cfg.Home)
	if err != nil {
		return err
	}
	debt, err := repair.NewCQLDebt(home, r.d.cfg.Keyspace)
	if err != nil {
		return err
	}
	return debt.AddDebt(ctx, repair.NewDebtEntry(h.Target, h.Namespace, h.PK, h.CK, h.Timestamp, reason, r.d.now()))
}
