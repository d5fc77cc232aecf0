package repair

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// CQLDebt is the debt table (schema.DebtTable) in one region's keyspace:
// where the stores whose home is that region record their repair debt.
type CQLDebt struct {
	s        *gocql.Session
	keyspace string
	exists   atomic.Bool // the table was seen once
}

// NewCQLDebt returns the debt table of keyspace through s (a session to
// the region whose stores record the debt).
func NewCQLDebt(s *gocql.Session, keyspace string) (*CQLDebt, error) {
	if err := schema.ValidateName("keyspace", keyspace); err != nil {
		return nil, err
	}
	return &CQLDebt{s: s, keyspace: keyspace}, nil
}

// ListDebt reads target's shards (schema.SelectDebt) until limit entries.
// Without the table (no store has recorded debt yet) there is none. A
// row this version cannot decode is skipped and named in the error.
func (c *CQLDebt) ListDebt(ctx context.Context, target string, limit int) ([]DebtEntry, error) {
	if !c.exists.Load() {
		_, err := cluster.ReadRetention(ctx, c.s, c.keyspace, schema.DebtTable)
		switch {
		case errors.Is(err, cluster.ErrNoTable):
			return nil, nil
		case err != nil && !errors.Is(err, cluster.ErrNoRetention):
			return nil, err
		}
		c.exists.Store(true)
	}
	var out []DebtEntry
	var bad []error
	for shard := 0; shard < schema.DebtShards && len(out) < limit; shard++ {
		pk := schema.DebtPartition(target, shard)
		iter := c.s.Query(schema.SelectDebt(c.keyspace), pk).Consistency(gocql.LocalQuorum).PageSize(1000).IterContext(ctx)
		var ck, value []byte
		var ts int64
		for len(out) < limit && iter.Scan(&ck, &value, &ts) {
			e, err := decodeDebt(target, pk, bytes.Clone(ck), bytes.Clone(value), ts)
			if err != nil {
				if len(bad) < 3 {
					bad = append(bad, err)
				}
				continue
			}
			out = append(out, e)
		}
		if err := iter.Close(); err != nil {
			return out, fmt.Errorf("read debt shard %d of region %q: %w", shard, target, err)
		}
	}
	return out, errors.Join(bad...)
}

// AddDebt records e (built by NewDebtEntry) as the store does — the entry
// row with e's timestamp and a TTL of the default retention — creating
// the table first if needed. repaird records the hints its replayer
// dead-letters as rejected this way.
func (c *CQLDebt) AddDebt(ctx context.Context, e DebtEntry) error {
	if !c.exists.Load() {
		if err := c.s.Query(schema.CreateTable(c.keyspace, schema.DebtTable, schema.DebtRetention)).ExecContext(ctx); err != nil {
			return fmt.Errorf("create %s.%s: %w", c.keyspace, schema.DebtTable, err)
		}
		for _, q := range schema.Upgrade(c.keyspace, schema.DebtTable) {
			if err := c.s.Query(q).ExecContext(ctx); err != nil && !schema.IsColumnExists(err.Error()) {
				return fmt.Errorf("upgrade %s.%s: %w", c.keyspace, schema.DebtTable, err)
			}
		}
		c.exists.Store(true)
	}
	cells := schema.Cells{Value: schema.EncodeDebtValue(e.Reason, e.At), Expires: schema.ExpiryAfter(e.At, schema.DefaultRetention)}
	cells.Digest = schema.Digest(false, cells.Value)
	return c.s.Query(schema.Insert(c.keyspace, schema.DebtTable),
		schema.InsertValues(e.partition, e.ck, cells, e.Timestamp, schema.TTLSeconds(schema.DefaultRetention))...).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
}

// RemoveDebt runs schema.DeleteDebt with the entry's timestamp.
func (c *CQLDebt) RemoveDebt(ctx context.Context, e DebtEntry) error {
	return c.s.Query(schema.DeleteDebt(c.keyspace), e.Timestamp, e.partition, e.ck).
		Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
}

// MemDebt is an in-memory DebtStore, for tests and programs without
// Cassandra. It keeps, like the table, one entry per key: the one with the
// greatest timestamp.
type MemDebt struct {
	mu      sync.Mutex
	entries map[string]DebtEntry // partition + ck
}

// NewMemDebt returns an empty MemDebt.
func NewMemDebt() *MemDebt { return &MemDebt{entries: map[string]DebtEntry{}} }

// Add records e unless an entry of the same key with a greater timestamp
// is there.
func (m *MemDebt) Add(e DebtEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := string(e.partition) + "\x00" + string(e.ck)
	if old, ok := m.entries[k]; ok && old.Timestamp > e.Timestamp {
		return
	}
	m.entries[k] = e
}

// Len returns how many entries it holds.
func (m *MemDebt) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// ListDebt implements DebtStore, in key order.
func (m *MemDebt) ListDebt(_ context.Context, target string, limit int) ([]DebtEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.entries))
	for k, e := range m.entries {
		if e.Target == target {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []DebtEntry
	for _, k := range keys {
		if len(out) == limit {
			break
		}
		out = append(out, m.entries[k])
	}
	return out, nil
}

// RemoveDebt implements DebtStore.
func (m *MemDebt) RemoveDebt(_ context.Context, e DebtEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := string(e.partition) + "\x00" + string(e.ck)
	if old, ok := m.entries[k]; ok && old.Timestamp <= e.Timestamp {
		delete(m.entries, k)
	}
	return nil
}

// NewOverflowEntry builds the overflow entry the store records when some
// debt of namespace could not be recorded.
func NewOverflowEntry(target, namespace string, ts int64) DebtEntry {
	return DebtEntry{Target: target, Namespace: namespace, Overflow: true, Timestamp: ts, Reason: "overflow",
		partition: schema.DebtPartition(target, 0), ck: schema.EncodeDebtOverflow(namespace)}
}

// NewExitEntry builds the overflow entry repaird records, at at, when a
// store of namespace stopped without closing: its writes that target
// lacks are covered by no hint or key entry, so only a full run of the
// namespace that starts after at covers them. It shares the namespace's
// overflow entry (one full run covers both).
func NewExitEntry(target, namespace string, at time.Time) DebtEntry {
	e := NewOverflowEntry(target, namespace, at.UnixMicro())
	e.Reason, e.At = "unclean_exit", at
	return e
}
