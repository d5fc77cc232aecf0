package daemon

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/internal/watermark"
	"github.com/tidemark/tidemark/repair"
)

// The convergence watermark worker (docs/design.md, "The convergence
// watermark"): every watermark.interval it reads the stores'
// registrations from every region (a majority must answer: a store
// registers in every region it can reach, a majority at least before its
// registration counts), then per region the marks its replayers recorded,
// then the repair debt owed to it in every region, and combines them
// (internal/watermark). Marks are read before debt: a write settled as
// debt was recorded before the heartbeat that passed it, so a pass that
// sees that heartbeat's mark sees the debt too.
//
// The watermark never moves backwards, and while any debt is owed to a
// region (or cannot be read) it does not move at all: an entry's own
// timestamp may be newer than a write it stands for (a key lost twice
// keeps the later loss), so only the watermark published before the debt
// appeared is known to be below every write the debt covers.

// marksTTL is how long a mark lives without a newer one: well beyond a
// store's registration, which retires it sooner.
const marksTTL = 10 * time.Minute

// WatermarkView is one region's watermark on /status.
type WatermarkView struct {
	Region string `json:"region"`
	// ConvergedBefore is the watermark: the region holds every write a
	// live store acknowledged with a version below it. Zero: none yet.
	ConvergedBefore time.Time `json:"converged_before,omitzero"`
	// LagSeconds is how far it trails the last computation.
	LagSeconds float64 `json:"lag_seconds"`
	// Limit names what holds it: a store's producer id, "debt", "clock
	// skew" (nothing else does: it trails the registrations' read by
	// watermark.clock_skew), or "" before the first computation.
	Limit string `json:"limit,omitempty"`
	// Producers is how many live stores were counted, Retired how many
	// closed ones were left out.
	Producers int `json:"producers"`
	Retired   int `json:"retired,omitempty"`
	// ComputedAt is the last computation that got this far; Error why the
	// last one did not, if it did not.
	ComputedAt time.Time `json:"computed_at,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// watermarks is the worker's state.
type watermarks struct {
	mu      sync.Mutex
	views   map[string]*WatermarkView
	last    map[string]int64 // published, µs
	loaded  bool
	tableOK map[string]bool // regions whose watermark table exists
	debts   map[*gocql.Session]*repair.CQLDebt

	converged *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
}

func newWatermarks() *watermarks {
	return &watermarks{views: map[string]*WatermarkView{}, last: map[string]int64{}, tableOK: map[string]bool{}, debts: map[*gocql.Session]*repair.CQLDebt{},
		converged: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidemark_region_converged_timestamp_seconds",
			Help: "The region's convergence watermark (Unix seconds): it holds every write a live store acknowledged with a version below it.",
		}, []string{"region"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidemark_region_convergence_lag_seconds",
			Help: "How far the region's convergence watermark trails the time of its last computation.",
		}, []string{"region"}),
	}
}

func (w *watermarks) view(region string) *WatermarkView {
	v := w.views[region]
	if v == nil {
		v = &WatermarkView{Region: region}
		w.views[region] = v
	}
	return v
}

// snapshot is the regions' views, in configuration order.
func (w *watermarks) snapshot(regions []string) []WatermarkView {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WatermarkView, 0, len(regions))
	for _, r := range regions {
		out = append(out, *w.view(r))
	}
	return out
}

// runWatermarks is the "watermark" worker.
func (d *Daemon) runWatermarks(ctx context.Context) error {
	every := d.cfg.Watermark.Every()
	for {
		d.watermarkPass(ctx)
		if !wait.Sleep(ctx, every) {
			return nil
		}
	}
}

// watermarkPass computes and publishes every region's watermark once.
func (d *Daemon) watermarkPass(ctx context.Context) {
	w := d.wm
	regions := d.regionNames()
	fail := func(region, msg string) {
		w.mu.Lock()
		w.view(region).Error = msg
		w.mu.Unlock()
	}
	if !w.loaded {
		if err := d.loadPublished(ctx); err != nil {
			for _, r := range regions {
				fail(r, "reading the published watermarks: "+err.Error())
			}
			return
		}
	}
	readAt := d.now()
	producers, homes, err := d.readProducers(ctx)
	if err != nil {
		for _, r := range regions {
			fail(r, err.Error())
		}
		return
	}
	ceiling := readAt.Add(-d.cfg.Watermark.Skew()).UnixMicro()
	for _, r := range regions {
		marks, err := d.readMarks(ctx, r)
		if err != nil {
			fail(r, fmt.Sprintf("reading the marks: %v", err))
			continue
		}
		owed, err := d.debtOwed(ctx, r, homes)
		res := watermark.Compute(producers, marks, 0, readAt)
		before, limit := res.Before, res.Limit
		if before > ceiling {
			before, limit = ceiling, "clock skew"
		}
		w.mu.Lock()
		last := w.last[r]
		w.mu.Unlock()
		if owed || err != nil {
			before, limit = min(before, last), "debt"
		}
		v := WatermarkView{Region: r, Limit: limit, Producers: res.Live, Retired: res.Retired, ComputedAt: readAt}
		if err != nil {
			v.Error = fmt.Sprintf("reading the repair debt: %v", err)
		}
		if before > last {
			if perr := d.publish(ctx, r, before, readAt, limit); perr != nil {
				v.Error = fmt.Sprintf("publishing: %v", perr)
			}
			w.mu.Lock()
			w.last[r] = before
			w.mu.Unlock()
			last = before
		}
		if last > 0 {
			v.ConvergedBefore = time.UnixMicro(last).UTC()
			v.LagSeconds = readAt.Sub(v.ConvergedBefore).Seconds()
			w.converged.WithLabelValues(r).Set(float64(last) / 1e6)
			w.lag.WithLabelValues(r).Set(v.LagSeconds)
		}
		w.mu.Lock()
		*w.view(r) = v
		w.mu.Unlock()
	}
}

func (d *Daemon) regionNames() []string {
	out := make([]string, len(d.cfg.Regions))
	for i, r := range d.cfg.Regions {
		out[i] = r.Name
	}
	return out
}

// selectValues reads one partition of a table of the namespaces' shape.
func selectValues(keyspace, table string) string {
	return fmt.Sprintf(`SELECT ck, value, writetime(value) FROM %s.%s WHERE pk = ?`, keyspace, table)
}

// missingTable reports a read of a table that does not exist (yet):
// Cassandra 5.0 says "table … does not exist", earlier versions
// "unconfigured table".
func missingTable(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "unconfigured table") || (strings.Contains(msg, "table ") && strings.Contains(msg, "does not exist"))
}

// scanPartition calls f for every row of one partition of table in region.
func (d *Daemon) scanPartition(ctx context.Context, region, table string, pk []byte, f func(ck, value []byte, ts int64)) error {
	s, err := d.sessions.Get(ctx, region)
	if err != nil {
		return err
	}
	iter := s.Query(selectValues(d.cfg.Keyspace, table), pk).Consistency(gocql.LocalQuorum).PageSize(1000).IterContext(ctx)
	var ck, value []byte
	var ts int64
	for iter.Scan(&ck, &value, &ts) {
		f(bytes.Clone(ck), bytes.Clone(value), ts)
	}
	if err := iter.Close(); err != nil && !missingTable(err) {
		return err
	}
	return nil
}

// readProducers reads the registrations from every region and merges
// them; it fails unless a majority of the regions answered. homes are the
// regions whose keyspaces may hold repair debt that counts: the stores'
// home regions, and this daemon's (its replayers record debt there).
func (d *Daemon) readProducers(ctx context.Context) (_ []watermark.Producer, homes map[string]bool, _ error) {
	type answer struct {
		rows map[string]schema.Producer
		err  error
	}
	regions := d.regionNames()
	answers := make([]answer, len(regions))
	var wg sync.WaitGroup
	for i, r := range regions {
		wg.Go(func() {
			rows := map[string]schema.Producer{}
			err := d.scanPartition(ctx, r, schema.ProducersTable, schema.ProducersPartition, func(ck, value []byte, _ int64) {
				if p, err := schema.DecodeProducer(value); err == nil {
					rows[string(ck)] = p
				}
			})
			answers[i] = answer{rows, err}
		})
	}
	wg.Wait()
	merged := map[string]watermark.Producer{}
	homes = map[string]bool{d.cfg.Home: true}
	ok := 0
	var errs []string
	for i, a := range answers {
		if a.err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", regions[i], a.err))
			continue
		}
		ok++
		for id, p := range a.rows {
			m, seen := merged[id]
			if !seen || p.Registered < m.Registered {
				m.Registered = p.Registered
			}
			m.ID, m.Closed = id, m.Closed || p.Closed
			merged[id] = m
			homes[p.Home] = true
		}
	}
	if ok <= len(regions)/2 {
		return nil, nil, fmt.Errorf("reading the store registrations: %d of %d regions answered, a majority is needed: %s",
			ok, len(regions), strings.Join(errs, "; "))
	}
	out := make([]watermark.Producer, 0, len(merged))
	for _, p := range merged {
		out = append(out, p)
	}
	return out, homes, nil
}

// readMarks reads region's marks from its own keyspace.
func (d *Daemon) readMarks(ctx context.Context, region string) ([]watermark.Mark, error) {
	var out []watermark.Mark
	err := d.scanPartition(ctx, region, schema.MarksTable, schema.MarksPartition(region), func(ck, value []byte, _ int64) {
		producer, partition, err := schema.DecodeMarkKey(ck)
		if err != nil {
			return
		}
		m, err := schema.DecodeMark(value)
		if err != nil {
			return
		}
		out = append(out, watermark.Mark{Producer: producer, Partition: partition, Partitions: m.Partitions,
			Before: m.Before, Closing: m.Closing, SentAt: m.SentAt})
	})
	return out, err
}

// debtOwed reports whether the keyspace of any region in homes holds
// repair debt owed to target. A region whose debt cannot be read counts
// as owing (the error says why).
func (d *Daemon) debtOwed(ctx context.Context, target string, homes map[string]bool) (bool, error) {
	for _, r := range d.regionNames() {
		if !homes[r] {
			continue
		}
		s, err := d.sessions.Get(ctx, r)
		if err != nil {
			return true, err
		}
		d.wm.mu.Lock()
		debt := d.wm.debts[s]
		if debt == nil {
			if debt, err = repair.NewCQLDebt(s, d.cfg.Keyspace); err != nil {
				d.wm.mu.Unlock()
				return true, err
			}
			d.wm.debts[s] = debt
		}
		d.wm.mu.Unlock()
		entries, err := debt.ListDebt(ctx, target, 1)
		if err != nil {
			return true, fmt.Errorf("region %s: %w", r, err)
		}
		if len(entries) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// loadPublished starts the worker from the newest published watermarks,
// so that a restart neither moves one back nor forgets one it must hold
// while debt is owed.
func (d *Daemon) loadPublished(ctx context.Context) error {
	w := d.wm
	answered := 0
	var errs []string
	for _, r := range d.regionNames() {
		err := d.scanPartition(ctx, r, schema.WatermarksTable, schema.WatermarksPartition, func(ck, value []byte, _ int64) {
			wm, err := schema.DecodeWatermark(value)
			if err != nil {
				return
			}
			w.mu.Lock()
			w.last[string(ck)] = max(w.last[string(ck)], wm.Before)
			w.mu.Unlock()
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r, err))
			continue
		}
		answered++
	}
	if answered <= len(d.cfg.Regions)/2 {
		return fmt.Errorf("%d of %d regions answered: %s", answered, len(d.cfg.Regions), strings.Join(errs, "; "))
	}
	w.loaded = true
	return nil
}

// publish writes region's watermark to every region's keyspace, with the
// watermark as the row's timestamp (so that a slower daemon's older value
// never replaces it). It fails only if no region took it.
func (d *Daemon) publish(ctx context.Context, region string, before int64, at time.Time, limit string) error {
	cells := schema.Cells{Value: schema.EncodeWatermark(schema.Watermark{Before: before, ComputedAt: at, Limit: limit})}
	cells.Digest = schema.Digest(false, cells.Value)
	var errs []string
	for _, r := range d.regionNames() {
		if err := d.insert(ctx, r, schema.WatermarksTable, schema.WatermarksPartition, []byte(region), cells, before, 0); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r, err))
		}
	}
	if len(errs) == len(d.cfg.Regions) {
		return fmt.Errorf("no region took the watermark: %s", strings.Join(errs, "; "))
	}
	return nil
}

// insert writes one row of a watermark table in region, creating the
// table the first time.
func (d *Daemon) insert(ctx context.Context, region, table string, pk, ck []byte, cells schema.Cells, ts int64, ttl int) error {
	s, err := d.sessions.Get(ctx, region)
	if err != nil {
		return err
	}
	key := region + "/" + table
	d.wm.mu.Lock()
	ok := d.wm.tableOK[key]
	d.wm.mu.Unlock()
	if !ok {
		if err := s.Query(schema.CreateTable(d.cfg.Keyspace, table, schema.WatermarkRetention)).ExecContext(ctx); err != nil {
			return fmt.Errorf("create %s.%s: %w", d.cfg.Keyspace, table, err)
		}
		d.wm.mu.Lock()
		d.wm.tableOK[key] = true
		d.wm.mu.Unlock()
	}
	return s.Query(schema.Insert(d.cfg.Keyspace, table), schema.InsertValues(pk, ck, cells, ts, ttl)...).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
}

// markRecorder records the marks of the daemon's replayers in the region
// they replay to (hints.ReplayerConfig.Marks), each with its heartbeat's
// Before as timestamp, so that an older mark never replaces a newer one.
type markRecorder struct{ d *Daemon }

func (m markRecorder) RecordMarks(ctx context.Context, region string, marks []hints.Mark) error {
	var errs []string
	for _, mk := range marks {
		cells := schema.Cells{Value: schema.EncodeMark(schema.Mark{Before: mk.Before, Partitions: mk.Partitions, Closing: mk.Closing, SentAt: mk.SentAt}),
			Expires: schema.ExpiryAfter(m.d.now(), marksTTL)}
		cells.Digest = schema.Digest(false, cells.Value)
		if err := m.d.insert(ctx, region, schema.MarksTable, schema.MarksPartition(region),
			schema.EncodeMarkKey(mk.Producer, mk.Partition), cells, mk.Before, schema.TTLSeconds(marksTTL)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("record %d of %d marks in region %s: %s", len(errs), len(marks), region, errs[0])
	}
	return nil
}
