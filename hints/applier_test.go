package hints

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
)

// fakeCQL records the applier's statements and serves table comments.
type fakeCQL struct {
	mu       sync.Mutex
	comments map[string]string // table -> comment; missing: ErrNotFound
	readErr  error             // error of every comment read, when set
	reads    map[string]int    // table -> comment reads
	writes   []string          // statements written
	probeErr error             // error of every probe read
}

func newFakeCQL(comments map[string]string) *fakeCQL {
	return &fakeCQL{comments: comments, reads: map[string]int{}}
}

func (f *fakeCQL) applier(now *time.Time, opts ...CQLApplierOption) *cqlApplier {
	write := func(ctx context.Context, stmt string, args []any) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.writes = append(f.writes, stmt)
		return nil
	}
	read := func(ctx context.Context, stmt string, args []any) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.probeErr
	}
	comment := func(ctx context.Context, table string) (string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reads[table]++
		if f.readErr != nil {
			return "", f.readErr
		}
		c, ok := f.comments[table]
		if !ok {
			return "", gocql.ErrNotFound
		}
		return c, nil
	}
	a := newCQLApplier("ks", write, read, comment, opts...)
	a.now = func() time.Time { return *now }
	return a
}

func (f *fakeCQL) set(table, comment string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.comments[table] = comment
}

func (f *fakeCQL) readsOf(table string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[table]
}

func (f *fakeCQL) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes)
}

// retentionComment is the comment schema.CreateTable writes.
func retentionComment(d time.Duration) string {
	return fmt.Sprintf("%s retention=%d", schema.CommentPrefix, int64(d/time.Second))
}

// TestCQLApplierTableRetention: a hint older than its table's tombstone
// retention — measured from the earlier of CreatedAt and Timestamp, or the
// Timestamp alone without CreatedAt — is refused as expired and not
// written; a younger one is written.
func TestCQLApplierTableRetention(t *testing.T) {
	now := t0
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name      string
		table     string
		ts        time.Time // the write's timestamp
		createdAt time.Time // zero: unknown
		expired   bool
	}{
		{"young", "short", ago(30 * time.Minute), ago(29 * time.Minute), false},
		{"just inside", "short", ago(59 * time.Minute), ago(time.Minute), false},
		{"old write, new hint", "short", ago(2 * time.Hour), ago(time.Minute), true},
		{"old hint, new timestamp", "short", ago(30 * time.Minute), ago(2 * time.Hour), true},
		{"no CreatedAt, young write", "short", ago(30 * time.Minute), time.Time{}, false},
		{"no CreatedAt, old write", "short", ago(2 * time.Hour), time.Time{}, true},
		{"old write, long retention", "long", ago(2 * time.Hour), ago(time.Minute), false},
		{"older than long retention", "long", ago(241 * time.Hour), ago(time.Minute), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeCQL(map[string]string{"short": retentionComment(time.Hour), "long": retentionComment(240 * time.Hour)})
			a := f.applier(&now)
			h := record.Hint{Target: "b", Namespace: c.table, PK: []byte("p"), CK: []byte("c"), Value: []byte("v"),
				Timestamp: c.ts.UnixMicro(), CreatedAt: c.createdAt}
			err := a.Apply(context.Background(), h)
			if c.expired {
				if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrPermanent) {
					t.Fatalf("Apply = %v, want ErrExpired (permanent)", err)
				}
				if !strings.Contains(err.Error(), "retention 1h0m0s") && !strings.Contains(err.Error(), "retention 240h0m0s") {
					t.Errorf("error %q does not name the table's retention", err)
				}
				if n := f.writeCount(); n != 0 {
					t.Fatalf("expired hint written (%d writes)", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply = %v, want nil", err)
			}
			if n := f.writeCount(); n != 1 || f.writes[0] != schema.Insert("ks", c.table) {
				t.Fatalf("writes = %q, want one schema.Insert", f.writes)
			}
		})
	}
}

