package conflicts

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// Memory is a Sink and Source held in memory, for tests. Like the table,
// it keeps one record per conflict (namespace, key and both timestamps):
// a conflict written twice is stored once, the later write kept.
type Memory struct {
	// Fault, when set, is called before every write; a non-nil error
	// fails it.
	Fault func() error

	mu      sync.Mutex
	records []Record
	writes  int
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{} }

// WriteConflict implements Sink.
func (m *Memory) WriteConflict(_ context.Context, r Record, _ time.Duration) error {
	if m.Fault != nil {
		if err := m.Fault(); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	r.PK, r.CK = bytes.Clone(r.PK), bytes.Clone(r.CK)
	for i, o := range m.records {
		if o.Namespace == r.Namespace && bytes.Equal(o.PK, r.PK) && bytes.Equal(o.CK, r.CK) &&
			o.Winner.Timestamp == r.Winner.Timestamp && o.Loser.Timestamp == r.Loser.Timestamp {
			m.records[i] = r
			return nil
		}
	}
	m.records = append(m.records, r)
	return nil
}

// Writes returns how many writes succeeded (duplicates included).
func (m *Memory) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// ListConflicts implements Source.
func (m *Memory) ListConflicts(_ context.Context, namespace string, q Query) ([]Record, error) {
	q, err := q.Resolve(time.Now())
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	var out []Record
	for _, r := range m.records {
		if r.Namespace == namespace && in(r, q) {
			out = append(out, r)
		}
	}
	m.mu.Unlock()
	sortNewest(out)
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Merge returns records with duplicates (one conflict read from several
// regions) removed, newest winning write first, at most limit.
func Merge(records []Record, limit int) []Record {
	sortNewest(records)
	out := records[:0]
	for _, r := range records {
		if k := len(out); k > 0 {
			p := out[k-1]
			if p.Winner.Timestamp == r.Winner.Timestamp && p.Loser.Timestamp == r.Loser.Timestamp &&
				bytes.Equal(p.PK, r.PK) && bytes.Equal(p.CK, r.CK) {
				continue
			}
		}
		out = append(out, r)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
