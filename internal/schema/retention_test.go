package schema

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type fakeSource struct {
	values map[string]time.Duration
	err    error
	reads  map[string]int
}

func (f *fakeSource) read(_ context.Context, table string) (time.Duration, error) {
	f.reads[table]++
	if f.err != nil {
		return 0, f.err
	}
	d, ok := f.values[table]
	if !ok {
		return 0, fmt.Errorf("no table %s", table)
	}
	return d, nil
}

// TestRetentionsFollowAChange: a retention changed after creation (ALTER
// TABLE … WITH comment) is seen after one refresh interval; within it the
// table is read once.
func TestRetentionsFollowAChange(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeSource{values: map[string]time.Duration{"users": 240 * time.Hour}, reads: map[string]int{}}
	r := NewRetentions(f.read, time.Minute, 0, func() time.Time { return now })
	for range 10 {
		d, stale, err := r.Get(context.Background(), "users")
		if err != nil || stale || d != 240*time.Hour {
			t.Fatalf("Get = %v %v %v", d, stale, err)
		}
	}
	if f.reads["users"] != 1 {
		t.Fatalf("%d reads within the refresh interval, want 1", f.reads["users"])
	}
	f.values["users"] = 480 * time.Hour
	now = now.Add(59 * time.Second)
	if d, _, _ := r.Get(context.Background(), "users"); d != 240*time.Hour {
		t.Fatalf("before the refresh: %v, want the cached 240h", d)
	}
	now = now.Add(2 * time.Second)
	if d, _, _ := r.Get(context.Background(), "users"); d != 480*time.Hour {
		t.Fatalf("after the refresh: %v, want the new 480h", d)
	}
}

// TestRetentionsStaleOnError: a refresh that fails keeps the last value
// (reported stale, with the error); a table never read fails.
func TestRetentionsStaleOnError(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := errors.New("region down")
	f := &fakeSource{values: map[string]time.Duration{"users": time.Hour}, reads: map[string]int{}}
	r := NewRetentions(f.read, time.Minute, 0, func() time.Time { return now })
	if _, _, err := r.Get(context.Background(), "users"); err != nil {
		t.Fatal(err)
	}
	f.err = down
	now = now.Add(time.Hour)
	d, stale, err := r.Get(context.Background(), "users")
	if d != time.Hour || !stale || !errors.Is(err, down) {
		t.Fatalf("refresh failing: %v %v %v, want the last value, stale, the error", d, stale, err)
	}
	if d, _, err := r.Get(context.Background(), "other"); d != 0 || !errors.Is(err, down) {
		t.Fatalf("never read: %v %v, want the error", d, err)
	}
	// For a few seconds after a failed refresh the source is not asked
	// again: a source that cannot answer does not slow every reader by
	// its timeout.
	f.err = nil
	reads := f.reads["users"]
	if d, stale, err := r.Get(context.Background(), "users"); d != time.Hour || !stale || !errors.Is(err, down) || f.reads["users"] != reads {
		t.Fatalf("right after a failed refresh: %v %v %v, %d reads (had %d), want the last value, stale, the last error, no read", d, stale, err, f.reads["users"], reads)
	}
	now = now.Add(retentionRetry)
	if d, stale, err := r.Get(context.Background(), "users"); d != time.Hour || stale || err != nil || f.reads["users"] != reads+1 {
		t.Fatalf("after recovery: %v %v %v, %d reads", d, stale, err, f.reads["users"])
	}
}

func TestRetentionsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fakeSource{values: map[string]time.Duration{}, reads: map[string]int{}}
	r := NewRetentions(f.read, time.Minute, 3, func() time.Time { return now })
	for i := range 10 {
		table := fmt.Sprintf("t%d", i)
		f.values[table] = time.Hour
		now = now.Add(time.Second)
		if _, _, err := r.Get(context.Background(), table); err != nil {
			t.Fatal(err)
		}
		if r.Len() > 3 {
			t.Fatalf("%d tables cached, bound 3", r.Len())
		}
	}
}
