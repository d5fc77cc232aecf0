package repair

import (
	"context"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// Backfiller is implemented by readers that can give the rows written
// before the fp column existed their fingerprints ([CQLRegion],
// [MemRegion]). After repair has scanned and fixed a range whose
// fingerprints showed such rows, it asks each region that holds some to
// backfill the range, so that the next run finds it in sync by its
// fingerprints instead of scanning it again (docs/repair.md,
// "Fingerprints").
type Backfiller interface {
	// BackfillFingerprints writes, at each row's own timestamp, the
	// fingerprint of the version a row of r holds, for the rows whose fp
	// is missing or older than their digest (schema.BackfillValues says
	// which). A later write of the row always wins over it.
	BackfillFingerprints(ctx context.Context, namespace string, r TokenRange, pageSize int) (BackfillStats, error)
}

// BackfillStats is what one BackfillFingerprints call did.
type BackfillStats struct {
	// Scanned is the rows read, Written the rows given a fingerprint.
	Scanned, Written int64
	// Bytes is the payload read (column values and their lengths).
	Bytes int64
}

// backfillRowBytes is the payload of one row of schema.SelectBackfillRange
// besides its keys: four bigints, an int and a boolean, each with its
// 4-byte length.
const backfillRowBytes = 4*(4+8) + (4 + 4) + (4 + 1)

// backfillBatch is how many rows of one partition one request writes.
const backfillBatch = 40

// BackfillFingerprints runs schema.SelectBackfillRange over r at
// LOCAL_QUORUM and writes schema.UpdateFingerprint for the rows that need
// it, a partition's rows together (cluster.WritePartition).
func (c *CQLRegion) BackfillFingerprints(ctx context.Context, namespace string, r TokenRange, pageSize int) (BackfillStats, error) {
	stmt := schema.SelectBackfillRange(c.keyspace, namespace)
	if r.IncludesStart() {
		stmt = schema.SelectBackfillRangeFrom(c.keyspace, namespace)
	}
	update := schema.UpdateFingerprint(c.keyspace, namespace)
	iter := c.s.Query(stmt, r.Start, r.End).Consistency(gocql.LocalQuorum).PageSize(pageSize).IterContext(ctx)
	sc := iter.Scanner()
	var st BackfillStats
	var pending [][]any
	var pendingPK []byte
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := cluster.WritePartition(ctx, c.s, gocql.LocalQuorum, update, pending)
		if err == nil {
			st.Written += int64(len(pending))
		}
		pending = pending[:0]
		return err
	}
	for sc.Next() {
		var row schema.BackfillRow
		var ttl int32
		if err := sc.Scan(&row.PK, &row.CK, &row.Timestamp, &ttl, &row.Digest, &row.Deleted, &row.Expires, &row.FPTimestamp); err != nil {
			_ = iter.Close()
			return st, err
		}
		row.TTL = int(ttl)
		st.Scanned++
		st.Bytes += int64(len(row.PK)+len(row.CK)+8) + backfillRowBytes
		args, ok := schema.BackfillValues(row, time.Now())
		if !ok {
			continue
		}
		if len(pending) > 0 && (string(pendingPK) != string(row.PK) || len(pending) >= backfillBatch) {
			if err := flush(); err != nil {
				_ = iter.Close()
				return st, err
			}
		}
		pendingPK = row.PK
		pending = append(pending, args)
	}
	if err := sc.Err(); err != nil {
		_ = iter.Close()
		return st, err
	}
	if err := iter.Close(); err != nil {
		return st, err
	}
	return st, flush()
}

// BackfillFingerprints gives the rows of r that lack their version's
// fingerprint one (schema.BackfillValues decides), as the CQL region does.
func (m *MemRegion) BackfillFingerprints(_ context.Context, namespace string, r TokenRange, _ int) (BackfillStats, error) {
	if err := m.fault("backfill"); err != nil {
		return BackfillStats{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(namespace)
	if err != nil {
		return BackfillStats{}, err
	}
	now := m.now()
	var st BackfillStats
	for _, row := range t {
		c := &row.cells
		if !r.Contains(row.token) || !c.Visible(now.Unix()) {
			continue
		}
		st.Scanned++
		br := schema.BackfillRow{PK: row.pk, CK: row.ck, Deleted: cells.AsBool(c.Deleted), Expires: cells.AsBigint(c.Expires)}
		if c.Digest.Live(now.Unix()) {
			br.Timestamp, br.Digest = c.Digest.Timestamp, cells.AsBigint(c.Digest)
			if c.Digest.Expiring() {
				br.TTL = int(max(c.Digest.LocalDeletion-now.Unix(), 0))
			}
		}
		if c.Fingerprint.Live(now.Unix()) {
			br.FPTimestamp = c.Fingerprint.Timestamp
		}
		args, ok := schema.BackfillValues(br, now)
		if !ok {
			continue
		}
		c.UpdateFingerprint(cells.Bigint(args[2].(int64)), args[0].(int64), int64(args[1].(int)), now.Unix())
		st.Written++
	}
	return st, nil
}

// backfillRange is a range scanned because some regions' fingerprints
// showed rows without one: regions[i] says region i did.
type backfillRange struct {
	TokenRange
	regions []bool
}

// backfill asks the regions that hold rows without fingerprints in the
// ranges of bs to give them theirs, once those ranges have been scanned
// and fixed. Its rows take their share of the scan rate. A region that
// cannot (no Backfiller) is left alone; an error fails the segment like a
// scan's, and the next attempt backfills again (it is idempotent).
func (r *Repairer) backfill(ctx context.Context, ns string, bs []backfillRange, acc *accum, ctl *Control, trk *tracker) error {
	if r.opts.DryRun {
		return nil
	}
	for _, b := range bs {
		for i, need := range b.regions {
			bf, ok := r.regions[i].Reader.(Backfiller)
			if !need || !ok {
				continue
			}
			if err := ctl.Wait(ctx); err != nil {
				return err
			}
			st, err := bf.BackfillFingerprints(ctx, ns, b.TokenRange, r.opts.PageSize)
			trk.touch()
			name := r.regions[i].Name
			acc.do(func(rp *Report) {
				rp.Regions[i].BytesRead += st.Bytes
				rp.Regions[i].FingerprintsBackfilled += st.Written
				rp.FingerprintsBackfilled += st.Written
			})
			r.opts.Metrics.addBackfilled(ns, name, st.Written)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return &RegionError{Region: name, Op: "backfill", Err: fmt.Errorf("range %s: %w", b.TokenRange, err)}
			}
			if err := r.charge(ctx, trk, st.Scanned); err != nil {
				return err
			}
		}
	}
	return nil
}