// TestCQLApplierTableErrors: a missing table or a comment without a
// retention refuse the hint permanently; an error reading the comment is
// transient (retried, not cached).
func TestCQLApplierTableErrors(t *testing.T) {
	now := t0
	f := newFakeCQL(map[string]string{"foreign": "made by hand", "broken": schema.CommentPrefix + " retention=soon"})
	a := f.applier(&now)
	h := goodHint(1)
	for _, table := range []string{"missing", "foreign", "broken"} {
		h.Namespace = table
		if err := a.Apply(context.Background(), h); !errors.Is(err, ErrPermanent) || errors.Is(err, ErrExpired) {
			t.Errorf("Apply to %s = %v, want ErrPermanent", table, err)
		}
	}
	f.set("users", retentionComment(time.Hour))
	f.readErr = gocql.ErrNoConnections
	h.Namespace = "users"
	err := a.Apply(context.Background(), h)
	if err == nil || errors.Is(err, ErrPermanent) || !errors.Is(err, gocql.ErrNoConnections) {
		t.Fatalf("Apply with the schema unreadable = %v, want a transient error", err)
	}
	f.readErr = nil
	if err := a.Apply(context.Background(), h); err != nil {
		t.Fatalf("Apply after the schema is readable again = %v", err)
	}
	if n := f.readsOf("users"); n != 2 {
		t.Errorf("comment of users read %d times, want 2 (errors are not cached)", n)
	}
	if n := f.writeCount(); n != 1 {
		t.Errorf("%d writes, want 1", n)
	}
}

// TestCQLApplierRetentionCache: retentions are read once per refresh period
// per table, a shortened retention takes effect after the refresh, and the
// cache never holds more than its size.
func TestCQLApplierRetentionCache(t *testing.T) {
	now := t0
	f := newFakeCQL(map[string]string{"users": retentionComment(240 * time.Hour)})
	a := f.applier(&now, WithRetentionRefresh(time.Minute), WithRetentionCacheSize(3))
	old := goodHint(1)
	old.Namespace = "users"
	old.Timestamp = now.Add(-2 * time.Hour).UnixMicro()
	old.CreatedAt = time.Time{}
	for range 50 {
		if err := a.Apply(context.Background(), old); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.readsOf("users"); n != 1 {
		t.Fatalf("comment read %d times for 50 hints within the refresh period, want 1", n)
	}

	// The retention is shortened; the cached value holds until the refresh.
	f.set("users", retentionComment(time.Hour))
	now = now.Add(30 * time.Second)
	if err := a.Apply(context.Background(), old); err != nil {
		t.Fatalf("Apply before the refresh = %v", err)
	}
	now = now.Add(31 * time.Second)
	if err := a.Apply(context.Background(), old); !errors.Is(err, ErrExpired) {
		t.Fatalf("Apply after the refresh = %v, want ErrExpired under the new 1h retention", err)
	}
	if n := f.readsOf("users"); n != 2 {
		t.Errorf("comment read %d times, want 2", n)
	}

	for i := range 10 {
		table := fmt.Sprintf("t%d", i)
		f.set(table, retentionComment(time.Hour))
		h := goodHint(i)
		h.Namespace = table
		h.Timestamp = now.UnixMicro()
		if err := a.Apply(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		if n := a.retentions.len(); n > 3 {
			t.Fatalf("cache holds %d tables, bound is 3", n)
		}
	}
}

// gocqlError is a server error as gocql reports it.
type gocqlError struct{ code int }

func (e gocqlError) Code() int       { return e.code }
func (e gocqlError) Message() string { return fmt.Sprintf("code %#x", e.code) }
func (e gocqlError) Error() string   { return e.Message() }

// TestCQLApplierProbe: the probe reports the region unreachable only when
// nothing answers or the replicas time out or are unavailable; a server
// that answers with another error is reachable.
func TestCQLApplierProbe(t *testing.T) {
	now := t0
	cases := []struct {
		err  error
		down bool
	}{
		{nil, false},
		{gocqlError{gocql.ErrCodeUnauthorized}, false},
		{gocqlError{gocql.ErrCodeServer}, false},
		{gocqlError{gocql.ErrCodeReadFailure}, false},
		{gocqlError{gocql.ErrCodeUnavailable}, true},
		{gocqlError{gocql.ErrCodeReadTimeout}, true},
		{gocqlError{gocql.ErrCodeOverloaded}, true},
		{gocqlError{gocql.ErrCodeBootstrapping}, true},
		{gocql.ErrNoConnections, true},
		{gocql.ErrTimeoutNoResponse, true},
		{context.DeadlineExceeded, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.err), func(t *testing.T) {
			f := newFakeCQL(nil)
			f.probeErr = c.err
			a := f.applier(&now)
			err := a.Probe(context.Background(), goodHint(1))
			if (err != nil) != c.down {
				t.Fatalf("Probe with read error %v = %v, want down=%v", c.err, err, c.down)
			}
		})
	}
	var _ Prober = NewCQLApplier(nil, "ks").(Prober)
}
