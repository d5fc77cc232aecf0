package quorum

import (
	"testing"

	"github.com/tidemark/tidemark/internal/cells"
)

// TestCompareTieTable: for every tie of the shared tie table whose writes
// are rows as Tidemark writes them (no legacy marker), Compare picks the
// row Cassandra keeps (internal/cells/testdata/ties.txt, which the
// integration tests check against a real Cassandra 5.0).
func TestCompareTieTable(t *testing.T) {
	ties, err := cells.LoadTies("../internal/cells/testdata/ties.txt")
	if err != nil {
		t.Fatal(err)
	}
	const now = 1_800_000_000
	checked := 0
	for _, tie := range ties {
		if _, ok := tie.Kept(); tie.HasLegacy() || !ok {
			continue
		}
		a, b := TieVersion(tie.A, now), TieVersion(tie.B, now)
		got := Compare(a, b)
		switch {
		case a.Timestamp == b.Timestamp && a.Deleted == b.Deleted && string(a.Value) == string(b.Value) && a.Expires == b.Expires:
			if got != 0 {
				t.Errorf("%s: Compare(%v, %v) = %d, want 0 (the same version)", tie.Name, a, b, got)
			}
		case tie.Keeps == "a" && got <= 0, tie.Keeps == "b" && got >= 0:
			t.Errorf("%s: Compare(%v, %v) = %d, but Cassandra keeps %s", tie.Name, a, b, got, tie.Keeps)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d ties checked", checked)
	}
}

// TieVersion is the version a tie-table write makes when applied at now
// (seconds).
func TieVersion(w cells.TieWrite, now int64) Version {
	v := Version{Timestamp: w.Timestamp, Deleted: w.Deleted}
	if !w.Deleted {
		v.Value = w.Value
	}
	if w.TTL > 0 {
		v.Expires = now + w.TTL
	}
	return v
}
