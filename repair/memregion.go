package repair

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tidemark/tidemark/internal/schema"
)

// MemRegion is a region held in memory, for tests and examples. It applies
// writes the way Cassandra reconciles the cells of one row written with one
// timestamp: the higher timestamp wins; on equal timestamps a deletion
// marker's null value beats a value, the greater value wins between values,
// and the deleted and digest cells each keep the greater one (as unsigned
// bytes). Rows expire by their TTL against Now.
//
// Tokens come from the Token function, which defaults to a 64-bit hash of
// the partition key: the order of rows is consistent between MemRegions but
// is not Murmur3's.
type MemRegion struct {
	// Token maps a partition key to its token. Set it before use.
	Token func(pk []byte) int64
	// Now is the clock for TTLs; nil means time.Now.
	Now func() time.Time
	// Fault, when set, is called before every operation with its name
	// ("describe", "scan", "read", "write"); a non-nil error fails the
	// operation.
	Fault func(op string) error
	// Retention is what Describe reports.
	Retention time.Duration

	mu     sync.Mutex
	tables map[string]map[string]*memRow
}

type memRow struct {
	token     int64
	pk, ck    []byte
	ts        int64
	value     []byte // nil when the value cell is a tombstone
	tomb      bool   // value cell is a tombstone (deletion marker)
	deleted   bool
	digest    int64
	expiresAt time.Time // zero: never
}

// NewMemRegion returns an empty region with the given namespaces (tables).
func NewMemRegion(namespaces ...string) *MemRegion {
	m := &MemRegion{Token: DefaultMemToken, Retention: schema.DefaultRetention, tables: map[string]map[string]*memRow{}}
	for _, ns := range namespaces {
		m.tables[ns] = map[string]*memRow{}
	}
	return m
}

// DefaultMemToken is MemRegion's default token function: a 64-bit hash of
// the key, never MinToken (like Murmur3Partitioner).
func DefaultMemToken(pk []byte) int64 {
	t := int64(xxhash.Sum64(pk))
	if t == math.MinInt64 {
		t = math.MaxInt64
	}
	return t
}

func (m *MemRegion) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MemRegion) fault(op string) error {
	if m.Fault != nil {
		return m.Fault(op)
	}
	return nil
}

func (m *MemRegion) table(ns string) (map[string]*memRow, error) {
	t, ok := m.tables[ns]
	if !ok {
		return nil, fmt.Errorf("%w: table %q does not exist", ErrUnknownNamespace, ns)
	}
	return t, nil
}

