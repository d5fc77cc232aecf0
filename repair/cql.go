package repair

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// CQLRegion reads and writes one region's Cassandra cluster through a gocql
// session (opened with internal/cluster.Connect, restricted to the region),
// with the statements of internal/schema. Reads and writes use LOCAL_QUORUM
// inside the region. It implements RegionReader, RegionWriter and Estimator.
type CQLRegion struct {
	s        *gocql.Session
	keyspace string
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
	return &CQLRegion{s: s, keyspace: keyspace}, nil
}

// Describe reads the table's retention with cluster.ReadRetention (the
// table's comment in system_schema); a missing table is
// ErrUnknownNamespace. A comment without a readable retention gives
// Retention 0 and a RetentionErr naming the table and the comment.
func (c *CQLRegion) Describe(ctx context.Context, namespace string) (TableInfo, error) {
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

// ScanDigests runs schema.SelectDigestRange over r, paged by pageSize.
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
	if err := s.sc.Scan(&r.Token, &r.PK, &r.CK, &r.Timestamp, &r.Digest, &r.Deleted, &r.TTL); err != nil {
		s.err = err
		return false
	}
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

// ReadRow runs schema.SelectRow.
func (c *CQLRegion) ReadRow(ctx context.Context, namespace string, pk, ck []byte) (RowValue, bool, error) {
	var v RowValue
	err := c.s.Query(schema.SelectRow(c.keyspace, namespace), pk, ck).Consistency(gocql.LocalQuorum).
		ScanContext(ctx, &v.Value, &v.Deleted, &v.Timestamp, &v.TTL)
	if errors.Is(err, gocql.ErrNotFound) {
		return RowValue{}, false, nil
	}
	if err != nil {
		return RowValue{}, false, err
	}
	return v, true, nil
}

// WriteRow runs schema.Insert with the row's own timestamp and TTL.
func (c *CQLRegion) WriteRow(ctx context.Context, namespace string, w *Write) error {
	var value []byte
	if !w.Deleted {
		value = w.Value
	}
	return c.s.Query(schema.Insert(c.keyspace, namespace), w.PK, w.CK, value, w.Deleted, w.Digest, w.Timestamp, int(w.TTL)).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
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
