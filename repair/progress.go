package repair

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// RunInfo describes one repair run of a namespace.
type RunInfo struct {
	// ID identifies the run.
	ID string
	// Namespace is the namespace repaired.
	Namespace string
	// Segments is the number of segments the ring is split into for this
	// run (a resumed run keeps its own split).
	Segments int
	// StartedAt is when the run was created.
	StartedAt time.Time
	// FinishedAt is when the last segment was done; zero while running.
	FinishedAt time.Time
	// Resumed is set by Begin when the run it returns already existed
	// (created by an earlier call, or concurrently by another process)
	// rather than being created by this call. It is not stored.
	Resumed bool
}

// SegmentRecord is the persisted outcome of one segment of a run.
type SegmentRecord struct {
	// Index is the segment's index in the run's split.
	Index int
	// Done is true once the segment was repaired; it is never unset.
	Done bool
	// FinishedAt is when it was done.
	FinishedAt time.Time
	// Owner is the process that last worked on it.
	Owner string
	// RowsScanned, RowsDiffering and RowsWritten are the counts of the
	// attempt that finished it.
	RowsScanned, RowsDiffering, RowsWritten int64
	// Attempts is how many attempts the owner made.
	Attempts int
	// LastError is the error of the last failed attempt.
	LastError string
}

// ProgressStore persists the progress of repair runs and hands out segment
// leases, so that a crashed run resumes and several daemons share a run. The
// real one is [NewCQLProgress] (Cassandra tables and lightweight
// transactions); [NewMemProgress] keeps everything in memory. Implementations
// must be safe for concurrent use.
type ProgressStore interface {
	// Begin returns the namespace's current unfinished run (with Resumed
	// set) or, if there is none, creates one with the given number of
	// segments. Concurrent callers get the same run.
	Begin(ctx context.Context, namespace string, segments int) (RunInfo, error)
	// Abandon stops run from being the namespace's current run without
	// finishing it (it stays unfinished in the history), so that the next
	// Begin creates a new run. It does nothing if run is no longer the
	// current run, so concurrent callers abandon a run at most once.
	Abandon(ctx context.Context, run RunInfo) error
	// Segments returns the records of the run's segments that have one.
	Segments(ctx context.Context, run RunInfo) (map[int]SegmentRecord, error)
	// Acquire takes the lease on a segment for owner, for ttl. It returns
	// false if another owner holds it. Re-acquiring one's own lease succeeds.
	Acquire(ctx context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error)
	// Renew extends owner's lease; false means the lease was lost.
	Renew(ctx context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error)
	// Release gives owner's lease up.
	Release(ctx context.Context, run RunInfo, segment int, owner string) error
	// Record stores a segment's record (done or failed attempt).
	Record(ctx context.Context, run RunInfo, rec SegmentRecord) error
	// Finish marks the run finished, so that the next Begin creates a new
	// one, and keeps it as the namespace's last finished run.
	Finish(ctx context.Context, run RunInfo, at time.Time) error
	// LastFinished returns the namespace's most recent finished run.
	LastFinished(ctx context.Context, namespace string) (RunInfo, bool, error)
}

// NewRunID returns a new random run identifier. Identifiers sort in the
// order they were made, to the microsecond (runs started in the same second
// are ordered too), then by 8 random bytes.
func NewRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}

// MemProgress is a ProgressStore in memory: progress survives a cancelled
// Run within the process, not a crash. Dry runs use a fresh one.
type MemProgress struct {
	// Now is the clock for leases; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	current  map[string]RunInfo
	last     map[string]RunInfo
	segments map[string]map[int]SegmentRecord
	leases   map[string]memLease
	runs     map[string][]RunInfo // by namespace, oldest first
	control  map[string]Directive // by run ID
}

type memLease struct {
	owner string
	until time.Time
}

// NewMemProgress returns an empty in-memory store.
func NewMemProgress() *MemProgress {
	return &MemProgress{current: map[string]RunInfo{}, last: map[string]RunInfo{},
		segments: map[string]map[int]SegmentRecord{}, leases: map[string]memLease{},
		runs: map[string][]RunInfo{}, control: map[string]Directive{}}
}

func (m *MemProgress) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Begin implements ProgressStore.
func (m *MemProgress) Begin(_ context.Context, namespace string, segments int) (RunInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.current[namespace]; ok {
		r.Resumed = true
		return r, nil
	}
	r := RunInfo{ID: NewRunID(), Namespace: namespace, Segments: segments, StartedAt: m.now()}
	m.current[namespace] = r
	m.segments[r.ID] = map[int]SegmentRecord{}
	m.runs[namespace] = append(m.runs[namespace], r)
	return r, nil
}

