package conflicts

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// CreateTimeout is the time a detector allows the first record, which
// may create the table (CREATE TABLE and the wait for schema agreement).
const CreateTimeout = 30 * time.Second

// recreateAfter is how long a CQL log waits after a failed CREATE TABLE
// before it tries again.
const recreateAfter = time.Minute

// CQL is a Sink and a Source over the conflict table (schema.ConflictsTable)
// of one keyspace, through a session restricted to one region. The table
// is created by Ensure (CREATE TABLE IF NOT EXISTS, once per CQL; a refusal
// is tried again a minute later), which the detectors call up front
// (Store.CreateNamespace, repair.CQLRegion.Describe) and WriteConflict
// calls when it has not succeeded yet; a role that cannot create tables
// needs the table created beforehand (schema.CreateConflictsTable). Writes
// and reads are LOCAL_QUORUM.
type CQL struct {
	s  *gocql.Session
	ks string

	mu      sync.Mutex
	created bool
	failed  time.Time
	lastErr error
}

// NewCQL returns the log of keyspace over s (not closed by the CQL).
func NewCQL(s *gocql.Session, keyspace string) (*CQL, error) {
	if err := schema.ValidateName("keyspace", keyspace); err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("conflicts: NewCQL needs a session")
	}
	return &CQL{s: s, ks: keyspace}, nil
}

// Ensure creates the table if it does not exist (once; after a failure
// that is not ctx's end, again only a minute later). A schema change takes
// seconds: give it a context that allows them (CreateTimeout).
func (c *CQL) Ensure(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.created {
		return nil
	}
	if !c.failed.IsZero() && time.Since(c.failed) < recreateAfter {
		return c.lastErr
	}
	err := c.s.Query(schema.CreateConflictsTable(c.ks)).ExecContext(ctx)
	if err == nil {
		err = c.s.AwaitSchemaAgreement(ctx)
	}
	if err != nil {
		err = fmt.Errorf("conflicts: create %s.%s: %w", c.ks, schema.ConflictsTable, err)
		if ctx.Err() == nil {
			// Refused (no permission, ...): not again for a while. A
			// caller's deadline says nothing: the next call tries again.
			c.failed, c.lastErr = time.Now(), err
		}
		return err
	}
	c.created = true
	return nil
}

// WriteConflict implements Sink.
func (c *CQL) WriteConflict(ctx context.Context, r Record, ttl time.Duration) error {
	if err := c.Ensure(ctx); err != nil {
		return err
	}
	ck := r.CK
	if ck == nil {
		ck = []byte{}
	}
	return c.s.Query(schema.InsertConflict(c.ks), r.Namespace, schema.ConflictBucketOf(r.Winner.Timestamp), r.PK, ck,
		r.Winner.Timestamp, r.Loser.Timestamp, r.Winner.Writer, r.Winner.Deleted, r.Loser.Writer, r.Loser.Deleted,
		r.LoserRegion, r.DetectedBy, r.DetectedAt, schema.TTLSeconds(ttl)).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
}

// ListConflicts implements Source: it reads the partitions of the hours
// q spans, newest first, until it has q.Limit records. A keyspace
// without the table has no records.
func (c *CQL) ListConflicts(ctx context.Context, namespace string, q Query) ([]Record, error) {
	q, err := q.Resolve(time.Now())
	if err != nil {
		return nil, err
	}
	var out []Record
	from, to := schema.ConflictBucketOf(q.Since.UnixMicro()), schema.ConflictBucketOf(q.Until.UnixMicro())
	for b := to; b >= from && len(out) < q.Limit; b-- {
		iter := c.s.Query(schema.SelectConflicts(c.ks), namespace, b).Consistency(gocql.LocalQuorum).IterContext(ctx)
		var part []Record
		var r Record
		for iter.Scan(&r.PK, &r.CK, &r.Winner.Timestamp, &r.Loser.Timestamp, &r.Winner.Writer, &r.Winner.Deleted,
			&r.Loser.Writer, &r.Loser.Deleted, &r.LoserRegion, &r.DetectedBy, &r.DetectedAt) {
			r.Namespace = namespace
			if in(r, q) {
				part = append(part, r)
			}
			r = Record{}
		}
		if err := iter.Close(); err != nil {
			if cluster.IsNoTable(err, schema.ConflictsTable) {
				return nil, nil
			}
			return out, fmt.Errorf("conflicts: list %s in %s: %w", namespace, c.ks, err)
		}
		sortNewest(part)
		out = append(out, part...)
	}
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// in reports whether r's winning write is in q's range.
func in(r Record, q Query) bool {
	t := r.Winner.Timestamp
	return t >= q.Since.UnixMicro() && t < q.Until.UnixMicro()
}

// sortNewest orders records by winning write, newest first, then by key.
func sortNewest(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		if c := cmp.Compare(b.Winner.Timestamp, a.Winner.Timestamp); c != 0 {
			return c
		}
		if c := bytes.Compare(a.PK, b.PK); c != 0 {
			return c
		}
		if c := bytes.Compare(a.CK, b.CK); c != 0 {
			return c
		}
		return cmp.Compare(a.Loser.Timestamp, b.Loser.Timestamp)
	})
}
