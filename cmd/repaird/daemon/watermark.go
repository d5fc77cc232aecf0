package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/cluster"
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
// The regions are read and written concurrently, each request under
// watermark.timeout: a region that cannot be reached fails its own part
// of a computation quickly, and delays the others' by about that timeout,
// not by a request's.
//
// The watermark never moves backwards, and while any debt is owed to a
// region (or cannot be read) it does not move at all: an entry's own
// timestamp may be newer than a write it stands for (a key lost twice
// keeps the later loss), so only the watermark published before the debt
// appeared is known to be below every write the debt covers.

// marksTTL is how long a mark lives without a newer one: well beyond a
// store's registration, which retires it sooner. The mark of a closing
// heartbeat lives as long as the closed store's session
// (schema.SessionTTL): the session holds the watermark until the closing
// marks are seen in every partition, so they must outlive it.
const marksTTL = 10 * time.Minute

// markTTL is how long mk is kept.
func markTTL(mk hints.Mark) time.Duration {
	if mk.Closing {
		return schema.SessionTTL
	}
	return marksTTL
}

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
	// exited holds, by store id, when this daemon first recorded the
	// store's exit (exitRecorded).
	exited map[string]time.Time

	converged *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
	took      prometheus.Histogram
	exits     prometheus.Counter
}

func newWatermarks() *watermarks {
	return &watermarks{views: map[string]*WatermarkView{}, last: map[string]int64{}, tableOK: map[string]bool{}, debts: map[*gocql.Session]*repair.CQLDebt{}, exited: map[string]time.Time{},
		converged: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidemark_region_converged_timestamp_seconds",
			Help: "The region's convergence watermark (Unix seconds): it holds every write a live store acknowledged with a version below it.",
		}, []string{"region"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidemark_region_convergence_lag_seconds",
			Help: "How far the region's convergence watermark trails the time of its last computation.",
		}, []string{"region"}),
		took: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_watermark_computation_seconds",
			Help:    "How long one computation of every region's watermark took (reads, then publication).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		exits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_watermark_unclean_exits_total",
			Help: "Stores this daemon found stopped without closing, whose unsettled writes it recorded as overflow repair debt (full repairs).",
		}),
	}
}

// exitRecorded notes that this daemon recorded the debt of store id's
// unclean exit and reports whether it is the first time; the first time
// is counted in tidemark_watermark_unclean_exits_total. A store's exit is
// recorded again when its exited mark did not reach a majority of the
// regions. Notes are kept as long as a session row lives
// (schema.SessionTTL): after that no region can hold the session. at is
// the time of the recording, on the daemon's clock.
func (w *watermarks) exitRecorded(id string, at time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, first := range w.exited {
		if at.Sub(first) > schema.SessionTTL {
			delete(w.exited, k)
		}
	}
	if _, seen := w.exited[id]; seen {
		return false
	}
	w.exited[id] = at
	w.exits.Inc()
	return true
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
	start := time.Now()
	defer func() { w.took.Observe(time.Since(start).Seconds()) }()
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
	if err == nil {
		producers, err = d.unclean(ctx, producers, homes, readAt)
	}
	if err != nil {
		for _, r := range regions {
			fail(r, err.Error())
		}
		return
	}
	ceiling := readAt.Add(-d.cfg.Watermark.Skew()).UnixMicro()
	var wg sync.WaitGroup
	for _, r := range regions {
		wg.Go(func() { d.regionWatermark(ctx, r, producers, homes, readAt, ceiling) })
	}
	wg.Wait()
}

