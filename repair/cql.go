package repair

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
)

// CQLRegion reads and writes one region's Cassandra cluster through a gocql
// session (opened with internal/cluster.Connect, restricted to the region),
// with the statements of internal/schema. Reads and writes use LOCAL_QUORUM
// inside the region. It implements RegionReader, RegionWriter and Estimator.
type CQLRegion struct {
	s        *gocql.Session
	keyspace string
	// conflicts is the keyspace's conflict log (a Repairer's default
	// ConflictSink); recordsConflicts is set once a Repairer records
	// there.
	conflicts        *conflicts.CQL
	recordsConflicts atomic.Bool
}

// NewCQLRegion returns a region over session s and the tables of keyspace.
// The session is not closed by the region.
func NewCQLRegion(s *gocql.Session, keyspace string) (*CQLRegion, error) {
	if err := schema.ValidateName("keyspace", keyspace); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errors.New("repair: NewCQLRegion needs a session")
	}
	log, err := conflicts.NewCQL(s, keyspace)
	if err != nil {
		return nil, err
	}
	return &CQLRegion{s: s, keyspace: keyspace, conflicts: log}, nil
}

// Describe reads the table's retention with cluster.ReadRetention (the
// table's comment in system_schema); a missing table is
// ErrUnknownNamespace. A comment without a readable retention gives
// Retention 0 and a RetentionErr naming the table and the comment.
//
// When a Repairer records its conflicts in this region (its default
// ConflictSink, not a dry run), Describe also creates the keyspace's
// conflict log table if it does not exist (once per CQLRegion;
// docs/repair.md, "Conflicts"), so that a run's first conflict is not the
// one that waits for a schema change. A failure there is ignored:
// recording tries again and counts what it cannot write.
func (c *CQLRegion) Describe(ctx context.Context, namespace string) (TableInfo, error) {
	if c.recordsConflicts.Load() {
		_ = c.conflicts.Ensure(ctx)
	}
	ret, err := cluster.ReadRetention(ctx, c.s, c.keyspace, namespace)
	return describeResult(c.keyspace, namespace, ret, err)
}

// describeResult is Describe's answer for what cluster.ReadRetention
// returned.
func describeResult(keyspace, namespace string, retention time.Duration, err error) (TableInfo, error) {
	switch {
	case errors.Is(err, cluster.ErrNoTable):
		return TableInfo{}, fmt.Errorf("%w: table %s.%s does not exist (create the namespace with the store, or check the name)",
			ErrUnknownNamespace, keyspace, namespace)
	case errors.Is(err, cluster.ErrNoRetention):
		return TableInfo{RetentionErr: err}, nil
	case err != nil:
		return TableInfo{}, err
	}
	return TableInfo{Retention: retention}, nil
}

// ScanDigests runs schema.SelectDigestRange over r, paged by pageSize. Each
// row's absolute expiry is its expires column (schema.Expiry: for a row
// written before the column existed, the scan's time plus its remaining
// TTL), and it is marked Expired when that has passed at the scan.
func (c *CQLRegion) ScanDigests(ctx context.Context, namespace string, r TokenRange, pageSize int) RowStream {
	stmt := schema.SelectDigestRange(c.keyspace, namespace)
	if r.IncludesStart() {
		stmt = schema.SelectDigestRangeFrom(c.keyspace, namespace)
	}
	iter := c.s.Query(stmt, r.Start, r.End).Consistency(gocql.LocalQuorum).PageSize(pageSize).IterContext(ctx)
	return &cqlStream{iter: iter, sc: iter.Scanner()}
}

type cqlStream struct {
	iter *gocql.Iter
	sc   gocql.Scanner
	row  DigestRow
	err  error
}

func (s *cqlStream) Next() bool {
	if s.err != nil || !s.sc.Next() {
		return false
	}
	r := &s.row
	var expires int64
	if err := s.sc.Scan(&r.Token, &r.PK, &r.CK, &r.Timestamp, &r.Digest, &r.Deleted, &r.TTL, &expires); err != nil {
		s.err = err
		return false
	}
	now := time.Now()
	r.Expires = schema.Expiry(expires, int(r.TTL), now)
	r.Expired = !schema.Visible(r.Expires, now)
	return true
}

