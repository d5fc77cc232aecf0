package driver

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/schema"
)

// Operation names of a MemoryRegion, for Fault.Ops and Calls.
const (
	OpCreateKeyspace = "create_keyspace"
	OpCreateTable    = "create_table"
	OpTableRetention = "table_retention"
	OpWrite          = "write"
	OpRead           = "read"
	OpScan           = "scan"
	// OpClose is affected by a fault only when Fault.Ops names it.
	OpClose = "close"
)

// Fault is what a MemoryRegion does to the calls it receives, so that a
// test can make a region unavailable, slow, refusing, or failing after a
// number of calls. The zero Fault lets every call through.
type Fault struct {
	// Err, when set, fails every affected call. An error wrapping
	// ErrUnavailable or ErrTimeout is an outage (breakers count it, writes
	// are hinted); any other error is a refusal (the region answered).
	Err error
	// Delay makes every affected call wait this long before it is answered
	// (a slow region). A call whose context ends first returns the
	// context's error and changes nothing.
	Delay time.Duration
	// Gate, when not nil, holds every affected call until it is closed (or
	// the call's context ends, as for Delay): a region that hangs until the
	// test lets it go.
	Gate <-chan struct{}
	// After lets this many affected calls through untouched before the
	// fault applies to the rest.
	After int
	// Times, when > 0, lets the fault apply to that many calls (after
	// After) and none after: a region that fails once, then answers.
	Times int
	// Ops limits the fault to these operations (OpWrite, OpRead, …); empty
	// means every operation except OpClose. Close is held or failed only
	// when Ops names OpClose (a region that is down still lets its client
	// close); having no context, it waits out a Delay or Gate in full.
	Ops []string
}

// Outage is the Fault of a region that is down: every call fails with an
// error wrapping ErrUnavailable.
func Outage() Fault {
	return Fault{Err: fmt.Errorf("%w: memory region is down (driver.Outage)", ErrUnavailable)}
}

// MemoryRegion is an in-memory Executor: one region's tables in a map, with
// Cassandra's last-write-wins reconciliation and TTLs. It lets programs and
// tests run a Store without Cassandra (see MemoryFactory), and simulates
// failures with SetFault. It is safe for concurrent use; Close does not
// discard its data, so a test can inspect it after closing the Store.
type MemoryRegion struct {
	// Now is the clock TTLs are measured against; nil means time.Now. Set
	// it before use.
	Now func() time.Time

	// Observe, when not nil, is called with every call the region
	// receives, as it arrives and before the fault applies (failed calls
	// included): the operation, and the request for OpWrite, OpRead and
	// OpScan (a WriteRequest, ReadRequest or ScanRequest; nil for the
	// others). It lets a test see what was asked of the region, such as
	// the consistency level or a write that the fault failed. It is called
	// concurrently, without the region's lock held, and must not block.
	// Set it before use.
	Observe func(op string, req any)

	mu       sync.Mutex
	fault    Fault
	affected int // calls the fault's Ops matched since SetFault
	held     int // calls waiting out the fault's Delay or Gate now
	calls    map[string]int
	tables   map[string]*memTable // "keyspace.table"
}

type memTable struct {
	retention time.Duration
	parts     map[string]map[string]*cells.Row // pk -> ck -> the row's cells
}

// NewMemoryRegion returns an empty, healthy MemoryRegion.
func NewMemoryRegion() *MemoryRegion {
	return &MemoryRegion{tables: make(map[string]*memTable), calls: make(map[string]int)}
}

// MemoryFactory returns a Factory that hands each region the MemoryRegion
// of its name in regions, for store.Config.NewExecutor. A region missing
// from the map fails Open.
func MemoryFactory(regions map[string]*MemoryRegion) Factory {
	return func(_ context.Context, cfg Config) (Executor, error) {
		m, ok := regions[cfg.Region]
		if !ok {
			return nil, fmt.Errorf("no memory region named %q", cfg.Region)
		}
		return m, nil
	}
}

