package repair

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
)

// Repair debt (docs/repair.md, "Repair debt"): the keys a region missed
// that no hint will bring it, recorded by the store in its home region
// (schema.DebtTable). DrainDebt repairs exactly those keys — a point read
// in every region, the winner written where it is missing, as a full run
// would — and removes an entry only once every region holds the winner.

// Key names one row of a namespace.
type Key struct{ PK, CK []byte }

// DebtEntry is one row of the debt table: a key that Target lacks, or an
// overflow entry (some debt of Namespace was not recorded: only a full run
// covers it).
type DebtEntry struct {
	Target    string
	Namespace string
	// PK and CK are the key; nil for an overflow entry.
	PK, CK   []byte
	Overflow bool
	// Timestamp is the entry's write time: the lost write's timestamp
	// (µs), which RemoveDebt deletes up to.
	Timestamp int64
	// Reason is why the write was not hinted (hints_failed_total's
	// reasons, or "uncertain", or "overflow").
	Reason string
	// At is when the store recorded it.
	At time.Time

	partition, ck []byte // the row's keys, as stored
}

// DebtStore lists and removes repair debt: NewCQLDebt over a region's
// keyspace, or NewMemDebt.
type DebtStore interface {
	// ListDebt returns up to limit entries for target (every shard),
	// overflow entries included.
	ListDebt(ctx context.Context, target string, limit int) ([]DebtEntry, error)
	// RemoveDebt removes e up to its Timestamp: an entry written again
	// since, with a greater timestamp, stays.
	RemoveDebt(ctx context.Context, e DebtEntry) error
}

// NewDebtEntry builds the entry the store would record (for DebtStore
// implementations and tests).
func NewDebtEntry(target, namespace string, pk, ck []byte, ts int64, reason string, at time.Time) DebtEntry {
	key := schema.EncodeDebtKey(namespace, pk, ck)
	return DebtEntry{Target: target, Namespace: namespace, PK: pk, CK: ck, Timestamp: ts, Reason: reason, At: at,
		partition: schema.DebtPartition(target, schema.DebtShard(namespace, pk, ck)), ck: key}
}

// decodeDebt reads one stored debt row.
func decodeDebt(target string, partition, ck, value []byte, ts int64) (DebtEntry, error) {
	ns, pk, rowCK, overflow, err := schema.DecodeDebtKey(ck)
	if err != nil {
		return DebtEntry{}, err
	}
	reason, at, err := schema.DecodeDebtValue(value)
	if err != nil {
		return DebtEntry{}, err
	}
	return DebtEntry{Target: target, Namespace: ns, PK: pk, CK: rowCK, Overflow: overflow, Timestamp: ts,
		Reason: reason, At: at, partition: partition, ck: ck}, nil
}

// DrainReport is what one DrainDebt pass did.
type DrainReport struct {
	// Entries is the key entries read (overflow entries apart).
	Entries int
	// Repaired is the entries whose key every region now holds (written
	// where missing, or found converged already); they were removed.
	Repaired int
	// Pending is the entries kept for the next pass (a region that did not
	// answer, an unknown namespace).
	Pending int
	// RowsRead and RowsWritten are the point reads and row writes it made.
	RowsRead, RowsWritten int64
	// ByNamespace counts the entries read per namespace, and
	// PendingByNamespace those kept.
	ByNamespace, PendingByNamespace map[string]int
	// Oldest is when the oldest entry still pending was recorded (zero
	// when none is).
	Oldest time.Time
	// Overflows are the overflow entries found; the caller runs a full
	// repair of their namespaces and removes them (RemoveDebt) once it is
	// done.
	Overflows []DebtEntry
}