// unclean reads the stores' sessions and records the exits of those that
// stopped without closing (exits.go), before any watermark is computed
// without them, and returns the producers to compute with: producers and
// the stores whose registration is gone but whose exit is not yet due
// (they hold the watermarks as if live). The home regions of all sessions
// join homes, so that the debt recorded for an exit holds the watermarks
// until it is drained.
func (d *Daemon) unclean(ctx context.Context, producers []watermark.Producer, homes map[string]bool, readAt time.Time) ([]watermark.Producer, error) {
	sessions, err := d.readSessions(ctx)
	if err != nil {
		return nil, err
	}
	registered := make(map[string]bool, len(producers))
	for _, p := range producers {
		registered[p.ID] = true
	}
	for _, s := range sessions {
		homes[s.Home] = true
	}
	exits, waiting := watermark.Exits(sessions, registered, readAt, d.cfg.Watermark.Skew())
	if err := d.recordExits(ctx, exits); err != nil {
		return nil, err
	}
	for _, s := range waiting {
		producers = append(producers, s.Waiting())
	}
	return producers, nil
}

// regionWatermark computes and publishes region's watermark from the
// registrations read at readAt.
func (d *Daemon) regionWatermark(ctx context.Context, region string, producers []watermark.Producer, homes map[string]bool, readAt time.Time, ceiling int64) {
	w := d.wm
	marks, err := d.readMarks(ctx, region)
	if err != nil {
		w.mu.Lock()
		w.view(region).Error = fmt.Sprintf("reading the marks: %v", err)
		w.mu.Unlock()
		return
	}
	owed, err := d.debtOwed(ctx, region, homes)
	res := watermark.Compute(producers, marks, 0, readAt)
	before, limit := res.Before, res.Limit
	if before > ceiling {
		before, limit = ceiling, "clock skew"
	}
	w.mu.Lock()
	last := w.last[region]
	w.mu.Unlock()
	if owed || err != nil {
		before, limit = min(before, last), "debt"
	}
	v := WatermarkView{Region: region, Limit: limit, Producers: res.Live, Retired: res.Retired, ComputedAt: readAt}
	if err != nil {
		v.Error = fmt.Sprintf("reading the repair debt: %v", err)
	}
	if before > last {
		if perr := d.publish(ctx, region, before, readAt, limit); perr != nil {
			v.Error = fmt.Sprintf("publishing: %v", perr)
		}
		w.mu.Lock()
		w.last[region] = max(w.last[region], before)
		last = w.last[region]
		w.mu.Unlock()
	}
	if last > 0 {
		v.ConvergedBefore = time.UnixMicro(last).UTC()
		v.LagSeconds = readAt.Sub(v.ConvergedBefore).Seconds()
		w.converged.WithLabelValues(region).Set(float64(last) / 1e6)
		w.lag.WithLabelValues(region).Set(v.LagSeconds)
	}
	w.mu.Lock()
	*w.view(region) = v
	w.mu.Unlock()
}

// eachRegion calls f for every region in regions concurrently (i is the
// region's index in regions), each with a context ending after
// watermark.timeout, and returns f's errors in regions' order.
func (d *Daemon) eachRegion(ctx context.Context, regions []string, f func(ctx context.Context, i int, region string) error) []error {
	errs := make([]error, len(regions))
	var wg sync.WaitGroup
	for i, r := range regions {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, d.cfg.Watermark.RequestTimeout())
			defer cancel()
			errs[i] = f(ctx, i, r)
		})
	}
	wg.Wait()
	return errs
}

// answeredBy returns how many of errs are nil, and the others named by
// region.
func answeredBy(regions []string, errs []error) (int, string) {
	ok := 0
	var failed []string
	for i, err := range errs {
		if err == nil {
			ok++
			continue
		}
		failed = append(failed, fmt.Sprintf("%s: %v", regions[i], err))
	}
	return ok, strings.Join(failed, "; ")
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
	if err := iter.Close(); err != nil && !cluster.IsNoTable(err, table) {
		return err
	}
	return nil
}