// SetFault replaces the region's fault; SetFault(Fault{}) heals it. The
// count of Fault.After starts again from zero.
func (m *MemoryRegion) SetFault(f Fault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
	m.affected = 0
}

// Calls returns how many calls of operation op the region has received,
// failed ones included.
func (m *MemoryRegion) Calls(op string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[op]
}

// Held returns how many calls the fault is holding now, waiting out its
// Delay or its Gate: a test waits for it to know that a call has reached
// the region and is stuck there, or that a held call has been let go.
func (m *MemoryRegion) Held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held
}

// Writes returns how many Write calls the region has applied.
func (m *MemoryRegion) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls["applied_"+OpWrite]
}

// Lookup returns the stored version of a row, including a deletion marker,
// as a read returns it; ok is false when there is none or Cassandra's TTL
// has removed it (a row whose Expires has passed but whose TTL has not is
// still returned, as Read does). It ignores the fault.
func (m *MemoryRegion) Lookup(keyspace, table string, pk, ck []byte) (row Row, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[keyspace+"."+table]
	if t == nil {
		return Row{}, false
	}
	r, ok := t.parts[string(pk)][string(ck)]
	if !ok || !r.Visible(m.nowSec()) {
		return Row{}, false
	}
	return m.out(ck, r), true
}

func (m *MemoryRegion) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MemoryRegion) nowSec() int64 { return m.now().Unix() }

// out reads a row's cells as a SELECT of the row's columns returns them:
// value, deleted, writetime(digest), ttl(digest) and expires. As the CQL
// executor does, a live row's null or empty value is an empty slice and a
// row without an expires cell takes its expiry from its remaining TTL.
func (m *MemoryRegion) out(ck []byte, r *cells.Row) Row {
	now := m.now()
	row := Row{CK: bytes.Clone(ck), Deleted: cells.AsBool(r.Deleted), Timestamp: r.Digest.Timestamp}
	if r.Digest.Expiring() {
		row.TTL = int(max(r.Digest.LocalDeletion-now.Unix(), 0))
	}
	if !row.Deleted {
		row.Value = bytes.Clone(r.Value.Value)
		if row.Value == nil {
			row.Value = []byte{}
		}
	}
	row.Expires = schema.Expiry(cells.AsBigint(r.Expires), row.TTL, now)
	return row
}

// enter counts the call, applies the fault and checks the context. It
// returns with mu held when the call may proceed; on error mu is not held.
func (m *MemoryRegion) enter(ctx context.Context, op string, req any) error {
	if m.Observe != nil {
		m.Observe(op, req)
	}
	m.mu.Lock()
	if m.calls == nil {
		m.calls = make(map[string]int)
	}
	m.calls[op]++
	f := m.fault
	hit := slices.Contains(f.Ops, op) || (len(f.Ops) == 0 && op != OpClose)
	if hit {
		m.affected++
		hit = m.affected > f.After && (f.Times <= 0 || m.affected <= f.After+f.Times)
	}
	if !hit || (f.Err == nil && f.Delay <= 0 && f.Gate == nil) {
		if err := ctx.Err(); err != nil {
			m.mu.Unlock()
			return err
		}
		return nil
	}
	holds := f.Delay > 0 || f.Gate != nil
	if holds {
		m.held++
	}
	m.mu.Unlock()
	err := hold(ctx, f)
	m.mu.Lock()
	if holds {
		m.held--
	}
	if err == nil {
		err = f.Err
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		m.mu.Unlock()
	}
	return err
}

