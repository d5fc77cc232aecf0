package repair

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
)

// Observed is what one region holds for one row, in digest form.
type Observed struct {
	// Present is false when the region has no such row (never written, or
	// removed by Cassandra's TTL); the other fields are then zero.
	Present bool
	// Timestamp is the row's writetime, in microseconds.
	Timestamp int64
	// Digest is the row's digest column.
	Digest int64
	// Deleted marks a deletion marker.
	Deleted bool
	// TTL is the remaining lifetime of the cells in seconds when scanned;
	// 0 means none. It is not part of the version: Expires is.
	TTL int32
	// Expires is the row's absolute expiry, seconds since the Unix epoch;
	// 0 means never.
	Expires int64
	// Expired reports that the region holds the row's cells but its
	// Expires had passed at the scan: the row is logically absent there
	// (every reader hides it), so it is never copied to another region and
	// compares as absent ([Observed.Same]). [PlanRow] still orders it with
	// the other versions: an expired winner is not replaced by an older
	// version (see docs/repair.md, "Expiry").
	Expired bool
}

// Live reports whether the observation is a version readers see: present,
// and not past its expiry at the scan.
func (o Observed) Live() bool { return o.Present && !o.Expired }

// Same reports whether two observations are the same state of a row: both
// logically absent (not present, or expired), or both live with the same
// version — timestamp, absolute expiry, kind (value or deletion marker)
// and digest. Remaining TTLs are not compared: they only say when
// Cassandra reclaims the cells.
func (o Observed) Same(p Observed) bool {
	if o.Live() != p.Live() {
		return false
	}
	if !o.Live() {
		return true
	}
	return o.Timestamp == p.Timestamp && o.Expires == p.Expires && o.Deleted == p.Deleted && o.Digest == p.Digest
}

// String returns "absent", "ts=… deleted digest=…" or "ts=… digest=…",
// with the expiry and the TTL when set and "expired" for an expired row.
func (o Observed) String() string {
	if !o.Present {
		return "absent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ts=%d", o.Timestamp)
	if o.Deleted {
		b.WriteString(" deleted")
	}
	fmt.Fprintf(&b, " digest=%016x", uint64(o.Digest))
	if o.Expires != 0 {
		fmt.Fprintf(&b, " expires=%d", o.Expires)
	}
	if o.TTL > 0 {
		fmt.Fprintf(&b, " ttl=%ds", o.TTL)
	}
	if o.Expired {
		b.WriteString(" expired")
	}
	return b.String()
}

// Divergence is a row whose regions do not all hold the same version.
type Divergence struct {
	// Token, PK and CK identify the row. PK and CK are owned by the
	// Divergence (copied from the streams).
	Token  int64
	PK, CK []byte
	// Regions holds what each region has, indexed like the streams given to
	// Diff.
	Regions []Observed

	// fetched, when set, holds each region's row as a point read already
	// returned it (Repairer.RepairKeys), so that fixing the row reads
	// nothing again.
	fetched []fetchedRow
}

// fetchedRow is one region's answer to a point read.
type fetchedRow struct {
	v     RowValue
	found bool
}

