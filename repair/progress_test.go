package repair

import (
	"testing"
	"time"
)

// Run ids made one after another sort in that order, also within one
// second: LastFinished and the runs table's clustering order rely on it.
func TestNewRunIDSortsByTime(t *testing.T) {
	prev := NewRunID()
	for range 50 {
		time.Sleep(2 * time.Microsecond)
		id := NewRunID()
		if id <= prev {
			t.Fatalf("run id %q sorts before or with the earlier %q", id, prev)
		}
		prev = id
	}
}
