package store

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Repair debt (docs/repair.md, "Repair debt"): a region's share of a write
// that no hint will bring it — the hint sink refused it or did not answer
// in time, the hint pool was full, there is no sink, Close gave up — is
// recorded as a debt entry in the home region's keyspace
// (schema.DebtTable), so that repaird repairs exactly that key within
// seconds instead of at the next full run.
//
// Recording never blocks a call: entries wait in a bounded queue
// (Config.MaxPendingDebt) for the writer, debtPasses passes at once. An
// entry that does not fit, or whose write fails (the home region down
// too), is counted (debt_overflow_total) and turns into an overflow entry
// for its namespace, written as soon as the home region takes it: repaird
// then runs a full repair of the namespace, the only thing that covers
// keys it was not told.

// debtEntry is one key a region lacks.
type debtEntry struct {
	target, ns string
	pk, ck     []byte
	ts         int64 // the lost write's timestamp: the entry's own
	reason     string
	at         time.Time
	// wm settles the row in the watermark's tracker once the entry is
	// durable (or its overflow holds the region's watermark); region is
	// the target's index.
	wm     *pendingWrite
	region int
}

// debtLog is the Store's debt writer.
type debtLog struct {
	s     *Store
	queue chan debtEntry
	done  chan struct{}
	// pending counts the entries queued or in the batch being written
	// (the debt_pending gauge).
	pending atomic.Int64

	mu        sync.Mutex
	overflows map[[2]string]overflowDue // (target, namespace) whose overflow entry is due
	gen       uint64                    // counts overflows, so a flush releases only what it wrote
	tableOK   atomic.Bool
}

// overflowDue is a namespace's overflow entry waiting to be written: the
// region it is for and the overflow that last asked for it.
type overflowDue struct {
	region int
	gen    uint64
}

// overflowKey is the watermark tracker's hold for an overflow of ns:
// until the overflow entry is durable the region's heartbeats stay below
// the oldest write it covers.
func overflowKey(ns string) string { return "overflow/" + ns }

func newDebtLog(s *Store, size int) *debtLog {
	return &debtLog{s: s, queue: make(chan debtEntry, size), done: make(chan struct{}), overflows: map[[2]string]overflowDue{}}
}

// record queues the debt of the rows of m that region r lacks.
// Without a debt log (Config.MaxPendingDebt negative) nothing records
// them: the region never gets them from the Store, and the watermark's
// tracker keeps its heartbeats below them.
func (d *debtLog) record(r *region, m *mutation, rows []driver.Row, reason string) {
	if d == nil {
		m.wm.stick(r.idx, len(rows))
		return
	}
	now := d.s.cfg.Now()
	for _, row := range rows {
		e := debtEntry{target: r.name, ns: m.ns, pk: m.pk, ck: row.CK, ts: row.Timestamp, reason: reason, at: now, wm: m.wm, region: r.idx}
		d.pending.Add(1)
		select {
		case d.queue <- e:
		default:
			d.pending.Add(-1)
			d.overflow(e, "queue_full")
		}
	}
}

// pendingCount is how many entries are queued or being written; 0
// without a debt log.
func (d *debtLog) pendingCount() int64 {
	if d == nil {
		return 0
	}
	return d.pending.Load()
}

// overflow counts a debt entry that could not be recorded and marks its
// namespace for a full repair. The entry's write is settled into a hold of
// the watermark tracker, released once the overflow entry is durable.
func (d *debtLog) overflow(e debtEntry, why string) {
	d.s.metrics.debtOverflow.WithLabelValues(e.target, why).Inc()
	d.s.track.hold(e.region, overflowKey(e.ns), e.ts)
	d.mu.Lock()
	d.gen++
	d.overflows[[2]string{e.target, e.ns}] = overflowDue{region: e.region, gen: d.gen}
	d.mu.Unlock()
	e.wm.settle(e.region, 1)
}

// debtBatch bounds the entries one pass of the writer takes from the
// queue; they are written as one request per debt partition, concurrently.
const debtBatch = 512

// debtRowsPerWrite bounds one request's rows (~80 bytes each), well under
// Cassandra's batch size warning (5 KiB) and failure (50 KiB) thresholds.
const debtRowsPerWrite = 48

// run writes queued entries until the queue is closed, then the overflow
// entries still due, with debtPasses passes at once.
func (d *debtLog) run() {
	defer close(d.done)
	var wg sync.WaitGroup
	for i := range debtPasses {
		wg.Go(func() { d.passes(i == 0) })
	}
	wg.Wait()
	d.finish()
}

// debtPasses is how many passes of the writer run at once. A pass waits
// for its slowest request; meanwhile the others go on taking entries, so
// that one slow write to a loaded home region does not let the queue fill
// (one pass at a time overflowed 81-106 entries a minute in
// BenchmarkDebtDrain's unthrottled line, docs/benchmarks.md). At most
// debtPasses × debtBatch entries are being written besides the queue's.
const debtPasses = 4