// readProducers reads the registrations from every region and merges
// them; it fails unless a majority of the regions answered. homes are the
// regions whose keyspaces may hold repair debt that counts: the stores'
// home regions, and this daemon's (its replayers record debt there).
func (d *Daemon) readProducers(ctx context.Context) (_ []watermark.Producer, homes map[string]bool, _ error) {
	answers := make([]map[string]schema.Producer, len(d.cfg.Regions))
	answered, err := d.readMajority(ctx, "the store registrations", schema.ProducersPartition, func(i int, ck, value []byte, _ int64) {
		if p, err := schema.DecodeProducer(value); err == nil {
			if answers[i] == nil {
				answers[i] = map[string]schema.Producer{}
			}
			answers[i][string(ck)] = p
		}
	})
	if err != nil {
		return nil, nil, err
	}
	merged := map[string]watermark.Producer{}
	homes = map[string]bool{d.cfg.Home: true}
	for i, rows := range answers {
		if !answered[i] {
			continue
		}
		for id, p := range rows {
			m, seen := merged[id]
			if !seen || p.Registered < m.Registered {
				m.Registered = p.Registered
			}
			m.ID, m.Closed = id, m.Closed || p.Closed
			merged[id] = m
			homes[p.Home] = true
		}
	}
	out := make([]watermark.Producer, 0, len(merged))
	for _, p := range merged {
		out = append(out, p)
	}
	return out, homes, nil
}

// readMajority scans one partition of the producers table (what names
// it in errors) in every region concurrently, calling row with the
// region's index for each of its rows (one region's rows from one
// goroutine), and fails unless a majority of the regions answered: a
// store registers in every region it can reach, a majority at least
// before it counts. answered says which regions did.
func (d *Daemon) readMajority(ctx context.Context, what string, pk []byte, row func(i int, ck, value []byte, ts int64)) (answered []bool, _ error) {
	regions := d.regionNames()
	errs := d.eachRegion(ctx, regions, func(ctx context.Context, i int, r string) error {
		return d.scanPartition(ctx, r, schema.ProducersTable, pk, func(ck, value []byte, ts int64) { row(i, ck, value, ts) })
	})
	if ok, failed := answeredBy(regions, errs); ok <= len(regions)/2 {
		return nil, fmt.Errorf("reading %s: %d of %d regions answered, a majority is needed: %s", what, ok, len(regions), failed)
	}
	answered = make([]bool, len(regions))
	for i, err := range errs {
		answered[i] = err == nil
	}
	return answered, nil
}

// readMarks reads region's marks from its own keyspace.
func (d *Daemon) readMarks(ctx context.Context, region string) ([]watermark.Mark, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Watermark.RequestTimeout())
	defer cancel()
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
// repair debt owed to target, reading them concurrently. A region whose
// debt cannot be read counts as owing (the error says why).
func (d *Daemon) debtOwed(ctx context.Context, target string, homes map[string]bool) (bool, error) {
	var regions []string
	for _, r := range d.regionNames() {
		if homes[r] {
			regions = append(regions, r)
		}
	}
	var owed atomic.Bool
	errs := d.eachRegion(ctx, regions, func(ctx context.Context, _ int, r string) error {
		debt, err := d.debtIn(ctx, r)
		if err != nil {
			return err
		}
		entries, err := debt.ListDebt(ctx, target, 1)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			owed.Store(true)
		}
		return nil
	})
	if ok, failed := answeredBy(regions, errs); ok < len(regions) {
		return true, errors.New(failed)
	}
	return owed.Load(), nil
}

// debtIn returns the repair debt of region's keyspace.
func (d *Daemon) debtIn(ctx context.Context, region string) (*repair.CQLDebt, error) {
	s, err := d.sessions.Get(ctx, region)
	if err != nil {
		return nil, err
	}
	d.wm.mu.Lock()
	defer d.wm.mu.Unlock()
	debt := d.wm.debts[s]
	if debt == nil {
		if debt, err = repair.NewCQLDebt(s, d.cfg.Keyspace); err != nil {
			return nil, err
		}
		d.wm.debts[s] = debt
	}
	return debt, nil
}

