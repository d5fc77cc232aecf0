package hints

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
)

// Applier writes one hint into the region it is for. Apply must be
// idempotent: the replayer applies a hint again after a crash or a
// rebalance. An error that wraps [ErrPermanent] means retrying can never
// succeed (the replayer dead-letters the hint with [ReasonRejected]); any
// other error means the region is unreachable for now (the replayer pauses
// and retries).
type Applier interface {
	Apply(ctx context.Context, h Hint) error
}

// ApplierFunc adapts a function to [Applier].
type ApplierFunc func(ctx context.Context, h Hint) error

// Apply calls f.
func (f ApplierFunc) Apply(ctx context.Context, h Hint) error { return f(ctx, h) }

// ErrPermanent marks an Apply error that retrying cannot fix, such as a
// statement the region refuses as invalid (for example a namespace whose
// table does not exist there).
var ErrPermanent = errors.New("hints: hint can never be applied")

// ErrExpired reports a hint whose ExpiresAt has passed: it must not be
// applied (its row would already be gone everywhere else).
var ErrExpired = errors.New("hints: hint expired")

// NewCQLApplier returns an Applier that writes hints through session, which
// must be restricted to the region the hints are for (cluster.Connect). It
// writes every cell of the row with schema.Insert at LOCAL_QUORUM, USING
// TIMESTAMP h.Timestamp and a TTL of the seconds left until h.ExpiresAt, so
// an older hint never overwrites a newer write and a TTL'd row expires when
// it would have in the other regions. A hint whose ExpiresAt has passed is
// refused with [ErrExpired] wrapped in [ErrPermanent].
func NewCQLApplier(session *gocql.Session, keyspace string) Applier {
	return &cqlApplier{session: session, keyspace: keyspace, now: time.Now}
}

type cqlApplier struct {
	session  *gocql.Session
	keyspace string
	now      func() time.Time
}

func (a *cqlApplier) Apply(ctx context.Context, h Hint) error {
	args, err := a.bind(h)
	if err != nil {
		return err
	}
	err = a.session.Query(schema.Insert(a.keyspace, h.Namespace), args...).
		Consistency(gocql.LocalQuorum).
		Idempotent(true).
		ExecContext(ctx)
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

// bind returns the values for schema.Insert: pk, ck, value, deleted,
// digest, timestamp, ttl.
func (a *cqlApplier) bind(h Hint) ([]any, error) {
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
