package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/watermark"
)

func TestExitDebtHome(t *testing.T) {
	regions := []string{"a", "b", "c"}
	for _, tc := range []struct{ store, daemon, want string }{
		{"a", "a", "a"}, // the daemon of the store's home
		{"a", "b", "a"}, // the store's home, even when it does not answer (the next pass retries)
		{"x", "b", "b"}, // a home this daemon does not know: its own
	} {
		if got := exitDebtHome(tc.store, tc.daemon, regions); got != tc.want {
			t.Errorf("exitDebtHome(%q, %q) = %q, want %q", tc.store, tc.daemon, got, tc.want)
		}
	}
}

// TestUncleanExitCountedOnceItsDebtIsRecorded: an unclean exit counts
// (tidemark_watermark_unclean_exits_total) once its overflow debt is
// recorded, even when marking the session exited reaches only a
// minority of the regions — the mark is then the session's newest row
// where it landed, so the next pass may read the session as exited and
// never record the exit again — and a retry of the same exit does not
// count it twice. A pass whose debt could not be written counts nothing.
func TestUncleanExitCountedOnceItsDebtIsRecorded(t *testing.T) {
	d, err := New(testConfig(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	debtErr, markErr := errors.New("debt region timed out"), errors.New("marking the session exited: 1 of 2 regions took it")
	var debts, marks []string
	failDebt, failMark := false, true
	d.exitDebt = func(_ context.Context, home string, namespaces []string, _ time.Time) error {
		if failDebt {
			return debtErr
		}
		debts = append(debts, home+":"+strings.Join(namespaces, ","))
		return nil
	}
	d.markExited = func(_ context.Context, e watermark.Session, recorded string, _ time.Time) error {
		marks = append(marks, e.ID+"@"+recorded)
		if failMark {
			return markErr
		}
		return nil
	}
	ctx := context.Background()
	gone := watermark.Session{ID: "a/w1/x", Home: "a", Namespaces: []string{"events"}}

	if err := d.recordExits(ctx, []watermark.Session{gone}); !errors.Is(err, markErr) {
		t.Fatalf("recordExits with the mark failing = %v, want it to wrap %v", err, markErr)
	}
	if got := counter(t, d, "tidemark_watermark_unclean_exits_total"); got != 1 {
		t.Fatalf("after the debt was recorded and the mark failed: unclean exits = %v, want 1", got)
	}
	failMark = false
	if err := d.recordExits(ctx, []watermark.Session{gone}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := counter(t, d, "tidemark_watermark_unclean_exits_total"); got != 1 {
		t.Fatalf("after a retry of the same exit: unclean exits = %v, want 1", got)
	}
	if want := []string{"a:events,orders,users", "a:events,orders,users"}; !slices.Equal(debts, want) {
		t.Errorf("debt recorded %q, want %q", debts, want)
	}

	failDebt = true
	other := watermark.Session{ID: "b/w2/y", Home: "b"}
	if err := d.recordExits(ctx, []watermark.Session{other}); !errors.Is(err, debtErr) {
		t.Fatalf("recordExits with the debt failing = %v, want it to wrap %v", err, debtErr)
	}
	if got := counter(t, d, "tidemark_watermark_unclean_exits_total"); got != 1 {
		t.Errorf("an exit whose debt was not recorded was counted: unclean exits = %v, want 1", got)
	}
	if want := []string{"a/w1/x@a", "a/w1/x@a"}; !slices.Equal(marks, want) {
		t.Errorf("marks %q, want %q (no mark without the debt)", marks, want)
	}
	failDebt = false
	if err := d.recordExits(ctx, []watermark.Session{other}); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, d, "tidemark_watermark_unclean_exits_total"); got != 2 {
		t.Errorf("a second store's exit: unclean exits = %v, want 2", got)
	}
}