// String returns a one-line description, for logs and failing tests.
func (d *Divergence) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token=%d pk=%x ck=%x:", d.Token, d.PK, d.CK)
	for i, o := range d.Regions {
		fmt.Fprintf(&b, " [%d] %s;", i, o)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// DiffStats counts what a Diff saw.
type DiffStats struct {
	// Rows is the number of distinct rows (keys) merged.
	Rows int64
	// Scanned is the number of rows read from each stream.
	Scanned []int64
	// Differing is the number of divergences reported.
	Differing int64
}

// ErrOutOfOrder reports a stream whose rows are not in strictly increasing
// scan order ([CompareKeys]); merging it would misreport differences. It
// points at a bug or at a table whose clustering order is not ascending.
var ErrOutOfOrder = errors.New("repair: rows out of scan order (the table must be the tidemark shape, clustering ascending)")

// Diff merges one sorted stream per region and calls fn, in scan order, for
// every row that is not the same version ([Observed.Same]) in every region:
// missing somewhere, older somewhere, or a deletion marker missing somewhere.
// A row whose expiry had passed when it was scanned (DigestRow.Expired)
// counts as absent: a row expired in one region and absent (or expired too)
// in the others is no divergence.
// It is the pure core of repair: it does no I/O beyond the streams and keeps
// only one row per stream in memory. Diff stops at the first error from a
// stream or from fn and returns it; the streams are not closed.
func Diff(streams []RowStream, fn func(*Divergence) error) (DiffStats, error) {
	st := DiffStats{Scanned: make([]int64, len(streams))}
	heads := make([]*DigestRow, len(streams))
	advance := func(i int, prev *DigestRow) error {
		s := streams[i]
		if !s.Next() {
			heads[i] = nil
			if err := s.Err(); err != nil {
				return fmt.Errorf("stream %d: %w", i, err)
			}
			return nil
		}
		r := s.Row()
		if prev != nil && CompareKeys(prev, r) >= 0 {
			return fmt.Errorf("%w: stream %d returned %s after %s", ErrOutOfOrder, i, r, prev)
		}
		heads[i] = r
		st.Scanned[i]++
		return nil
	}
	for i := range streams {
		if err := advance(i, nil); err != nil {
			return st, err
		}
	}
	obs := make([]Observed, len(streams))
	var cur DigestRow // copy of the current minimum key
	for {
		minIdx := -1
		for i, h := range heads {
			if h != nil && (minIdx < 0 || CompareKeys(h, heads[minIdx]) < 0) {
				minIdx = i
			}
		}
		if minIdx < 0 {
			return st, nil
		}
		m := heads[minIdx]
		cur.Token = m.Token
		cur.PK = append(cur.PK[:0], m.PK...)
		cur.CK = append(cur.CK[:0], m.CK...)
		st.Rows++
		same := true
		for i, h := range heads {
			if h != nil && CompareKeys(h, &cur) == 0 {
				obs[i] = h.Observed()
			} else {
				obs[i] = Observed{}
			}
			if i > 0 && !obs[i].Same(obs[0]) {
				same = false
			}
		}
		if !same {
			st.Differing++
			d := &Divergence{
				Token:   cur.Token,
				PK:      bytes.Clone(cur.PK),
				CK:      bytes.Clone(cur.CK),
				Regions: append([]Observed(nil), obs...),
			}
			if err := fn(d); err != nil {
				return st, err
			}
		}
		for i := range heads {
			if obs[i].Present {
				if err := advance(i, &cur); err != nil {
					return st, err
				}
			}
		}
	}
}

// Action says how a divergent row is repaired.
type Action int

const (
	// ActionCopy: the winner is a value held by Source; fetch it from Source
	// and write it to Targets.
	ActionCopy Action = iota + 1
	// ActionMark: the winner is a deletion marker; write it to Targets. No
	// value is fetched.
	ActionMark
	// ActionTie: the newest versions have equal timestamps and expiries
	// and cannot be told apart by digests — values with different digests,
	// or deletion markers and values (only writers other than Tidemark
	// make those); fetch the values of the Tied regions and call
	// [ResolveTie].
	ActionTie
)

// String returns "copy", "mark" or "tie".
func (a Action) String() string {
	switch a {
	case ActionCopy:
		return "copy"
	case ActionMark:
		return "mark"
	case ActionTie:
		return "tie"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Plan is how to repair one divergent row. A Plan whose Action is 0 writes
// nothing: the winner has expired (Winner.Expired), so the row is
// logically absent and no older version may replace it.
type Plan struct {
	Action Action
	// Winner is the winning version in digest form. For ActionTie only its
	// Timestamp and Expires are the tie's, and Deleted says whether
	// deletion markers are among the tied versions (the written row is
	// then a marker: see ResolveTie).
	Winner Observed
	// Source is the region to copy the winner from (ActionCopy, ActionMark);
	// -1 for ActionTie and for no action.
	Source int
	// Targets are the regions whose state differs from the winner's and
	// must be written (for ActionTie, only after ResolveTie).
	Targets []int
	// Tied are the regions holding a value at the tie's timestamp and
	// expiry, whose values decide the tie (ActionTie only).
	Tied []int
}

// longerTTL reports whether a remaining TTL a outlives b (0 means forever).
func longerTTL(a, b int32) bool {
	if a == 0 || b == 0 {
		return a == 0 && b != 0
	}
	return a > b
}

// digestVersion is the part of quorum.Version an observation tells: all
// but the value.
func digestVersion(o Observed) quorum.Version {
	return quorum.Version{Timestamp: o.Timestamp, Expires: o.Expires, Deleted: o.Deleted}
}

// sameSlot reports whether o has the timestamp and expiry of w: the
// versions at w's place in quorum.Compare's order, before kinds and values.
func sameSlot(o, w Observed) bool {
	return o.Present && o.Timestamp == w.Timestamp && o.Expires == w.Expires
}

// PlanRow decides how to repair a divergent row by the order of
// [quorum.Compare] as far as digests allow: the highest timestamp wins;
// then a version that expires beats one that never does; then the later
// expiry; then a deletion marker beats values. Expired observations take
// part: if the winner has expired, nothing is written (Action 0). Among
// the versions with the top timestamp and expiry:
//
//   - only deletion markers: ActionMark, the marker with the greatest
//     digest cell (as Cassandra keeps it) is written to the regions that
//     do not hold it;
//   - only values, one digest: ActionCopy from the region whose copy lives
//     longest;
//   - values with different digests, or markers beside values: ActionTie,
//     decided from the values by [ResolveTie].
func PlanRow(d *Divergence) Plan {
	p := Plan{Source: -1}
	top := -1
	for i, o := range d.Regions {
		if o.Present && (top < 0 || quorum.Compare(digestVersion(o), digestVersion(d.Regions[top])) > 0) {
			top = i
		}
	}
	if top < 0 {
		return p // nothing present anywhere: nothing to do
	}
	slot := d.Regions[top]
	for _, o := range d.Regions {
		// One region scanned after the winner's expiry is enough: it has
		// passed everywhere by now.
		if sameSlot(o, slot) && o.Expired {
			p.Winner = o
			return p // the winner is logically absent: nothing to copy
		}
	}
	var markers, values []int
	digests := map[int64]bool{}
	for i, o := range d.Regions {
		if !sameSlot(o, slot) {
			continue
		}
		if o.Deleted {
			markers = append(markers, i)
		} else {
			values = append(values, i)
			digests[o.Digest] = true
		}
	}
	switch {
	case len(values) == 0:
		p.Action = ActionMark
		for _, i := range markers {
			o := d.Regions[i]
			if p.Source < 0 || uint64(o.Digest) > uint64(d.Regions[p.Source].Digest) ||
				(o.Digest == d.Regions[p.Source].Digest && longerTTL(o.TTL, d.Regions[p.Source].TTL)) {
				p.Source = i
			}
		}
	case len(markers) == 0 && len(digests) == 1:
		p.Action = ActionCopy
		for _, i := range values {
			if p.Source < 0 || longerTTL(d.Regions[i].TTL, d.Regions[p.Source].TTL) {
				p.Source = i
			}
		}
	default:
		p.Action = ActionTie
		p.Tied = values
		p.Winner = Observed{Present: true, Timestamp: slot.Timestamp, Expires: slot.Expires, Deleted: len(markers) > 0}
		return p
	}
	p.Winner = d.Regions[p.Source]
	for i, o := range d.Regions {
		if !o.Same(p.Winner) {
			p.Targets = append(p.Targets, i)
		}
	}
	return p
}

// Write is one row to write to a set of regions: every cell, with the
// winner's own timestamp and absolute expiry. It carries no TTL: the
// writer computes the TTL left until Expires at the moment it writes
// (schema.TTLUntil), so a copy never outlives the original.
type Write struct {
	PK, CK    []byte
	Timestamp int64
	// Expires is the absolute expiry, seconds since the Unix epoch; 0
	// means never.
	Expires int64
	Deleted bool
	// Value is the value cell: a live row's value, nil for a deletion
	// marker — except for the cell-wise join of a tie between markers and
	// values (ResolveTie), where it is the greatest value, kept beside the
	// marker as Cassandra keeps it (see Cells).
	Value []byte
	// Digest is written to the digest column as is.
	Digest int64
	// Targets are the regions to write.
	Targets []int
}

// Cells returns the cells to write, one schema.Cells per INSERT (bind each
// with schema.InsertValues, all with the row's timestamp and TTL, in one
// single-partition batch). It is one INSERT — schema.RowCells with the
// Write's digest — except for a deletion marker with a value cell (the
// join of a tie between markers and values): a marker's value binds as an
// empty blob (row format 2), so the join is two INSERTs, the value and the
// marker with one digest, which Cassandra reconciles cell by cell into
// exactly the join: the greater value cell, deleted = true, the digest.
func (w *Write) Cells() []schema.Cells {
	c := schema.RowCells(w.Deleted, w.Value, w.Expires)
	c.Digest = w.Digest
	if !w.Deleted || len(w.Value) == 0 {
		return []schema.Cells{c}
	}
	v := schema.RowCells(false, w.Value, w.Expires)
	v.Digest = w.Digest
	return []schema.Cells{v, c}
}

// ResolveTie decides a tie (ActionTie) from the values of the tied regions:
// values[k] is the value region p.Tied[k] holds. The row written is the
// cell-wise join Cassandra keeps when the tied writes meet (each cell is
// reconciled on its own, the greater value winning at equal timestamps and
// expiries): the greatest value by [quorum.Compare] (a deletion marker's
// value cell counts as empty), deleted when any tied version is a marker,
// and the greatest digest cell of the tie (compared as unsigned bytes),
// with the tie's timestamp and expiry. So afterwards every region holds
// identical cells — exactly what Cassandra itself would keep if every write
// had reached every region — and the next run sees no difference. Targets
// are the regions whose cells differ from the join: those not holding it
// by digest, the tied regions holding another value, and, when the join
// is a marker with a value, every marker of the tie (a marker's value cell
// cannot be seen in a digest scan; writing it again is idempotent).
func ResolveTie(d *Divergence, p Plan, values [][]byte) (Write, error) {
	if p.Action != ActionTie || len(values) != len(p.Tied) || len(p.Tied) == 0 {
		return Write{}, fmt.Errorf("repair: ResolveTie needs one value per tied region (plan %s, %d tied, %d values)", p.Action, len(p.Tied), len(values))
	}
	vs := make([]quorum.Version, len(values))
	for k, v := range values {
		vs[k] = quorum.Version{Timestamp: p.Winner.Timestamp, Expires: p.Winner.Expires, Value: v}
	}
	best := quorum.Newest(vs)
	w := Write{PK: d.PK, CK: d.CK, Timestamp: p.Winner.Timestamp, Expires: p.Winner.Expires,
		Deleted: p.Winner.Deleted, Value: values[best]}
	w.Digest = greatestDigest(d, p.Winner)
	holds := make(map[int]bool, len(p.Tied))
	for k, r := range p.Tied {
		holds[r] = quorum.Compare(vs[k], vs[best]) == 0
	}
	w.Targets = tieTargets(d, Observed{Present: true, Timestamp: w.Timestamp, Expires: w.Expires, Deleted: w.Deleted, Digest: w.Digest},
		len(w.Value) > 0, func(r int) bool { return holds[r] })
	return w, nil
}

// greatestDigest returns the greatest digest cell (unsigned) among the
// regions at the tie's timestamp and expiry.
func greatestDigest(d *Divergence, slot Observed) int64 {
	var best int64
	found := false
	for _, o := range d.Regions {
		if sameSlot(o, slot) && (!found || uint64(o.Digest) > uint64(best)) {
			best, found = o.Digest, true
		}
	}
	return best
}

// tieTargets returns the regions whose cells differ from the join written
// of a tie (joined, in digest form): regions not the same by digest; for a
// value, the regions the same by digest that hold another value (holds
// false); for a marker with a value cell (joinValue), every marker.
func tieTargets(d *Divergence, joined Observed, joinValue bool, holds func(r int) bool) []int {
	var out []int
	for r, o := range d.Regions {
		same := o.Same(joined)
		switch {
		case same && joined.Deleted:
			same = !joinValue
		case same:
			same = holds(r)
		}
		if !same {
			out = append(out, r)
		}
	}
	return out
}

// PairDiffs counts, for every pair of regions (i < j), whether the row
// differs between them; counts is indexed by PairIndex(i, j, n).
func PairDiffs(d *Divergence, counts []int64) {
	n := len(d.Regions)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if !d.Regions[i].Same(d.Regions[j]) {
				counts[PairIndex(i, j, n)]++
			}
		}
	}
}

// PairIndex numbers the pairs i < j of n regions from 0 to n*(n-1)/2 - 1.
func PairIndex(i, j, n int) int {
	return i*n - i*(i+1)/2 + (j - i - 1)
}