// loadPublished starts the worker from the newest published watermarks,
// so that a restart neither moves one back nor forgets one it must hold
// while debt is owed.
func (d *Daemon) loadPublished(ctx context.Context) error {
	w := d.wm
	regions := d.regionNames()
	errs := d.eachRegion(ctx, regions, func(ctx context.Context, _ int, r string) error {
		return d.scanPartition(ctx, r, schema.WatermarksTable, schema.WatermarksPartition, func(ck, value []byte, _ int64) {
			wm, err := schema.DecodeWatermark(value)
			if err != nil {
				return
			}
			w.mu.Lock()
			w.last[string(ck)] = max(w.last[string(ck)], wm.Before)
			w.mu.Unlock()
		})
	})
	if ok, failed := answeredBy(regions, errs); ok <= len(regions)/2 {
		return fmt.Errorf("%d of %d regions answered: %s", ok, len(regions), failed)
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
	regions := d.regionNames()
	errs := d.eachRegion(ctx, regions, func(ctx context.Context, _ int, r string) error {
		return d.insert(ctx, r, schema.WatermarksTable, schema.WatermarksPartition, []byte(region), cells, before, 0)
	})
	if ok, failed := answeredBy(regions, errs); ok == 0 {
		return fmt.Errorf("no region took the watermark: %s", failed)
	}
	return nil
}

// insert writes one row of a watermark table in region, creating the
// table the first time.
func (d *Daemon) insert(ctx context.Context, region, table string, pk, ck []byte, cells schema.Cells, ts int64, ttl int) error {
	return d.insertRows(ctx, region, table, pk, []tableRow{{ck, cells, ts, ttl}})
}

// tableRow is one row of a watermark table, as insertRows writes it.
type tableRow struct {
	ck    []byte
	cells schema.Cells
	ts    int64
	ttl   int
}

// insertRows writes rows of one partition of a watermark table in region
// (several as one unlogged batch: one partition, one request), creating
// the table the first time.
func (d *Daemon) insertRows(ctx context.Context, region, table string, pk []byte, rows []tableRow) error {
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
	args := make([][]any, len(rows))
	for i, r := range rows {
		args[i] = schema.InsertValues(pk, r.ck, r.cells, r.ts, r.ttl)
	}
	return cluster.WritePartition(ctx, s, gocql.LocalQuorum, schema.Insert(d.cfg.Keyspace, table), args)
}

// markRecorder records the marks of the daemon's replayers in the region
// they replay to (hints.ReplayerConfig.Marks), each with its heartbeat's
// Before as timestamp, so that an older mark never replaces a newer one.
// A call's marks are rows of one partition, written in batches of
// marksPerBatch.
type markRecorder struct{ d *Daemon }

func (m markRecorder) RecordMarks(ctx context.Context, region string, marks []hints.Mark) error {
	if len(marks) == 0 {
		return nil
	}
	rows := make([]tableRow, len(marks))
	now := m.d.now()
	for i, mk := range marks {
		ttl := markTTL(mk)
		cells := schema.Cells{Value: schema.EncodeMark(schema.Mark{Before: mk.Before, Partitions: mk.Partitions, Closing: mk.Closing, SentAt: mk.SentAt}),
			Expires: schema.ExpiryAfter(now, ttl)}
		cells.Digest = schema.Digest(false, cells.Value)
		rows[i] = tableRow{schema.EncodeMarkKey(mk.Producer, mk.Partition), cells, mk.Before, schema.TTLSeconds(ttl)}
	}
	for chunk := range slices.Chunk(rows, marksPerBatch) {
		if err := m.d.insertRows(ctx, region, schema.MarksTable, schema.MarksPartition(region), chunk); err != nil {
			return fmt.Errorf("record %d marks in region %s: %w", len(marks), region, err)
		}
	}
	return nil
}

// marksPerBatch bounds a batch of marks (about 100 bytes each) well below
// Cassandra's batch_size_warn_threshold (5 KiB per batch by default is
// the warning; 50 KiB fails).
const marksPerBatch = 40
