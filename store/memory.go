package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

// MemoryRegion is an in-memory Executor: one region's tables in a map, with
// Cassandra's last-write-wins reconciliation and TTLs. It lets programs and
// tests run a Store without Cassandra (see MemoryFactory), and can simulate
// an outage (SetUnavailable). It is safe for concurrent use; Close does not
// discard its data, so a test can inspect it after closing the Store.
type MemoryRegion struct {
	// Now is the clock TTLs are measured against; nil means time.Now. Set
	// it before use.
	Now func() time.Time

	mu     sync.Mutex
	down   error
	tables map[string]*memTable // "keyspace.table"
	writes int
}

type memTable struct {
	retention time.Duration
	parts     map[string]map[string]memRow // pk -> ck -> row
}

type memRow struct {
	row     Row // TTL unused
	expires time.Time
}

// NewMemoryRegion returns an empty, available MemoryRegion.
func NewMemoryRegion() *MemoryRegion {
	return &MemoryRegion{tables: make(map[string]*memTable)}
}

// MemoryFactory returns an ExecutorFactory that hands each region the
// MemoryRegion of its name in regions, for Config.NewExecutor. A region
// missing from the map fails Open.
func MemoryFactory(regions map[string]*MemoryRegion) ExecutorFactory {
	return func(_ context.Context, rc RegionConfig, _ string, _ ExecutorConfig) (Executor, error) {
		m, ok := regions[rc.Name]
		if !ok {
			return nil, fmt.Errorf("no memory region named %q", rc.Name)
		}
		return m, nil
	}
}

// SetUnavailable makes every later call fail with an error wrapping
// ErrUnavailable (down = true), or work again (down = false).
func (m *MemoryRegion) SetUnavailable(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = nil
	if down {
		m.down = fmt.Errorf("%w: memory region is down", ErrUnavailable)
	}
}

// Writes returns how many Write calls the region has applied.
func (m *MemoryRegion) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// Lookup returns the stored version of a row, including a deletion marker,
// as Cassandra holds it; ok is false when there is none or it expired.
func (m *MemoryRegion) Lookup(keyspace, table string, pk, ck []byte) (row Row, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[keyspace+"."+table]
	if t == nil {
		return Row{}, false
	}
	r, ok := t.parts[string(pk)][string(ck)]
	if !ok || m.expired(r) {
		return Row{}, false
	}
	return m.out(r), true
}

func (m *MemoryRegion) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MemoryRegion) expired(r memRow) bool {
	return !r.expires.IsZero() && !m.now().Before(r.expires)
}

func (m *MemoryRegion) out(r memRow) Row {
	row := r.row
	row.CK = bytes.Clone(row.CK)
	row.Value = bytes.Clone(row.Value)
	row.TTL = 0
	if !r.expires.IsZero() {
		row.TTL = int(r.expires.Sub(m.now()) / time.Second)
	}
	return row
}

// enter checks for an outage and the context; it must be called with mu held.
func (m *MemoryRegion) enter(ctx context.Context) error {
	if m.down != nil {
		return m.down
	}
	return ctx.Err()
}

func (m *MemoryRegion) table(keyspace, table string) (*memTable, error) {
	t := m.tables[keyspace+"."+table]
	if t == nil {
		return nil, fmt.Errorf("table %s.%s does not exist (create it with CreateNamespace)", keyspace, table)
	}
	return t, nil
}

// CreateKeyspace implements Executor; keyspaces need no setup in memory.
func (m *MemoryRegion) CreateKeyspace(ctx context.Context, _ string, _ int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enter(ctx)
}

// CreateTable implements Executor.
func (m *MemoryRegion) CreateTable(ctx context.Context, keyspace, table string, retention time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return err
	}
	if m.tables[keyspace+"."+table] == nil {
		m.tables[keyspace+"."+table] = &memTable{retention: retention, parts: make(map[string]map[string]memRow)}
	}
	return nil
}

// TableRetention implements Executor.
func (m *MemoryRegion) TableRetention(ctx context.Context, keyspace, table string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return 0, err
	}
	t, err := m.table(keyspace, table)
	if err != nil {
		return 0, err
	}
	return t.retention, nil
}

// Write implements Executor: each row replaces the stored version only if
// it wins by quorum.Compare, as Cassandra's cell reconciliation does.
func (m *MemoryRegion) Write(ctx context.Context, w WriteRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return err
	}
	t, err := m.table(w.Keyspace, w.Table)
	if err != nil {
		return err
	}
	m.writes++
	part := t.parts[string(w.PK)]
	if part == nil {
		part = make(map[string]memRow)
		t.parts[string(w.PK)] = part
	}
	now := m.now()
	for _, r := range w.Rows {
		nr := memRow{row: Row{CK: bytes.Clone(r.CK), Value: bytes.Clone(r.Value), Deleted: r.Deleted, Timestamp: r.Timestamp}}
		if r.TTL > 0 {
			nr.expires = now.Add(time.Duration(r.TTL) * time.Second)
		}
		if old, ok := part[string(r.CK)]; ok && quorum.Compare(versionOf(nr.row), versionOf(old.row)) <= 0 {
			continue
		}
		part[string(r.CK)] = nr
	}
	return nil
}

// Read implements Executor.
func (m *MemoryRegion) Read(ctx context.Context, q ReadRequest) (Row, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return Row{}, err
	}
	t, err := m.table(q.Keyspace, q.Table)
	if err != nil {
		return Row{}, err
	}
	r, ok := t.parts[string(q.PK)][string(q.CK)]
	if !ok || m.expired(r) {
		return Row{}, ErrNotFound
	}
	return m.out(r), nil
}

// Scan implements Executor.
func (m *MemoryRegion) Scan(ctx context.Context, q ScanRequest) ([]Row, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.enter(ctx); err != nil {
		return nil, err
	}
	t, err := m.table(q.Keyspace, q.Table)
	if err != nil {
		return nil, err
	}
	part := t.parts[string(q.PK)]
	keys := make([]string, 0, len(part))
	for k := range part {
		if q.After == nil || k > string(q.After) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var rows []Row
	size := 0
	for _, k := range keys {
		if len(rows) >= q.Limit || size >= q.MaxBytes {
			break
		}
		r := part[k]
		if m.expired(r) {
			continue
		}
		rows = append(rows, m.out(r))
		size += len(r.row.CK) + len(r.row.Value)
	}
	return rows, nil
}

// Close implements Executor. It keeps the data.
func (m *MemoryRegion) Close() error { return nil }