// Describe reports whether the namespace exists and its retention.
func (m *MemRegion) Describe(_ context.Context, namespace string) (TableInfo, error) {
	if err := m.fault("describe"); err != nil {
		return TableInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.table(namespace); err != nil {
		return TableInfo{}, err
	}
	return TableInfo{Retention: m.Retention}, nil
}

func (m *MemRegion) live(r *memRow, now time.Time) bool {
	return r.expiresAt.IsZero() || now.Before(r.expiresAt)
}

func remaining(exp, now time.Time) int32 {
	if exp.IsZero() {
		return 0
	}
	return int32(schema.TTLSeconds(exp.Sub(now)))
}

// ScanDigests returns the rows of r in scan order (a snapshot).
func (m *MemRegion) ScanDigests(_ context.Context, namespace string, r TokenRange, _ int) RowStream {
	if err := m.fault("scan"); err != nil {
		return NewSliceStream(nil, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(namespace)
	if err != nil {
		return NewSliceStream(nil, err)
	}
	now := m.now()
	var rows []DigestRow
	for _, row := range t {
		if !r.Contains(row.token) || !m.live(row, now) {
			continue
		}
		rows = append(rows, DigestRow{
			Token: row.token, PK: bytes.Clone(row.pk), CK: bytes.Clone(row.ck),
			Timestamp: row.ts, Digest: row.digest, Deleted: row.deleted,
			TTL: remaining(row.expiresAt, now),
		})
	}
	slices.SortFunc(rows, func(a, b DigestRow) int { return CompareKeys(&a, &b) })
	return NewSliceStream(rows, nil)
}

// ReadRow reads one row.
func (m *MemRegion) ReadRow(_ context.Context, namespace string, pk, ck []byte) (RowValue, bool, error) {
	if err := m.fault("read"); err != nil {
		return RowValue{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(namespace)
	if err != nil {
		return RowValue{}, false, err
	}
	now := m.now()
	row, ok := t[string(schema.PartitionKeyBytes(pk, ck))]
	if !ok || !m.live(row, now) {
		return RowValue{}, false, nil
	}
	return RowValue{Value: bytes.Clone(row.value), Deleted: row.deleted, Timestamp: row.ts, TTL: remaining(row.expiresAt, now)}, true, nil
}

// WriteRow applies a write with Cassandra's reconciliation.
func (m *MemRegion) WriteRow(_ context.Context, namespace string, w *Write) error {
	if err := m.fault("write"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(namespace)
	if err != nil {
		return err
	}
	m.apply(t, w)
	return nil
}

// Put writes a row as a client would (with Digest computed from deleted and
// value) and Cassandra's reconciliation. ttl 0 means none.
func (m *MemRegion) Put(namespace string, pk, ck []byte, ts int64, deleted bool, value []byte, ttl time.Duration) {
	if deleted {
		value = nil
	}
	w := &Write{PK: pk, CK: ck, Timestamp: ts, Deleted: deleted, Value: value,
		Digest: schema.Digest(deleted, value), TTL: int32(schema.TTLSeconds(ttl))}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tables[namespace]
	if !ok {
		t = map[string]*memRow{}
		m.tables[namespace] = t
	}
	m.apply(t, w)
}

// Get returns the row's current version.
func (m *MemRegion) Get(namespace string, pk, ck []byte) (RowValue, int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	row, ok := m.tables[namespace][string(schema.PartitionKeyBytes(pk, ck))]
	if !ok || !m.live(row, m.now()) {
		return RowValue{}, 0, false
	}
	return RowValue{Value: bytes.Clone(row.value), Deleted: row.deleted, Timestamp: row.ts, TTL: remaining(row.expiresAt, m.now())}, row.digest, true
}

// Len returns the number of live rows in a namespace.
func (m *MemRegion) Len(namespace string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	now := m.now()
	for _, r := range m.tables[namespace] {
		if m.live(r, now) {
			n++
		}
	}
	return n
}

func (m *MemRegion) apply(t map[string]*memRow, w *Write) {
	key := string(schema.PartitionKeyBytes(w.PK, w.CK))
	now := m.now()
	var exp time.Time
	if w.TTL > 0 {
		exp = now.Add(time.Duration(w.TTL) * time.Second)
	}
	nr := &memRow{token: m.Token(w.PK), pk: bytes.Clone(w.PK), ck: bytes.Clone(w.CK), ts: w.Timestamp,
		value: bytes.Clone(w.Value), tomb: w.Deleted, deleted: w.Deleted, digest: w.Digest, expiresAt: exp}
	if w.Deleted {
		nr.value = nil
	}
	old, ok := t[key]
	if !ok || !m.live(old, now) || old.ts < nr.ts {
		t[key] = nr
		return
	}
	if old.ts > nr.ts {
		return
	}
	// Equal timestamps: reconcile cell by cell.
	switch {
	case old.tomb:
	case nr.tomb:
		old.tomb, old.value = true, nil
	case bytes.Compare(nr.value, old.value) > 0:
		old.value = nr.value
	}
	old.deleted = old.deleted || nr.deleted
	if uint64(nr.digest) > uint64(old.digest) {
		old.digest = nr.digest
	}
	if !nr.expiresAt.IsZero() && (old.expiresAt.IsZero() || nr.expiresAt.After(old.expiresAt)) {
		// Keep the longer-lived copy's expiry (tests use ties without TTLs).
		old.expiresAt = nr.expiresAt
	}
}
