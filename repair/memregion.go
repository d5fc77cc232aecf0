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

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/schema"
)

// MemRegion is a region held in memory, for tests and examples. It stores
// the cells of every row and reconciles each write cell by cell as
// Cassandra 5.0 does, through internal/cells — the model that
// store/driver's MemoryRegion uses too and that the shared tie table
// (internal/cells/testdata/ties.txt) checks against a real Cassandra. A
// write binds what schema.InsertValues binds (row format 2: every column,
// none null) with its timestamp and TTL, applied at Now. Cells expire by
// their TTL against Now; a row whose cells are still there is scanned and
// read with its absolute expiry (the expires column), even once that has
// passed, as Cassandra returns a row a node applied late.
//
// Tokens come from the Token function, which defaults to a 64-bit hash of
// the partition key: the order of rows is consistent between MemRegions but
// is not Murmur3's.
type MemRegion struct {
	// Token maps a partition key to its token. Set it before use.
	Token func(pk []byte) int64
	// Now is the clock for TTLs and expiries; nil means time.Now.
	Now func() time.Time
	// Fault, when set, is called before every operation with its name
	// ("describe", "scan", "read", "write"); a non-nil error fails the
	// operation.
	Fault func(op string) error
	// Retention is what Describe reports.
	Retention time.Duration
	// IndexUnavailable makes FingerprintSince fail with ErrNoVersionIndex,
	// as a version index not built yet does. IndexEnsured counts the
	// EnsureVersionIndex calls.
	IndexUnavailable bool
	IndexEnsured     int

	mu     sync.Mutex
	tables map[string]map[string]*memRow
}

