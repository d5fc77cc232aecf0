package hints

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/cluster"
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

// CQL applier defaults: those of its retention cache, a schema.Retentions.
const (
	// DefaultRetentionRefresh is how long a table's tombstone retention,
	// read from its comment, is used before it is read again
	// (schema.DefaultRetentionRefresh, one minute). See
	// [WithRetentionRefresh].
	DefaultRetentionRefresh = schema.DefaultRetentionRefresh
	// DefaultRetentionCacheSize is how many tables' retentions are cached
	// (schema.DefaultRetentionCacheSize, 1024). See
	// [WithRetentionCacheSize].
	DefaultRetentionCacheSize = schema.DefaultRetentionCacheSize
)

// CQLApplierOption configures [NewCQLApplier].
type CQLApplierOption func(*cqlApplierOptions)

type cqlApplierOptions struct {
	retentionRefresh   time.Duration
	retentionCacheSize int
}

// WithRetentionRefresh sets how long the applier trusts a table's retention
// read from its comment before reading it again (default
// [DefaultRetentionRefresh], one minute). Shorter notices a changed
// retention sooner at the cost of more reads of system_schema.tables;
// values <= 0 keep the default.
func WithRetentionRefresh(d time.Duration) CQLApplierOption {
	return func(o *cqlApplierOptions) {
		if d > 0 {
			o.retentionRefresh = d
		}
	}
}

// WithRetentionCacheSize bounds how many tables' retentions the applier
// keeps (default [DefaultRetentionCacheSize]). When it is full, the entry
// read longest ago makes room. Values <= 0 keep the default.
func WithRetentionCacheSize(n int) CQLApplierOption {
	return func(o *cqlApplierOptions) {
		if n > 0 {
			o.retentionCacheSize = n
		}
	}
}

// NewCQLApplier returns an Applier that writes hints through session, which
// must be restricted to the region the hints are for (cluster.Connect). It
// writes every cell of the row with schema.Insert at LOCAL_QUORUM, USING
// TIMESTAMP h.Timestamp and a TTL of the seconds left until h.ExpiresAt, so
// an older hint never overwrites a newer write and a TTL'd row expires when
// it would have in the other regions. A write the region refuses
// (cluster.Classify says Refused: an invalid or unknown table, a syntax
// error, no permission) fails with [ErrPermanent]; any other failure,
// availability failures included, is retried by the replayer.
//
// Before writing, it reads the tombstone retention of the hint's table
// with cluster.ReadRetention (schema.CreateTable records it in the table's
// comment; an operator may change it) through a schema.Retentions cache
// (see [WithRetentionRefresh] and [WithRetentionCacheSize]; when a refresh
// fails, the value read last is used), and refuses, with [ErrExpired]
// wrapped in [ErrPermanent], a hint older than that retention — its age
// measured from the earlier of CreatedAt and Timestamp (Timestamp alone
// when CreatedAt is zero) — or whose ExpiresAt has passed. A table missing
// in the region, or whose comment records no retention, refuses the hint
// with ErrPermanent (unless a retention of it was read before); any other
// error reading the retention is retried.
//
// The returned Applier also implements [Prober]: it reads the hint's row at
// LOCAL_QUORUM (schema.SelectRow) and reports the region unreachable
// exactly when cluster.Classify says the region did not answer (no
// connection, timeouts, Unavailable, Overloaded, bootstrapping) or the
// probe's context ended; any answer — a refusal such as Unauthorized, or a
// failure such as a replica's read failure or a server error — shows the
// region reachable, so a hint that keeps failing counts its attempts.
func NewCQLApplier(session *gocql.Session, keyspace string, opts ...CQLApplierOption) Applier {
	write := func(ctx context.Context, stmt string, args []any) error {
		return session.Query(stmt, args...).Consistency(gocql.LocalQuorum).Idempotent(true).ExecContext(ctx)
	}
	read := func(ctx context.Context, stmt string, args []any) error {
		return session.Query(stmt, args...).Consistency(gocql.LocalQuorum).Idempotent(true).IterContext(ctx).Close()
	}
	retention := func(ctx context.Context, table string) (time.Duration, error) {
		return cluster.ReadRetention(ctx, session, keyspace, table)
	}
	return newCQLApplier(keyspace, write, read, retention, opts...)
}

