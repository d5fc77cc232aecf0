package repair

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/tidemark/tidemark/quorum"
)

// Observed is what one region holds for one row, in digest form.
type Observed struct {
	// Present is false when the region has no such row (never written, or
	// expired); the other fields are then zero.
	Present bool
	// Timestamp is the row's writetime, in microseconds.
	Timestamp int64
	// Digest is the row's digest column.
	Digest int64
	// Deleted marks a deletion marker.
	Deleted bool
	// TTL is the remaining lifetime in seconds when scanned; 0 means none.
	TTL int32
}

// Same reports whether two observations are the same version of a row:
// both absent, or both present with the same timestamp and kind and — for
// values — the same digest. Two deletion markers with the same timestamp are
// the same version whatever their digest cells say, and remaining TTLs are
// not compared.
func (o Observed) Same(p Observed) bool {
	if o.Present != p.Present {
		return false
	}
	if !o.Present {
		return true
	}
	if o.Timestamp != p.Timestamp || o.Deleted != p.Deleted {
		return false
	}
	return o.Deleted || o.Digest == p.Digest
}

// String returns "absent", "ts=… deleted" or "ts=… digest=…", with ttl when
// set.
func (o Observed) String() string {
	if !o.Present {
		return "absent"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ts=%d", o.Timestamp)
	if o.Deleted {
		b.WriteString(" deleted")
	} else {
		fmt.Fprintf(&b, " digest=%016x", uint64(o.Digest))
	}
	if o.TTL > 0 {
		fmt.Fprintf(&b, " ttl=%ds", o.TTL)
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
	// ActionTie: the newest versions are values with equal timestamps and
	// different digests; fetch the values of the Tied regions and call
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

// Plan is how to repair one divergent row.
type Plan struct {
	Action Action
	// Winner is the winning version in digest form (for ActionTie, the
	// timestamp of the tie only).
	Winner Observed
	// Source is the region to copy the winner from (ActionCopy, ActionMark);
	// -1 for ActionTie.
	Source int
	// Targets are the regions that lack the winner and must be written (for
	// ActionTie, only after ResolveTie).
	Targets []int
	// Tied are the regions holding a value at the tie's timestamp, whose
	// values decide the tie (ActionTie only).
	Tied []int
}

// longerTTL reports whether a remaining TTL a outlives b (0 means forever).
func longerTTL(a, b int32) bool {
	if a == 0 || b == 0 {
		return a == 0 && b != 0
	}
	return a > b
}

// PlanRow decides how to repair a divergent row, by the last-write-wins order
// of [quorum.Compare] as far as digests allow: the highest timestamp wins; at
// that timestamp a deletion marker wins over values; values with the same
// timestamp and the same digest are the same version. Values at the same
// timestamp with different digests are a tie that needs the values
// (ActionTie). Among the regions holding the winner, Source is the one whose
// copy lives longest.
func PlanRow(d *Divergence) Plan {
	var top int64
	found := false
	for _, o := range d.Regions {
		if o.Present && (!found || o.Timestamp > top) {
			top, found = o.Timestamp, true
		}
	}
	p := Plan{Source: -1}
	if !found {
		return p // nothing present anywhere: nothing to do
	}
	// A deletion marker at the top timestamp wins.
	for i, o := range d.Regions {
		if o.Present && o.Timestamp == top && o.Deleted {
			if p.Source < 0 || longerTTL(o.TTL, d.Regions[p.Source].TTL) ||
				(o.TTL == d.Regions[p.Source].TTL && uint64(o.Digest) > uint64(d.Regions[p.Source].Digest)) {
				p.Source = i
			}
		}
	}
	if p.Source >= 0 {
		p.Action = ActionMark
		p.Winner = d.Regions[p.Source]
		for i, o := range d.Regions {
			if !(o.Present && o.Timestamp == top && o.Deleted) {
				p.Targets = append(p.Targets, i)
			}
		}
		return p
	}
	var digest int64
	digests := 0
	for i, o := range d.Regions {
		if !o.Present || o.Timestamp != top {
			continue
		}
		p.Tied = append(p.Tied, i)
		if digests == 0 || o.Digest != digest {
			if digests > 0 {
				digests = 2
			} else {
				digests, digest = 1, o.Digest
			}
		}
		if p.Source < 0 || longerTTL(o.TTL, d.Regions[p.Source].TTL) {
			p.Source = i
		}
	}
	if digests > 1 {
		p.Action = ActionTie
		p.Source = -1
		p.Winner = Observed{Present: true, Timestamp: top}
		return p
	}
	p.Tied = nil
	p.Action = ActionCopy
	p.Winner = d.Regions[p.Source]
	for i, o := range d.Regions {
		if !o.Same(p.Winner) {
			p.Targets = append(p.Targets, i)
		}
	}
	return p
}

// Write is one row to write to a set of regions: every cell, with the
// winner's own timestamp and remaining TTL.
type Write struct {
	PK, CK    []byte
	Timestamp int64
	Deleted   bool
	// Value is nil for a deletion marker.
	Value []byte
	// Digest is written to the digest column as is.
	Digest int64
	// TTL is the remaining lifetime in seconds; 0 means none.
	TTL int32
	// Targets are the regions to write.
	Targets []int
}

// ResolveTie decides a tie (ActionTie) from the values of the tied regions:
// values[k] is the value region p.Tied[k] holds. The winning value is the
// greatest by [quorum.Compare]; the digest written is the greatest digest
// cell among the tied regions (compared as unsigned bytes, as Cassandra
// reconciles equal-timestamp cells), so that after the write every region
// holds identical cells — exactly what Cassandra itself would keep if every
// write had reached every region. Targets are the regions that do not hold
// both the winning value and that digest. The TTL is the longest among the
// tied regions holding the winning value.
func ResolveTie(d *Divergence, p Plan, values [][]byte) (Write, error) {
	if p.Action != ActionTie || len(values) != len(p.Tied) || len(p.Tied) == 0 {
		return Write{}, fmt.Errorf("repair: ResolveTie needs one value per tied region (plan %s, %d tied, %d values)", p.Action, len(p.Tied), len(values))
	}
	vs := make([]quorum.Version, len(values))
	for k, v := range values {
		vs[k] = quorum.Version{Timestamp: p.Winner.Timestamp, Value: v}
	}
	best := quorum.Newest(vs)
	w := Write{PK: d.PK, CK: d.CK, Timestamp: p.Winner.Timestamp, Value: values[best]}
	holds := make(map[int]bool, len(p.Tied))
	ttlSet := false
	for k, r := range p.Tied {
		o := d.Regions[r]
		if k == 0 || uint64(o.Digest) > uint64(w.Digest) {
			w.Digest = o.Digest
		}
		if quorum.Compare(vs[k], vs[best]) == 0 {
			holds[r] = true
			if !ttlSet || longerTTL(o.TTL, w.TTL) {
				w.TTL, ttlSet = o.TTL, true
			}
		}
	}
	for r, o := range d.Regions {
		if !(holds[r] && o.Digest == w.Digest) {
			w.Targets = append(w.Targets, r)
		}
	}
	return w, nil
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