func (s *cqlStream) Row() *DigestRow { return &s.row }

func (s *cqlStream) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.sc.Err()
}

func (s *cqlStream) Close() error { return s.iter.Close() }

// ReadRow runs schema.SelectRow: the value (an empty slice for a live
// row's empty value, which the driver returns as nil; nil for a marker),
// deleted, writetime and ttl of the digest, and the absolute expiry
// (schema.Expiry with the read's time).
func (c *CQLRegion) ReadRow(ctx context.Context, namespace string, pk, ck []byte) (RowValue, bool, error) {
	var v RowValue
	var expires int64
	err := c.s.Query(schema.SelectRow(c.keyspace, namespace), pk, ck).Consistency(gocql.LocalQuorum).
		ScanContext(ctx, &v.Value, &v.Deleted, &v.Timestamp, &v.TTL, &expires)
	if errors.Is(err, gocql.ErrNotFound) {
		return RowValue{}, false, nil
	}
	if err != nil {
		return RowValue{}, false, err
	}
	switch {
	case v.Deleted:
		v.Value = nil
	case v.Value == nil:
		v.Value = []byte{}
	}
	v.Expires = schema.Expiry(expires, int(v.TTL), time.Now())
	return v, true, nil
}

// WriteRow runs schema.Insert, bound with schema.InsertValues, for each of
// w.Cells (several in one single-partition unlogged batch), with the row's
// own timestamp and the TTL left until w.Expires now (schema.TTLUntil); a
// row whose expiry has passed is not written (ErrExpired). A table that
// lacks a column the write binds (created by an earlier release) is
// upgraded (Upgrade) and the write tried once more.
func (c *CQLRegion) WriteRow(ctx context.Context, namespace string, w *Write) error {
	err := c.writeRow(ctx, namespace, w)
	if err != nil && schema.IsUndefinedColumn(err.Error()) {
		if uerr := c.Upgrade(ctx, namespace); uerr != nil {
			return fmt.Errorf("%w (and bringing the table to the current shape failed: %w)", err, uerr)
		}
		err = c.writeRow(ctx, namespace, w)
	}
	return err
}

func (c *CQLRegion) writeRow(ctx context.Context, namespace string, w *Write) error {
	ttl, expired := schema.TTLUntil(w.Expires, time.Now())
	if expired {
		return fmt.Errorf("%w: expiry %s passed", ErrExpired, time.Unix(w.Expires, 0).UTC().Format(time.RFC3339))
	}
	cs := w.Cells()
	rows := make([][]any, len(cs))
	for i, cells := range cs {
		rows[i] = schema.InsertValues(w.PK, w.CK, cells, w.Timestamp, ttl)
	}
	return cluster.WritePartition(ctx, c.s, gocql.LocalQuorum, schema.Insert(c.keyspace, namespace), rows)
}

// ListConflicts returns the conflicts of namespace recorded in this
// region's keyspace (see the package function ListConflicts).
func (c *CQLRegion) ListConflicts(ctx context.Context, namespace string, q ConflictQuery) ([]Conflict, error) {
	return c.conflicts.ListConflicts(ctx, namespace, q)
}

// EstimateRows sums system.size_estimates' partition counts for the table,
// as the node that answers sees them (its primary ranges): a rough number,
// used only to size segments.
func (c *CQLRegion) EstimateRows(ctx context.Context, namespace string) (int64, error) {
	iter := c.s.Query(`SELECT partitions_count FROM system.size_estimates WHERE keyspace_name = ? AND table_name = ?`,
		c.keyspace, namespace).Consistency(gocql.LocalOne).IterContext(ctx)
	var total, n int64
	for iter.Scan(&n) {
		total += n
	}
	return total, iter.Close()
}