// passes takes what is queued (up to debtBatch), keeps the newest entry of
// each key, and writes each debt partition's entries in one request (a
// single-partition batch), the partitions concurrently — one entry at a
// time, a burst of missed writes outran it — until the queue is closed.
// Entries of one key in two passes are written in either order: each with
// its own timestamp, the newest wins. With retries, overflow entries
// still due are tried again every overflowRetry, also when no new debt
// comes.
func (d *debtLog) passes(retries bool) {
	var tick <-chan time.Time
	if retries {
		retry := time.NewTicker(overflowRetry)
		defer retry.Stop()
		tick = retry.C
	}
	for {
		var e debtEntry
		select {
		case <-tick:
			d.flushOverflows()
			continue
		case next, ok := <-d.queue:
			if !ok {
				return
			}
			e = next
		}
		batch := []debtEntry{e}
	fill:
		for len(batch) < debtBatch {
			select {
			case e, ok := <-d.queue:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		d.writeBatch(batch)
		d.pending.Add(-int64(len(batch)))
		if len(d.queue) == 0 {
			d.flushOverflows()
		}
	}
}

// overflowRetry is how often the writer tries again to write the overflow
// entries that are due.
const overflowRetry = time.Second

// finish writes the overflow entries still due once the queue is closed,
// and logs those it cannot.
func (d *debtLog) finish() {
	d.flushOverflows()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.overflows {
		d.s.log.LogAttrs(context.Background(), slog.LevelError,
			"store: closed with repair debt unrecorded; run a full repair of the namespace",
			slog.String("target", k[0]), slog.String("namespace", k[1]))
	}
}

// writeBatch writes entries grouped by debt partition, the newest entry of
// each key only.
func (d *debtLog) writeBatch(entries []debtEntry) {
	type part struct {
		target string
		shard  int
	}
	groups := map[part]map[string]debtEntry{}
	missed := map[part][]debtEntry{} // every missed write per partition, before keeping the newest per key
	for _, e := range entries {
		p := part{e.target, schema.DebtShard(e.ns, e.pk, e.ck)}
		missed[p] = append(missed[p], e)
		g := groups[p]
		if g == nil {
			g = map[string]debtEntry{}
			groups[p] = g
		}
		k := string(schema.EncodeDebtKey(e.ns, e.pk, e.ck))
		if old, ok := g[k]; !ok || e.ts > old.ts {
			g[k] = e
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for p, g := range groups {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rows := make([]driver.Row, 0, len(g))
			var some debtEntry
			for k, e := range g {
				rows = append(rows, d.row([]byte(k), e.ts, e.reason, e.at))
				some = e
			}
			var err error
			for c := range slices.Chunk(rows, debtRowsPerWrite) {
				if err = d.write(p.target, p.shard, c); err != nil {
					break
				}
			}
			if err != nil {
				for _, e := range missed[p] {
					d.overflow(e, "write_failed")
				}
				d.s.logs.debt.Do(func() {
					d.s.log.LogAttrs(context.Background(), slog.LevelError,
						"store: repair debt not recorded; the namespace needs a full repair run",
						slog.String("target", p.target), slog.String("namespace", some.ns), slog.Int("entries", len(rows)), slog.Any("error", err))
				})
				return
			}
			// Each missed write counts, also those a newer entry of their
			// key replaced (that entry repairs them too).
			d.s.metrics.debtRecorded.WithLabelValues(p.target).Add(float64(len(missed[p])))
			for _, e := range missed[p] {
				e.wm.settle(e.region, 1)
			}
		})
	}
	wg.Wait()
}

// flushOverflows writes the overflow entries that are due.
func (d *debtLog) flushOverflows() {
	d.mu.Lock()
	type flush struct {
		k   [2]string
		due overflowDue
	}
	due := make([]flush, 0, len(d.overflows))
	for k, o := range d.overflows {
		due = append(due, flush{k, o})
	}
	d.mu.Unlock()
	for _, f := range due {
		row := d.row(schema.EncodeDebtOverflow(f.k[1]), d.s.clock.Now(), "overflow", d.s.cfg.Now())
		if err := d.write(f.k[0], 0, []driver.Row{row}); err != nil {
			return // the home region is not taking writes: try again later
		}
		// An overflow since the snapshot may have come after the entry's
		// time: it stays due, and its hold stays.
		d.mu.Lock()
		if d.overflows[f.k].gen == f.due.gen {
			delete(d.overflows, f.k)
			d.s.track.release(f.due.region, overflowKey(f.k[1]))
		}
		d.mu.Unlock()
	}
}

// row is one debt row: key ck, timestamp ts. Debt older than the default
// retention is covered by the full run that the retention requires
// anyway, so that is its TTL.
func (d *debtLog) row(ck []byte, ts int64, reason string, at time.Time) driver.Row {
	return driver.Row{CK: ck, Value: schema.EncodeDebtValue(reason, at), Timestamp: ts,
		TTL: schema.TTLSeconds(schema.DefaultRetention), Expires: schema.ExpiryAfter(at, schema.DefaultRetention)}
}

// write stores rows in target's debt shard of the home region, creating
// the table first.
func (d *debtLog) write(target string, shard int, rows []driver.Row) error {
	ex, err := d.s.regions[0].executor()
	if err != nil {
		return err
	}
	// Ended by CloseContext's abort: what is left then is counted.
	ctx, cancel := context.WithTimeout(d.s.abortCtx, max(d.s.cfg.Timeout, 10*time.Second))
	defer cancel()
	if !d.tableOK.Load() {
		if err := ex.CreateTable(ctx, d.s.cfg.Keyspace, schema.DebtTable, schema.DebtRetention); err != nil {
			return err
		}
		d.tableOK.Store(true)
	}
	return ex.Write(ctx, driver.WriteRequest{
		Keyspace: d.s.cfg.Keyspace, Table: schema.DebtTable, PK: schema.DebtPartition(target, shard),
		Rows: rows, Consistency: quorum.LocalQuorum.RegionConsistency(),
	})
}
