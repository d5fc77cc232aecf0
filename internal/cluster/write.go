package cluster

import (
	"context"
	"errors"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// WritePartition runs stmt once for each row of one partition, rows[i]
// being its bound values: a single statement for one row, an unlogged
// batch for several (one partition, so one request and one mutation on
// each replica). Every row carries its own timestamp (USING TIMESTAMP), so
// the batch is idempotent like each of its statements and may be retried
// or sent speculatively. The store's writes, repair's and the daemon's
// watermark tables all write this way.
func WritePartition(ctx context.Context, s *gocql.Session, cons gocql.Consistency, stmt string, rows [][]any) error {
	switch len(rows) {
	case 0:
		return errors.New("cluster: a write of no rows")
	case 1:
		return s.Query(stmt, rows[0]...).Consistency(cons).Idempotent(true).ExecContext(ctx)
	}
	b := s.Batch(gocql.UnloggedBatch)
	for _, args := range rows {
		b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: args, Idempotent: true})
	}
	return b.Consistency(cons).ExecContext(ctx)
}
