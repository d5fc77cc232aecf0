package daemon

import (
	"slices"
	"testing"
)

func TestExitDebtHomes(t *testing.T) {
	regions := []string{"a", "b", "c"}
	for _, tc := range []struct {
		store, daemon string
		want          []string
	}{
		{"a", "a", []string{"a"}},      // the daemon of the store's home
		{"a", "b", []string{"a", "b"}}, // the store's home, else the daemon's own
		{"x", "b", []string{"b"}},      // a home this daemon does not know
	} {
		if got := exitDebtHomes(tc.store, tc.daemon, regions); !slices.Equal(got, tc.want) {
			t.Errorf("exitDebtHomes(%q, %q) = %v, want %v", tc.store, tc.daemon, got, tc.want)
		}
	}
}
