package schema

import (
	"context"
	"sync"
	"time"
)

// Retention readers. A namespace's tombstone retention is recorded in its
// table's comment (CreateTable) and CAN change after the table is created:
// an operator may ALTER TABLE … WITH comment (and gc_grace_seconds), for
// example to lengthen it while a region is down for longer than it. So
// every reader of it — the store (the TTL of deletion markers), the hint
// applier (the age past which a hint is never applied) and repair (the age
// of a run, the interval check) — reads it through a Retentions, which
// re-reads a table's comment once its value is older than Refresh. A change
// is therefore seen everywhere within Refresh (default one minute) while
// the table can be read. When a refresh fails, the value read last is used
// (it was the table's retention at most a refresh ago, and a reader that
// cannot reach the table is usually not writing to it either); only a
// table whose retention was never read fails.

// DefaultRetentionRefresh is how long a retention read from a table is
// used before it is read again.
const DefaultRetentionRefresh = time.Minute

// DefaultRetentionCacheSize is how many tables' retentions a Retentions
// keeps.
const DefaultRetentionCacheSize = 1024

// RetentionSource reads the retention recorded with one table.
type RetentionSource func(ctx context.Context, table string) (time.Duration, error)

// Retentions caches the tombstone retentions of tables read through a
// RetentionSource: at most Size of them, each re-read after Refresh. It is
// safe for concurrent use.
type Retentions struct {
	source  RetentionSource
	refresh time.Duration
	size    int
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]retentionEntry
}

type retentionEntry struct {
	retention time.Duration
	readAt    time.Time
	// After a failed refresh: the source is not asked again before
	// retryAt; lastErr is what it said.
	retryAt time.Time
	lastErr error
}

// retentionRetry is how long after a failed refresh the value read last
// is used without asking the source again (at most the refresh interval):
// a source that cannot answer does not slow every reader by its timeout.
const retentionRetry = 5 * time.Second

// NewRetentions returns a cache over source. refresh <= 0 means
// DefaultRetentionRefresh, size <= 0 DefaultRetentionCacheSize, now nil
// time.Now.
func NewRetentions(source RetentionSource, refresh time.Duration, size int, now func() time.Time) *Retentions {
	if refresh <= 0 {
		refresh = DefaultRetentionRefresh
	}
	if size <= 0 {
		size = DefaultRetentionCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &Retentions{source: source, refresh: refresh, size: size, now: now, entries: map[string]retentionEntry{}}
}

// Get returns table's retention: the cached value while it is younger than
// the refresh interval; otherwise the source's, or, if the source fails and
// a value was read before, that value — then without asking the source
// again for a few seconds (retentionRetry). stale reports that the value
// is one the source could not confirm just now (err is then the source's
// error).
// When the source fails and nothing was read before, Get returns 0 and
// the source's error.
func (r *Retentions) Get(ctx context.Context, table string) (d time.Duration, stale bool, err error) {
	now := r.now()
	r.mu.Lock()
	e, ok := r.entries[table]
	r.mu.Unlock()
	if ok && now.Sub(e.readAt) < r.refresh {
		return e.retention, false, nil
	}
	if ok && now.Before(e.retryAt) {
		return e.retention, true, e.lastErr
	}
	d, err = r.source(ctx, table)
	if err != nil {
		if ok {
			r.mu.Lock()
			if cur, still := r.entries[table]; still && cur.readAt.Equal(e.readAt) {
				cur.retryAt, cur.lastErr = now.Add(min(retentionRetry, r.refresh)), err
				r.entries[table] = cur
			}
			r.mu.Unlock()
			return e.retention, true, err
		}
		return 0, false, err
	}
	r.Set(table, d)
	return d, false, nil
}

// Set records table's retention as read now (for a caller that has just
// created the table, or read it another way).
func (r *Retentions) Set(table string, d time.Duration) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[table]; !ok && len(r.entries) >= r.size {
		var oldest string
		var oldestAt time.Time
		for k, e := range r.entries {
			if oldest == "" || e.readAt.Before(oldestAt) {
				oldest, oldestAt = k, e.readAt
			}
		}
		delete(r.entries, oldest)
	}
	r.entries[table] = retentionEntry{retention: d, readAt: now}
}

// Len returns how many tables' retentions are cached.
func (r *Retentions) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}