type memRow struct {
	token  int64
	pk, ck []byte
	cells  cells.Row
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

// read is the row as a SELECT at now returns it, or false when no cell is
// left: writetime(digest), ttl(digest), and the expiry from the expires
// column (schema.Expiry). A live row's value is never nil; a marker's is.
func (r *memRow) read(now time.Time) (v RowValue, digest int64, ok bool) {
	c := &r.cells
	if !c.Visible(now.Unix()) {
		return RowValue{}, 0, false
	}
	v = RowValue{Deleted: cells.AsBool(c.Deleted), Timestamp: c.Digest.Timestamp}
	if c.Digest.Expiring() {
		v.TTL = int32(max(c.Digest.LocalDeletion-now.Unix(), 0))
	}
	v.Expires = schema.Expiry(cells.AsBigint(c.Expires), int(v.TTL), now)
	if !v.Deleted {
		v.Value = append([]byte{}, c.Value.Value...)
	}
	return v, cells.AsBigint(c.Digest), true
}

// ScanDigests returns the rows of r in scan order (a snapshot), each
// marked Expired when its expiry has passed at Now.
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
		if !r.Contains(row.token) {
			continue
		}
		v, digest, ok := row.read(now)
		if !ok {
			continue
		}
		rows = append(rows, DigestRow{
			Token: row.token, PK: bytes.Clone(row.pk), CK: bytes.Clone(row.ck),
			Timestamp: v.Timestamp, Digest: digest, Deleted: v.Deleted, TTL: v.TTL,
			Expires: v.Expires, Expired: !schema.Visible(v.Expires, now),
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
	row, ok := t[string(schema.PartitionKeyBytes(pk, ck))]
	if !ok {
		return RowValue{}, false, nil
	}
	v, _, ok := row.read(m.now())
	return v, ok, nil
}

// WriteRow applies w's INSERTs (Write.Cells) with w's timestamp and the TTL
// left until w.Expires at Now; a row already expired is not written
// (ErrExpired).
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
	now := m.now()
	ttl, expired := schema.TTLUntil(w.Expires, now)
	if expired {
		return fmt.Errorf("%w: expiry %s passed", ErrExpired, time.Unix(w.Expires, 0).UTC().Format(time.RFC3339))
	}
	for _, c := range w.Cells() {
		m.insert(t, w.PK, w.CK, c, w.Timestamp, ttl, now)
	}
	return nil
}

// Put writes a row as the store does: its absolute expiry is now + ttl
// rounded up to whole seconds (schema.ExpiryAfter; ttl <= 0: never), the
// TTL written is the one left until it, and the digest is computed from
// deleted and value (schema.RowCells). It ignores the fault and creates
// the namespace if needed.
func (m *MemRegion) Put(namespace string, pk, ck []byte, ts int64, deleted bool, value []byte, ttl time.Duration) {
	now := m.now()
	expires := schema.ExpiryAfter(now, ttl)
	secs, _ := schema.TTLUntil(expires, now)
	m.Insert(namespace, pk, ck, schema.RowCells(deleted, value, expires), ts, secs)
}

// Insert applies one INSERT as schema.InsertValues binds it — cells c,
// timestamp ts and a Cassandra TTL of ttl seconds (0 = none), whatever
// c.Expires says — at Now: what a node that applies a write late does (a
// TTL longer than the expiry left), or a writer that binds its own digest.
// It ignores the fault and creates the namespace if needed.
func (m *MemRegion) Insert(namespace string, pk, ck []byte, c schema.Cells, ts int64, ttl int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tables[namespace]
	if !ok {
		t = map[string]*memRow{}
		m.tables[namespace] = t
	}
	m.insert(t, pk, ck, c, ts, ttl, m.now())
}

// InsertWithoutFingerprint is Insert by a writer from before the fp
// column existed: every other column is bound, fp and ver are left as they
// were (for a new row: none, so the row is counted apart by
// FingerprintRange and not seen by FingerprintSince).
func (m *MemRegion) InsertWithoutFingerprint(namespace string, pk, ck []byte, c schema.Cells, ts int64, ttl int) {
	m.insertOld(namespace, pk, ck, c, ts, ttl, false)
}

// InsertWithoutVersion is Insert by a writer from before the ver column
// existed (it sets fp): ver is left as it was, so the row is not seen, or
// is seen with its old version, by FingerprintSince.
func (m *MemRegion) InsertWithoutVersion(namespace string, pk, ck []byte, c schema.Cells, ts int64, ttl int) {
	m.insertOld(namespace, pk, ck, c, ts, ttl, true)
}

// insertOld is Insert by an older writer: without ver, and without fp
// unless fp.
func (m *MemRegion) insertOld(namespace string, pk, ck []byte, c schema.Cells, ts int64, ttl int, fp bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tables[namespace]
	if !ok {
		t = map[string]*memRow{}
		m.tables[namespace] = t
	}
	m.insertCells(t, pk, ck, c, ts, ttl, m.now(), fp, false)
}

// insert reconciles the columns InsertValues binds for c into the row's
// cells, as a node whose clock reads now applies them.
func (m *MemRegion) insert(t map[string]*memRow, pk, ck []byte, c schema.Cells, ts int64, ttl int, now time.Time) {
	m.insertCells(t, pk, ck, c, ts, ttl, now, true, true)
}

// insertCells is insert; fp or ver false leaves that column out of the
// write, as a writer from before it existed does.
func (m *MemRegion) insertCells(t map[string]*memRow, pk, ck []byte, c schema.Cells, ts int64, ttl int, now time.Time, fp, ver bool) {
	key := string(schema.PartitionKeyBytes(pk, ck))
	row, ok := t[key]
	if !ok {
		row = &memRow{token: m.Token(pk), pk: bytes.Clone(pk), ck: bytes.Clone(ck)}
		t[key] = row
	}
	bound := schema.InsertValues(pk, ck, c, ts, ttl)
	cols := cells.Columns{Value: bytes.Clone(bound[2].([]byte)), Deleted: cells.Bool(bound[3].(bool)),
		Digest: cells.Bigint(bound[4].(int64)), Expires: cells.Bigint(bound[5].(int64))}
	if fp {
		cols.Fingerprint = cells.Bigint(bound[6].(int64))
	}
	if ver {
		cols.Version = cells.Bigint(bound[7].(int64))
	}
	row.cells.Apply(cols, ts, int64(ttl), now.Unix())
}

// Get returns the row as a read returns it (its cells are there, even if
// its expiry has passed) and its digest. It ignores the fault.
func (m *MemRegion) Get(namespace string, pk, ck []byte) (RowValue, int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	row, ok := m.tables[namespace][string(schema.PartitionKeyBytes(pk, ck))]
	if !ok {
		return RowValue{}, 0, false
	}
	return row.read(m.now())
}

// Len returns the number of rows of a namespace whose cells are there
// (deletion markers and rows past their expiry included).
func (m *MemRegion) Len(namespace string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	now := m.now().Unix()
	for _, r := range m.tables[namespace] {
		if r.cells.Visible(now) {
			n++
		}
	}
	return n
}