// hold waits out f's Delay, then its Gate, or until ctx ends.
func hold(ctx context.Context, f Fault) error {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if f.Gate != nil {
		select {
		case <-f.Gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
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
	if err := m.enter(ctx, OpCreateKeyspace, nil); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// CreateTable implements Executor.
func (m *MemoryRegion) CreateTable(ctx context.Context, keyspace, table string, retention time.Duration) error {
	if err := m.enter(ctx, OpCreateTable, nil); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if m.tables[keyspace+"."+table] == nil {
		m.tables[keyspace+"."+table] = &memTable{retention: retention, parts: make(map[string]map[string]*cells.Row)}
	}
	return nil
}

// SetTableRetention changes the retention recorded with a table, as an
// operator's ALTER TABLE … WITH comment would. It ignores the fault.
func (m *MemoryRegion) SetTableRetention(keyspace, table string, retention time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(keyspace, table)
	if err != nil {
		return err
	}
	t.retention = retention
	return nil
}

// TableRetention implements Executor.
func (m *MemoryRegion) TableRetention(ctx context.Context, keyspace, table string) (time.Duration, error) {
	if err := m.enter(ctx, OpTableRetention, nil); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	t, err := m.table(keyspace, table)
	if err != nil {
		return 0, err
	}
	return t.retention, nil
}

// Write implements Executor: each column of each row is reconciled with the
// stored cell as Cassandra 5.0 does (internal/cells, the same model the
// integration tests check against a real Cassandra), from the columns the
// CQL executor binds (schema.RowCells, schema.InsertValues).
func (m *MemoryRegion) Write(ctx context.Context, w WriteRequest) error {
	if err := m.enter(ctx, OpWrite, w); err != nil {
		return err
	}
	defer m.mu.Unlock()
	t, err := m.table(w.Keyspace, w.Table)
	if err != nil {
		return err
	}
	m.calls["applied_"+OpWrite]++
	part := t.parts[string(w.PK)]
	if part == nil {
		part = make(map[string]*cells.Row)
		t.parts[string(w.PK)] = part
	}
	now := m.nowSec()
	for _, r := range w.Rows {
		cr := part[string(r.CK)]
		if cr == nil {
			cr = &cells.Row{}
			part[string(r.CK)] = cr
		}
		cr.Apply(columnsOf(r), r.Timestamp, int64(r.TTL), now)
	}
	return nil
}

// columnsOf is what the CQL executor binds for r, as cells.
func columnsOf(r Row) cells.Columns {
	v := schema.InsertValues(nil, r.CK, schema.RowCells(r.Deleted, r.Value, r.Expires), r.Timestamp, r.TTL)
	return cells.Columns{
		Value:       bytes.Clone(v[2].([]byte)),
		Deleted:     cells.Bool(v[3].(bool)),
		Digest:      cells.Bigint(v[4].(int64)),
		Expires:     cells.Bigint(v[5].(int64)),
		Fingerprint: cells.Bigint(v[6].(int64)),
		Version:     cells.Bigint(v[7].(int64)),
	}
}

// Read implements Executor.
func (m *MemoryRegion) Read(ctx context.Context, q ReadRequest) (Row, error) {
	if err := m.enter(ctx, OpRead, q); err != nil {
		return Row{}, err
	}
	defer m.mu.Unlock()
	t, err := m.table(q.Keyspace, q.Table)
	if err != nil {
		return Row{}, err
	}
	r, ok := t.parts[string(q.PK)][string(q.CK)]
	if !ok || !r.Visible(m.nowSec()) {
		return Row{}, ErrNotFound
	}
	return m.out(q.CK, r), nil
}

// Scan implements Executor.
func (m *MemoryRegion) Scan(ctx context.Context, q ScanRequest) ([]Row, error) {
	if err := m.enter(ctx, OpScan, q); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
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
		if !r.Visible(m.nowSec()) {
			continue
		}
		row := m.out([]byte(k), r)
		rows = append(rows, row)
		size += len(row.CK) + len(row.Value)
	}
	return rows, nil
}

// Close implements Executor. It keeps the data, and is affected by the
// fault only when Fault.Ops names OpClose.
func (m *MemoryRegion) Close() error {
	if err := m.enter(context.Background(), OpClose, nil); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}