// Abandon implements ProgressStore.
func (m *MemProgress) Abandon(_ context.Context, run RunInfo) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.current[run.Namespace]; ok && cur.ID == run.ID {
		delete(m.current, run.Namespace)
	}
	return nil
}

// Segments implements ProgressStore.
func (m *MemProgress) Segments(_ context.Context, run RunInfo) (map[int]SegmentRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int]SegmentRecord, len(m.segments[run.ID]))
	for k, v := range m.segments[run.ID] {
		out[k] = v
	}
	return out, nil
}

func leaseKey(run RunInfo, seg int) string { return fmt.Sprintf("%s/%d", run.ID, seg) }

// Acquire implements ProgressStore.
func (m *MemProgress) Acquire(_ context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, now := leaseKey(run, segment), m.now()
	if l, ok := m.leases[k]; ok && now.Before(l.until) && l.owner != owner {
		return false, nil
	}
	m.leases[k] = memLease{owner: owner, until: now.Add(ttl)}
	return true, nil
}

// Renew implements ProgressStore.
func (m *MemProgress) Renew(_ context.Context, run RunInfo, segment int, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, now := leaseKey(run, segment), m.now()
	l, ok := m.leases[k]
	if !ok || l.owner != owner || !now.Before(l.until) {
		return false, nil
	}
	m.leases[k] = memLease{owner: owner, until: now.Add(ttl)}
	return true, nil
}

// Release implements ProgressStore.
func (m *MemProgress) Release(_ context.Context, run RunInfo, segment int, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := leaseKey(run, segment)
	if l, ok := m.leases[k]; ok && l.owner == owner {
		delete(m.leases, k)
	}
	return nil
}

// Record implements ProgressStore.
func (m *MemProgress) Record(_ context.Context, run RunInfo, rec SegmentRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.segments[run.ID] == nil {
		m.segments[run.ID] = map[int]SegmentRecord{}
	}
	if old, ok := m.segments[run.ID][rec.Index]; ok && old.Done && !rec.Done {
		return nil // a failed attempt never undoes a finished segment
	}
	m.segments[run.ID][rec.Index] = rec
	return nil
}

// Finish implements ProgressStore.
func (m *MemProgress) Finish(_ context.Context, run RunInfo, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.current[run.Namespace]; ok && cur.ID == run.ID {
		delete(m.current, run.Namespace)
	}
	run.FinishedAt, run.Resumed = at, false
	for i, h := range m.runs[run.Namespace] {
		if h.ID == run.ID {
			m.runs[run.Namespace][i].FinishedAt = at
		}
	}
	if l, ok := m.last[run.Namespace]; !ok || l.StartedAt.Before(run.StartedAt) || l.ID == run.ID {
		m.last[run.Namespace] = run
	}
	return nil
}

// LastFinished implements ProgressStore.
func (m *MemProgress) LastFinished(_ context.Context, namespace string) (RunInfo, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.last[namespace]
	return r, ok, nil
}

// Current implements RunLister.
func (m *MemProgress) Current(_ context.Context, namespace string) (RunInfo, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.current[namespace]
	return r, ok, nil
}

// Runs implements RunLister.
func (m *MemProgress) Runs(_ context.Context, namespace string, limit int) ([]RunInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.runs[namespace]
	var out []RunInfo
	for i := len(h) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, h[i])
	}
	return out, nil
}

// Directive implements ControlStore.
func (m *MemProgress) Directive(_ context.Context, run RunInfo) (Directive, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.control[run.ID], nil
}

// SetDirective implements ControlStore.
func (m *MemProgress) SetDirective(_ context.Context, run RunInfo, d Directive) error {
	if err := d.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.control[run.ID] = mergeDirective(m.control[run.ID], d)
	return nil
}

// mergeDirective returns old with the fields d sets.
func mergeDirective(old, d Directive) Directive {
	if d.State != "" {
		old.State = d.State
	}
	if d.Intensity != nil {
		v := *d.Intensity
		old.Intensity = &v
	}
	if d.RowsPerSecond != nil {
		v := *d.RowsPerSecond
		old.RowsPerSecond = &v
	}
	if d.Scope != "" {
		old.Scope = d.Scope
	}
	old.By, old.At = d.By, d.At
	return old
}

var (
	_ ControlStore = (*MemProgress)(nil)
	_ RunLister    = (*MemProgress)(nil)
	_ ControlStore = (*CQLProgress)(nil)
	_ RunLister    = (*CQLProgress)(nil)
)
