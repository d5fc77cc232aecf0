package quorum

import (
	"bytes"
	"cmp"
	"strconv"
	"strings"
)

// Version is one version of a row, as a region holds it: its write timestamp,
// and either a value or a deletion marker. Versions are ordered by [Compare],
// which is last-write-wins as Cassandra reconciles cells.
type Version struct {
	// Timestamp is the write's timestamp (Cassandra's writetime), in
	// microseconds since the Unix epoch.
	Timestamp int64
	// Deleted marks a deletion marker. A deletion marker has no value: its
	// Value is ignored by Compare.
	Deleted bool
	// Value is the row's value. Nil and empty are the same value.
	Value []byte
}

// Compare orders two versions of one row the way Cassandra reconciles cells:
// the higher Timestamp wins; on equal timestamps a deletion marker wins over a
// value; between two values with equal timestamps the greater Value, compared
// as unsigned bytes (bytes.Compare), wins.
//
// Compare returns a positive number if a wins, a negative number if b wins,
// and 0 if a and b are the same version: equal timestamps and both deletion
// markers, or equal timestamps and equal values (nil equals empty). It is a
// total order on versions, so it can be used with slices.SortFunc.
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	switch {
	case a.Deleted && b.Deleted:
		return 0
	case a.Deleted:
		return 1
	case b.Deleted:
		return -1
	}
	return bytes.Compare(a.Value, b.Value)
}

// Newest returns the index of the version that wins over all others by
// [Compare]; if several are the same winning version, the first of them. It
// returns -1 if vs is empty.
func Newest(vs []Version) int {
	best := -1
	for i, v := range vs {
		if best < 0 || Compare(v, vs[best]) > 0 {
			best = i
		}
	}
	return best
}

// maxShownValue is how many bytes of a value String shows.
const maxShownValue = 32

// String returns a short description for logs and failing tests:
// "ts=1700000000000000 deleted" for a deletion marker, and for a value
// "ts=1700000000000000 value=\"abc\"" (Go-quoted, at most 32 bytes shown, then
// the number of bytes left out), or "value=nil" for a nil Value.
func (v Version) String() string {
	var b strings.Builder
	b.WriteString("ts=")
	b.WriteString(strconv.FormatInt(v.Timestamp, 10))
	switch {
	case v.Deleted:
		b.WriteString(" deleted")
	case v.Value == nil:
		b.WriteString(" value=nil")
	case len(v.Value) > maxShownValue:
		b.WriteString(" value=")
		b.WriteString(strconv.Quote(string(v.Value[:maxShownValue])))
		b.WriteString("...(+")
		b.WriteString(strconv.Itoa(len(v.Value) - maxShownValue))
		b.WriteString(" bytes)")
	default:
		b.WriteString(" value=")
		b.WriteString(strconv.Quote(string(v.Value)))
	}
	return b.String()
}