// newCQLApplier builds the applier over its three I/O edges, which tests
// replace: write and read run a statement, retention reads a table's
// retention as cluster.ReadRetention does (its errors wrap
// cluster.ErrNoTable and cluster.ErrNoRetention).
func newCQLApplier(keyspace string, write, read func(ctx context.Context, stmt string, args []any) error,
	retention schema.RetentionSource, opts ...CQLApplierOption) *cqlApplier {
	o := cqlApplierOptions{retentionRefresh: DefaultRetentionRefresh, retentionCacheSize: DefaultRetentionCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	a := &cqlApplier{keyspace: keyspace, now: time.Now, write: write, read: read}
	a.retentions = schema.NewRetentions(retention, o.retentionRefresh, o.retentionCacheSize,
		func() time.Time { return a.now() })
	return a
}

type cqlApplier struct {
	keyspace   string
	now        func() time.Time
	write      func(ctx context.Context, stmt string, args []any) error
	read       func(ctx context.Context, stmt string, args []any) error
	retentions *schema.Retentions
}

func (a *cqlApplier) Apply(ctx context.Context, h record.Hint) error {
	// Checked (names, expiry) before anything is read.
	if _, err := a.check(h, a.now()); err != nil {
		return err
	}
	retention, err := a.retention(ctx, h.Namespace)
	if err != nil {
		return err
	}
	if birth := h.Birth(); a.now().Sub(birth) > retention {
		return fmt.Errorf("%w: %w: written %s, more than the tombstone retention %v of %s.%s ago; a deletion marker that superseded it may be gone, repair covers the row",
			ErrPermanent, ErrExpired, birth.UTC().Format(time.RFC3339), retention, a.keyspace, h.Namespace)
	}
	// Bound right before the write: the TTL is what remains of the expiry
	// now, not before the retention read (which can take seconds and would
	// lengthen the copy's cell by as long).
	args, err := a.bind(h)
	if err != nil {
		return err
	}
	err = a.write(ctx, schema.Insert(a.keyspace, h.Namespace), args)
	if err != nil && schema.IsUndefinedColumn(err.Error()) {
		// A table an earlier release created lacks a column this release
		// writes (the stores add it when they open the namespace): add it
		// and try again; until the schema agrees, the hint is retried, not
		// refused.
		if err = a.upgrade(ctx, h.Namespace); err == nil {
			err = a.write(ctx, schema.Insert(a.keyspace, h.Namespace), args)
		}
		if err != nil && (schema.IsUndefinedColumn(err.Error()) || cluster.Classify(ctx, err) != cluster.Refused) {
			return fmt.Errorf("hints: apply hint to %s.%s, whose table lacked a column of this release: %w", a.keyspace, h.Namespace, err)
		}
	}
	if err == nil {
		return nil
	}
	if cluster.Classify(ctx, err) == cluster.Refused {
		return fmt.Errorf("%w: region refused the write: %w", ErrPermanent, err)
	}
	return fmt.Errorf("hints: apply hint to %s.%s: %w", a.keyspace, h.Namespace, err)
}

// upgrade adds the columns of the current table shape that table lacks
// (schema.Upgrade; a column already there is not an error).
func (a *cqlApplier) upgrade(ctx context.Context, table string) error {
	for _, stmt := range schema.Upgrade(a.keyspace, table) {
		if err := a.write(ctx, stmt, nil); err != nil && !schema.IsColumnExists(err.Error()) {
			return err
		}
	}
	return nil
}

// retention returns the tombstone retention of table: the cached one, or
// the one read last when a refresh fails. A table never read that is
// missing or records no retention is an error wrapping ErrPermanent; any
// other failure to read it is transient.
func (a *cqlApplier) retention(ctx context.Context, table string) (time.Duration, error) {
	d, stale, err := a.retentions.Get(ctx, table)
	switch {
	case err == nil || stale:
		return d, nil
	case errors.Is(err, cluster.ErrNoTable):
		return 0, fmt.Errorf("%w: %w in this region; create the namespace there (the store does) or check the name", ErrPermanent, err)
	case errors.Is(err, cluster.ErrNoRetention):
		return 0, fmt.Errorf("%w: %w; without its tombstone retention a hint could resurrect deleted rows", ErrPermanent, err)
	default:
		return 0, fmt.Errorf("hints: read the tombstone retention of %s.%s: %w", a.keyspace, table, err)
	}
}

// Probe implements [Prober].
func (a *cqlApplier) Probe(ctx context.Context, h record.Hint) error {
	args, err := a.bind(h)
	if err != nil {
		return nil // nothing to probe: Apply refuses h permanently
	}
	err = a.read(ctx, schema.SelectRow(a.keyspace, h.Namespace), args[:2])
	if err == nil {
		return nil
	}
	if cluster.Classify(ctx, err).Answered() && ctx.Err() == nil {
		return nil // the region answered, with an error of its own
	}
	return fmt.Errorf("hints: region unreachable for %s.%s: %w", a.keyspace, h.Namespace, err)
}

// bind returns the values for schema.Insert (schema.InsertValues).
func (a *cqlApplier) bind(h record.Hint) ([]any, error) {
	ttl, err := a.check(h, a.now())
	if err != nil {
		return nil, err
	}
	// Row format 2: every column non-null, the absolute expiry carried,
	// the TTL what remains of it.
	return schema.InsertValues(h.PK, h.CK, schema.RowCells(h.Deleted, h.Value, expirySeconds(h.ExpiresAt)), h.Timestamp, ttl), nil
}

// check refuses, as permanent, a hint that cannot be written (a name
// that is not valid, an expiry passed at now), and returns the TTL that
// remains of its expiry at now.
func (a *cqlApplier) check(h record.Hint, now time.Time) (ttl int, _ error) {
	if err := schema.ValidateName("keyspace", a.keyspace); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	if err := schema.ValidateName("namespace", h.Namespace); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	ttl, expired := schema.TTLUntil(expirySeconds(h.ExpiresAt), now)
	if expired || (!h.ExpiresAt.IsZero() && !now.Before(h.ExpiresAt)) {
		return 0, fmt.Errorf("%w: %w: expired at %s", ErrPermanent, ErrExpired, h.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	return ttl, nil
}

// expirySeconds is a hint's absolute expiry in whole seconds, as the
// expires column holds it (rounded up: never earlier than the hint says); 0
// for never.
func expirySeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	s := t.Unix()
	if t.After(time.Unix(s, 0)) {
		s++
	}
	return s
}
