package hints

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

// fakeCQL records the applier's statements and serves the retentions of
// table comments, with the errors cluster.ReadRetention returns.
type fakeCQL struct {
	mu       sync.Mutex
	comments map[string]string // table -> comment; missing: cluster.ErrNoTable
	readErr  error             // error of every comment read, when set
	reads    map[string]int    // table -> comment reads
	writes   []string          // statements written
	args     [][]any           // their values
	onRead   func()            // called at every comment read, when set
	writeErr error             // error of every write, when set
	nextErrs []error           // errors of the next writes, one each, before writeErr
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
		f.args = append(f.args, args)
		if len(f.nextErrs) > 0 {
			err := f.nextErrs[0]
			f.nextErrs = f.nextErrs[1:]
			return err
		}
		return f.writeErr
	}
	read := func(ctx context.Context, stmt string, args []any) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.probeErr
	}
	retention := func(ctx context.Context, table string) (time.Duration, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reads[table]++
		if f.onRead != nil {
			f.onRead()
		}
		if f.readErr != nil {
			return 0, f.readErr
		}
		c, ok := f.comments[table]
		if !ok {
			return 0, cluster.NoTableError("ks", table)
		}
		d, err := schema.ParseRetention(c)
		if err != nil {
			return 0, cluster.NoRetentionError("ks", table, err)
		}
		return d, nil
	}
	a := newCQLApplier("ks", write, read, retention, opts...)
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