// DrainDebt repairs up to limit entries of target's repair debt in debt:
// each key is read in every region and its winner written where it is
// missing, by the same plan as a full run (PlanRow); the entry is removed
// once every region holds the winner. Entries whose repair fails stay for
// the next pass; the error joins their causes.
func (r *Repairer) DrainDebt(ctx context.Context, debt DebtStore, target string, limit int) (DrainReport, error) {
	rep := DrainReport{ByNamespace: map[string]int{}, PendingByNamespace: map[string]int{}}
	entries, err := debt.ListDebt(ctx, target, limit)
	if err != nil {
		return rep, fmt.Errorf("repair: list the debt of region %q: %w", target, err)
	}
	byNS := map[string][]DebtEntry{}
	for _, e := range entries {
		if e.Overflow {
			rep.Overflows = append(rep.Overflows, e)
			continue
		}
		rep.Entries++
		rep.ByNamespace[e.Namespace]++
		byNS[e.Namespace] = append(byNS[e.Namespace], e)
	}
	var errs []error
	pending := func(e DebtEntry) {
		rep.Pending++
		rep.PendingByNamespace[e.Namespace]++
		if rep.Oldest.IsZero() || e.At.Before(rep.Oldest) {
			rep.Oldest = e.At
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		es := byNS[ns]
		keys := make([]Key, len(es))
		for i, e := range es {
			keys[i] = Key{PK: e.PK, CK: e.CK}
		}
		kr, err := r.RepairKeys(ctx, ns, keys)
		rep.RowsRead += kr.RowsRead
		rep.RowsWritten += kr.RowsWritten
		if err != nil {
			errs = append(errs, err)
		}
		for i, e := range es {
			if !kr.Converged[i] {
				pending(e)
				continue
			}
			if err := debt.RemoveDebt(ctx, e); err != nil {
				errs = append(errs, fmt.Errorf("repair: remove the debt entry of %s pk=%x ck=%x: %w", ns, e.PK, e.CK, err))
				pending(e)
				continue
			}
			rep.Repaired++
		}
	}
	return rep, errors.Join(errs...)
}

// KeysReport is what RepairKeys did.
type KeysReport struct {
	// Converged[i] reports that every region holds keys[i]'s winner now
	// (or that the winner has expired, so that no region needs it). In a
	// dry run (Options.DryRun) a key that differs is reported, not
	// written, and not Converged: DrainDebt keeps its entries.
	Converged []bool
	// RowsRead is the point reads (one per key and region); RowsWritten
	// the rows written.
	RowsRead, RowsWritten int64
	// Regions counts, per region, like a run's Report.
	Regions []RegionStats
}

// RepairKeys repairs the given keys of namespace: a point read of each in
// every region, and the winner written where it is missing (PlanRow, as
// in a run: the same ties, expiry, conflicts). It reads each key once per
// region and nothing else. A key whose read or write fails in some region
// is not Converged; the error names the first few.
func (r *Repairer) RepairKeys(ctx context.Context, namespace string, keys []Key) (KeysReport, error) {
	rep := &Report{Namespace: namespace}
	for _, reg := range r.regions {
		rep.Regions = append(rep.Regions, RegionStats{Region: reg.Name})
	}
	acc := &accum{rep: rep, pairs: make([]int64, len(r.regions)*(len(r.regions)-1)/2)}
	ctl, trk := NewControl(), newTracker()
	out := KeysReport{Converged: make([]bool, len(keys))}
	var errs []error
	const maxErrs = 5
	for i, k := range keys {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		d, err := r.pointRead(ctx, namespace, k, acc)
		out.RowsRead += int64(len(r.regions))
		if err != nil {
			if len(errs) < maxErrs {
				errs = append(errs, err)
			}
			continue
		}
		if d == nil { // the same in every region
			out.Converged[i] = true
			continue
		}
		if _, err := r.fix(ctx, namespace, d, acc, ctl, trk); err != nil {
			if len(errs) < maxErrs {
				errs = append(errs, err)
			}
			continue
		}
		if r.opts.DryRun && PlanRow(d).Action != 0 {
			continue // reported, not written: the regions still differ
		}
		out.Converged[i] = true
	}
	for _, rs := range rep.Regions {
		out.RowsWritten += rs.RowsWritten
	}
	out.Regions = rep.Regions
	return out, errors.Join(errs...)
}

// pointRead reads key k in every region at once; it returns nil when every
// region holds the same state, else the Divergence (with the values read,
// so that fixing it reads nothing more).
func (r *Repairer) pointRead(ctx context.Context, ns string, k Key, acc *accum) (*Divergence, error) {
	n := len(r.regions)
	fetched := make([]fetchedRow, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, reg := range r.regions {
		wg.Go(func() {
			v, ok, err := reg.Reader.ReadRow(ctx, ns, k.PK, k.CK)
			if err != nil {
				errs[i] = &RegionError{Region: reg.Name, Op: "read", Err: err}
				return
			}
			fetched[i] = fetchedRow{v: v, found: ok}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := time.Now()
	d := &Divergence{PK: k.PK, CK: k.CK, Regions: make([]Observed, n), fetched: fetched}
	for i, f := range fetched {
		b := valueRowBytes(&f.v)
		acc.do(func(rp *Report) {
			rp.Regions[i].ValueFetches++
			rp.Regions[i].BytesRead += b
		})
		r.opts.Metrics.addFetch(ns, r.regions[i].Name, b)
		if !f.found {
			continue
		}
		d.Regions[i] = Observed{Present: true, Timestamp: f.v.Timestamp, Deleted: f.v.Deleted,
			Digest: schema.Digest(f.v.Deleted, f.v.Value), TTL: f.v.TTL, Expires: f.v.Expires,
			Expired: !schema.Visible(f.v.Expires, now)}
	}
	for i := 1; i < n; i++ {
		if !d.Regions[i].Same(d.Regions[0]) || (d.Regions[i].Live() && !bytes.Equal(fetched[i].v.Value, fetched[0].v.Value)) {
			return d, nil
		}
	}
	return nil, nil
}
