package hints

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
)

// Applier writes one hint into the region it is for. Apply must be
// idempotent: the replayer applies a hint again after a crash or a
// rebalance. An error that wraps [ErrPermanent] means retrying can never
// succeed (the replayer dead-letters the hint with [ReasonRejected]); an
// error that wraps [ErrExpired] means the hint is too old to apply (dead
// letter, [ReasonExpired]). Any other error is retried: while every hint
// fails the replayer pauses without limit (the region is down); a hint that
// keeps failing while the region takes other writes is dead-lettered after
// ReplayerConfig.MaxHintAttempts attempts. An Applier that also implements
// [Prober] lets the replayer tell the two cases apart precisely.
type Applier interface {
	Apply(ctx context.Context, h record.Hint) error
}

// Prober is an optional interface of an [Applier]. Probe reports whether
// the region could take h now — whether the replicas h would be written to
// answer — without writing h. nil means they answer: if Apply of h fails
// anyway, the hint itself is at fault, and that failure counts towards
// ReplayerConfig.MaxHintAttempts. A non-nil error means the region (or
// that part of it) is unreachable: the failure does not count, and the
// replayer pauses.
type Prober interface {
	Probe(ctx context.Context, h record.Hint) error
}

// ApplierFunc adapts a function to [Applier].
type ApplierFunc func(ctx context.Context, h record.Hint) error

// Apply calls f.
func (f ApplierFunc) Apply(ctx context.Context, h record.Hint) error { return f(ctx, h) }

// ErrPermanent marks an Apply error that retrying cannot fix, such as a
// statement the region refuses as invalid (for example a namespace whose
// table does not exist there).
var ErrPermanent = errors.New("hints: hint can never be applied")

// ErrExpired reports a hint that must not be applied any more: its
// ExpiresAt has passed (its row would already be gone everywhere else), or
// it is older than the tombstone retention of its table (a deletion marker
// that superseded it may already have expired, so applying it could
// resurrect a deleted row).
var ErrExpired = errors.New("hints: hint expired")

// CQL applier defaults.
const (
	// DefaultRetentionRefresh is how long a table's tombstone retention,
	// read from its comment, is used before it is read again.
	DefaultRetentionRefresh = time.Minute
	// DefaultRetentionCacheSize is how many tables' retentions are cached.
	DefaultRetentionCacheSize = 1024
)

// CQLApplierOption configures [NewCQLApplier].
type CQLApplierOption func(*cqlApplier)

// WithRetentionRefresh sets how long the applier trusts a table's retention
// read from its comment before reading it again (default
// DefaultRetentionRefresh, one minute). Shorter notices a changed retention
// sooner at the cost of more reads of system_schema.tables; values <= 0
// keep the default.
func WithRetentionRefresh(d time.Duration) CQLApplierOption {
	return func(a *cqlApplier) {
		if d > 0 {
			a.retentions.refresh = d
		}
	}
}

// WithRetentionCacheSize bounds how many tables' retentions the applier
// keeps (default DefaultRetentionCacheSize). When it is full, the entry read
// longest ago makes room. Values <= 0 keep the default.
func WithRetentionCacheSize(n int) CQLApplierOption {
	return func(a *cqlApplier) {
		if n > 0 {
			a.retentions.size = n
		}
	}
}

// NewCQLApplier returns an Applier that writes hints through session, which
// must be restricted to the region the hints are for (cluster.Connect). It
// writes every cell of the row with schema.Insert at LOCAL_QUORUM, USING
// TIMESTAMP h.Timestamp and a TTL of the seconds left until h.ExpiresAt, so
// an older hint never overwrites a newer write and a TTL'd row expires when
// it would have in the other regions.
//
// Before writing, it reads the tombstone retention of the hint's table from
// the table's comment (schema.CreateTable records it; cached, see
// [WithRetentionRefresh] and [WithRetentionCacheSize]) and refuses, with
// [ErrExpired] wrapped in [ErrPermanent], a hint older than that retention
// — its age measured from the earlier of CreatedAt and Timestamp (Timestamp
// alone when CreatedAt is zero) — or whose ExpiresAt has passed. A table
// missing in the region, or whose comment records no retention, refuses
// the hint with ErrPermanent.
//
// The returned Applier also implements [Prober]: it reads the hint's row at
// LOCAL_QUORUM (schema.SelectRow) and reports the region unreachable only
// when the coordinator or the replicas do not answer (no connection,
// timeouts, Unavailable, Overloaded, bootstrapping).
func NewCQLApplier(session *gocql.Session, keyspace string, opts ...CQLApplierOption) Applier {
	write := func(ctx context.Context, stmt string, args []any) error {
		return session.Query(stmt, args...).Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
	}
	read := func(ctx context.Context, stmt string, args []any) error {
		return session.Query(stmt, args...).Consistency(gocql.LocalQuorum).Idempotent(true).IterContext(ctx).Close()
	}
	comment := func(ctx context.Context, table string) (string, error) {
		var c string
		err := session.Query(schema.SelectTableComment, keyspace, table).Consistency(gocql.LocalOne).ScanContext(ctx, &c)
		return c, err
	}
	return newCQLApplier(keyspace, write, read, comment, opts...)
}