// TestCQLApplierTTLAtWrite: the TTL a hint is written with is what remains
// of its expiry when the write is made, not when the applier began: the
// retention read between them can take seconds (a region just healed), and
// a TTL computed before it would make the copy's cell outlive the row's
// expiry by as long.
func TestCQLApplierTTLAtWrite(t *testing.T) {
	now := t0
	f := newFakeCQL(map[string]string{"t": retentionComment(time.Hour)})
	f.onRead = func() { now = now.Add(5 * time.Second) } // a slow retention read
	a := f.applier(&now)
	expires := t0.Add(time.Minute)
	h := record.Hint{Target: "b", Namespace: "t", PK: []byte("p"), CK: []byte("c"), Value: []byte("v"),
		Timestamp: t0.UnixMicro(), CreatedAt: t0, ExpiresAt: expires}
	if err := a.Apply(context.Background(), h); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	if len(f.args) != 1 {
		t.Fatalf("%d writes, want 1", len(f.args))
	}
	args := f.args[0]
	want, _ := schema.TTLUntil(expirySeconds(expires), now)
	if got := args[len(args)-1]; got != want {
		t.Fatalf("written with TTL %v, want %d (what remains at the write, %v after the start)", got, want, now.Sub(t0))
	}
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
	for table, says := range map[string]string{"missing": "create the namespace", "foreign": "resurrect", "broken": "resurrect"} {
		h.Namespace = table
		err := a.Apply(context.Background(), h)
		if !errors.Is(err, ErrPermanent) || errors.Is(err, ErrExpired) {
			t.Errorf("Apply to %s = %v, want ErrPermanent", table, err)
		} else if !strings.Contains(err.Error(), "ks."+table) || !strings.Contains(err.Error(), says) {
			t.Errorf("Apply to %s = %q, want it to name ks.%s and say %q", table, err, table, says)
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
// per table, a shortened retention takes effect after the refresh, a
// refresh that fails keeps the value read last (schema.Retentions), and the
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

	// The schema becomes unreadable: the 1h retention read last still
	// applies, for a young hint and an old one alike.
	f.readErr = gocql.ErrNoConnections
	now = now.Add(61 * time.Second)
	young := old
	young.Timestamp = now.Add(-time.Minute).UnixMicro()
	if err := a.Apply(context.Background(), young); err != nil {
		t.Fatalf("Apply with the refresh failing = %v, want the last retention used", err)
	}
	if err := a.Apply(context.Background(), old); !errors.Is(err, ErrExpired) {
		t.Fatalf("Apply of an old hint with the refresh failing = %v, want ErrExpired under the last 1h retention", err)
	}
	f.readErr = nil

	for i := range 10 {
		table := fmt.Sprintf("t%d", i)
		f.set(table, retentionComment(time.Hour))
		h := goodHint(i)
		h.Namespace = table
		h.Timestamp = now.UnixMicro()
		if err := a.Apply(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		if n := a.retentions.Len(); n > 3 {
			t.Fatalf("cache holds %d tables, bound is 3", n)
		}
	}
}

// gocqlError is a server error as gocql reports it.
type gocqlError struct{ code int }

func (e gocqlError) Code() int       { return e.code }
func (e gocqlError) Message() string { return fmt.Sprintf("code %#x", e.code) }
func (e gocqlError) Error() string   { return e.Message() }

// TestCQLApplierProbe: the probe reports the region unreachable exactly
// when cluster.Classify says the region did not answer, or the probe's
// context ended; a region that answers — with a refusal, or with a failure
// such as a server error or a replica's read failure — is reachable, so a
// hint that keeps failing uses up its attempts instead of pausing replay.
func TestCQLApplierProbe(t *testing.T) {
	now := t0
	cases := []struct {
		err  error
		down bool
	}{
		{nil, false},
		{gocqlError{gocql.ErrCodeUnauthorized}, false},
		{gocqlError{gocql.ErrCodeInvalid}, false},
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
	t.Run("context ended", func(t *testing.T) {
		f := newFakeCQL(nil)
		f.probeErr = fmt.Errorf("gocql: %w", context.Canceled)
		a := f.applier(&now)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := a.Probe(ctx, goodHint(1)); err == nil {
			t.Fatal("Probe whose context ended = nil, want the region reported unreachable")
		}
	})
	var _ Prober = NewCQLApplier(nil, "ks").(Prober)
}

// TestCQLApplierWriteErrors: a write the region refuses (cluster.Classify:
// Refused) is permanent; an availability failure, a server error included,
// is retried.
func TestCQLApplierWriteErrors(t *testing.T) {
	now := t0
	cases := []struct {
		err       error
		permanent bool
	}{
		{gocqlError{gocql.ErrCodeInvalid}, true},
		{gocqlError{gocql.ErrCodeSyntax}, true},
		{gocqlError{gocql.ErrCodeUnauthorized}, true},
		{gocqlError{gocql.ErrCodeServer}, false},
		{gocqlError{gocql.ErrCodeWriteFailure}, false},
		{gocqlError{gocql.ErrCodeWriteTimeout}, false},
		{gocqlError{gocql.ErrCodeUnavailable}, false},
		{gocql.ErrNoConnections, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.err), func(t *testing.T) {
			f := newFakeCQL(map[string]string{"users": retentionComment(240 * time.Hour)})
			f.writeErr = c.err
			a := f.applier(&now)
			h := goodHint(1)
			h.Namespace = "users"
			err := a.Apply(context.Background(), h)
			if !errors.Is(err, c.err) || errors.Is(err, ErrPermanent) != c.permanent {
				t.Fatalf("Apply with write error %v = %v, want permanent=%v", c.err, err, c.permanent)
			}
		})
	}
}

// TestCQLApplierUpgradesAnOldTable: a hint for a table an earlier release
// created, which lacks a column this release writes (ver), adds the
// columns and is applied, not refused into the dead letters; while the
// schema does not agree yet it is retried (a transient error).
func TestCQLApplierUpgradesAnOldTable(t *testing.T) {
	now := time.Now()
	undefined := errors.New("Undefined column name ver in table ks.t")
	h := record.Hint{Target: "b", Namespace: "t", PK: []byte("p"), CK: []byte("c"), Value: []byte("v"), Timestamp: now.UnixMicro(), CreatedAt: now}
	f := newFakeCQL(map[string]string{"t": retentionComment(time.Hour)})
	f.nextErrs = []error{undefined}
	if err := f.applier(&now).Apply(context.Background(), h); err != nil {
		t.Fatalf("Apply to a table without ver = %v, want it upgraded and applied", err)
	}
	want := append(append([]string{schema.Insert("ks", "t")}, schema.Upgrade("ks", "t")...), schema.Insert("ks", "t"))
	if !slices.Equal(f.writes, want) {
		t.Errorf("statements %q, want the insert, the upgrade, the insert again", f.writes)
	}

	f = newFakeCQL(map[string]string{"t": retentionComment(time.Hour)})
	f.nextErrs = []error{undefined, nil, nil, nil, undefined}
	err := f.applier(&now).Apply(context.Background(), h)
	if err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("Apply while the schema does not agree = %v, want a transient error (retried)", err)
	}
}
