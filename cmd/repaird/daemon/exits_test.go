package daemon

import "testing"

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