// newCQLApplier builds the applier over its three I/O edges, which tests
// replace.
func newCQLApplier(keyspace string, write, read func(ctx context.Context, stmt string, args []any) error,
	comment func(ctx context.Context, table string) (string, error), opts ...CQLApplierOption) *cqlApplier {
	a := &cqlApplier{
		keyspace: keyspace,
		now:      time.Now,
		write:    write,
		read:     read,
		retentions: &retentionCache{
			refresh: DefaultRetentionRefresh,
			size:    DefaultRetentionCacheSize,
			entries: map[string]retentionEntry{},
		},
	}
	a.retentions.source = func(ctx context.Context, table string) (time.Duration, error) {
		c, err := comment(ctx, table)
		if errors.Is(err, gocql.ErrNotFound) {
			return 0, fmt.Errorf("%w: table %s.%s does not exist in this region; create the namespace there (the store does) or check the name", ErrPermanent, keyspace, table)
		}
		if err != nil {
			return 0, fmt.Errorf("hints: read the tombstone retention of %s.%s: %w", keyspace, table, err)
		}
		d, err := schema.ParseRetention(c)
		if err != nil {
			return 0, fmt.Errorf("%w: table %s.%s: %w; without its tombstone retention a hint could resurrect deleted rows (Tidemark writes '%s retention=<seconds>' as the comment)",
				ErrPermanent, keyspace, table, err, schema.CommentPrefix)
		}
		return d, nil
	}
	for _, o := range opts {
		o(a)
	}
	a.retentions.now = func() time.Time { return a.now() }
	return a
}

type cqlApplier struct {
	keyspace   string
	now        func() time.Time
	write      func(ctx context.Context, stmt string, args []any) error
	read       func(ctx context.Context, stmt string, args []any) error
	retentions *retentionCache
}

func (a *cqlApplier) Apply(ctx context.Context, h record.Hint) error {
	args, err := a.bind(h)
	if err != nil {
		return err
	}
	retention, err := a.retentions.get(ctx, h.Namespace)
	if err != nil {
		return err
	}
	if birth := h.Birth(); a.now().Sub(birth) > retention {
		return fmt.Errorf("%w: %w: written %s, more than the tombstone retention %v of %s.%s ago; a deletion marker that superseded it may be gone, repair covers the row",
			ErrPermanent, ErrExpired, birth.UTC().Format(time.RFC3339), retention, a.keyspace, h.Namespace)
	}
	err = a.write(ctx, schema.Insert(a.keyspace, h.Namespace), args)
	if err == nil {
		return nil
	}
	var reqErr gocql.RequestError
	if errors.As(err, &reqErr) {
		switch reqErr.Code() {
		case gocql.ErrCodeInvalid, gocql.ErrCodeSyntax:
			return fmt.Errorf("%w: region refused the write: %w", ErrPermanent, err)
		}
	}
	return fmt.Errorf("hints: apply hint to %s.%s: %w", a.keyspace, h.Namespace, err)
}

// Probe implements [Prober].
func (a *cqlApplier) Probe(ctx context.Context, h record.Hint) error {
	args, err := a.bind(h)
	if err != nil {
		return nil // nothing to probe: Apply refuses h permanently
	}
	err = a.read(ctx, schema.SelectRow(a.keyspace, h.Namespace), args[:2])
	if err == nil || !regionDown(err) {
		return nil
	}
	return fmt.Errorf("hints: region unreachable for %s.%s: %w", a.keyspace, h.Namespace, err)
}

// regionDown reports whether err means the coordinator or the replicas did
// not answer, as opposed to answering with an error.
func regionDown(err error) bool {
	var reqErr gocql.RequestError
	if !errors.As(err, &reqErr) {
		return true // no answer: connection, timeout, context
	}
	switch reqErr.Code() {
	case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
		gocql.ErrCodeReadTimeout, gocql.ErrCodeWriteTimeout:
		return true
	}
	return false
}

// bind returns the values for schema.Insert: pk, ck, value, deleted,
// digest, timestamp, ttl.
func (a *cqlApplier) bind(h record.Hint) ([]any, error) {
	if err := schema.ValidateName("keyspace", a.keyspace); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	if err := schema.ValidateName("namespace", h.Namespace); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	ttl := 0
	if !h.ExpiresAt.IsZero() {
		left := h.ExpiresAt.Sub(a.now())
		if left <= 0 {
			return nil, fmt.Errorf("%w: %w: expired at %s", ErrPermanent, ErrExpired, h.ExpiresAt.UTC().Format(time.RFC3339Nano))
		}
		ttl = schema.TTLSeconds(left)
	}
	value := h.Value
	if h.Deleted {
		value = nil
	}
	ck := h.CK
	if ck == nil {
		ck = []byte{} // a nil blob binds as null, which a clustering column refuses
	}
	return []any{h.PK, ck, value, h.Deleted, schema.Digest(h.Deleted, value), h.Timestamp, ttl}, nil
}

// retentionCache holds tables' tombstone retentions, at most size of them,
// each for refresh. Errors are not cached.
type retentionCache struct {
	source  func(ctx context.Context, table string) (time.Duration, error)
	now     func() time.Time
	refresh time.Duration
	size    int

	mu      sync.Mutex
	entries map[string]retentionEntry
}

type retentionEntry struct {
	retention time.Duration
	readAt    time.Time
}

func (c *retentionCache) get(ctx context.Context, table string) (time.Duration, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[table]
	c.mu.Unlock()
	if ok && now.Sub(e.readAt) < c.refresh {
		return e.retention, nil
	}
	d, err := c.source(ctx, table)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[table]; !ok && len(c.entries) >= c.size {
		var oldest string
		var oldestAt time.Time
		for k, e := range c.entries {
			if oldest == "" || e.readAt.Before(oldestAt) {
				oldest, oldestAt = k, e.readAt
			}
		}
		delete(c.entries, oldest)
	}
	c.entries[table] = retentionEntry{retention: d, readAt: now}
	return d, nil
}

// len returns the number of cached tables.
func (c *retentionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
