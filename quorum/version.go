package quorum

import (
	"bytes"
	"cmp"
	"strconv"
	"strings"
)

// Version is one version of a row, as a region holds it: its write
// timestamp, its expiry, and either a value or a deletion marker. Versions
// are ordered by [Compare], which is last-write-wins as Cassandra reconciles
// cells.
type Version struct {
	// Timestamp is the write's timestamp (Cassandra's writetime), in
	// microseconds since the Unix epoch.
	Timestamp int64
	// Deleted marks a deletion marker. A deletion marker has no value: its
	// Value is ignored by Compare.
	Deleted bool
	// Value is the row's value. Nil and empty are the same value.
	Value []byte
	// Expires is when the version stops being visible, in whole seconds
	// since the Unix epoch (Cassandra's local deletion time of an expiring
	// cell); 0 means it never expires. Deletion markers always expire.
	Expires int64
}

// Compare orders two versions of one row the way Cassandra 5.0 reconciles
// their cells (Cells.resolveRegular) when every cell of a version was
// written with its timestamp and expiry, as Tidemark writes rows
// (docs/design.md, "Order of two versions"):
//
//  1. the higher Timestamp wins;
//  2. on equal timestamps, an expiring version beats one that never
//     expires (Cassandra: an expiring cell beats a live one);
//  3. of two expiring versions, the one that expires later wins;
//  4. then a deletion marker wins over a value (the deleted cell is true,
//     0x01, against false, 0x00);
//  5. between two values, the greater Value, compared as unsigned bytes
//     (bytes.Compare), wins.
//
// Compare returns a positive number if a wins, a negative number if b wins,
// and 0 if a and b are the same version: equal timestamps and expiries, and
// both deletion markers or equal values (nil equals empty). It is a total
// order on versions, so it can be used with slices.SortFunc.
//
// Equal-timestamp ties with different values are where per-cell
// reconciliation can mix two versions' cells: the digest cell of the
// loser may survive beside the winner's value (repair's tie resolution
// writes the greatest digest everywhere, so that regions converge); the
// row read — deleted or not, and its value — is the winner's.
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	if ae, be := a.Expires != 0, b.Expires != 0; ae != be {
		if ae {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.Expires, b.Expires); c != 0 {
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
// the number of bytes left out), or "value=nil" for a nil Value; an
// expiring version adds " expires=<unix seconds>".
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
	if v.Expires != 0 {
		b.WriteString(" expires=")
		b.WriteString(strconv.FormatInt(v.Expires, 10))
	}
	return b.String()
}
