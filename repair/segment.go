package repair

import (
	"fmt"
	"math"
	"math/bits"
)

// MinToken and MaxToken bound the Murmur3 token ring.
const (
	MinToken int64 = math.MinInt64
	MaxToken int64 = math.MaxInt64
)

// TokenRange is one segment of the token ring: the tokens t with
// Start < t <= End, as CQL's `token(pk) > ? AND token(pk) <= ?` selects them.
// The first segment of a ring (Start == MinToken) also holds MinToken itself,
// so that the segments of [Segments] cover every int64 exactly once.
// (Cassandra's Murmur3Partitioner never gives a key the token MinToken — it
// maps that hash to MaxToken — but repair does not rely on it: the first
// segment's query is inclusive.)
type TokenRange struct {
	// Index is the segment's position in its ring split, from 0.
	Index int
	// Start is the exclusive lower bound (inclusive when it is MinToken).
	Start int64
	// End is the inclusive upper bound.
	End int64
}

// IncludesStart reports whether Start itself belongs to the range: only for
// the range that starts the ring.
func (r TokenRange) IncludesStart() bool { return r.Start == MinToken }

// Contains reports whether token t belongs to the range.
func (r TokenRange) Contains(t int64) bool {
	if t == r.Start {
		return r.IncludesStart()
	}
	return t > r.Start && t <= r.End
}

// String returns "#3 (start, end]" (or "[start, end]" for the first range).
func (r TokenRange) String() string {
	open := "("
	if r.IncludesStart() {
		open = "["
	}
	return fmt.Sprintf("#%d %s%d, %d]", r.Index, open, r.Start, r.End)
}

// MaxSegments bounds the number of segments a ring is split into.
const MaxSegments = 1 << 20

// Segments splits the whole token ring into n ranges of (nearly) equal width,
// in token order. The ranges are contiguous, do not overlap and together hold
// every int64 token: the first starts at MinToken (inclusive), the last ends
// at MaxToken. n is clamped to [1, MaxSegments].
func Segments(n int) []TokenRange {
	n = min(max(n, 1), MaxSegments)
	// The ring is 2^64 tokens wide; boundary i is MinToken + floor(i*2^64/n),
	// computed exactly as a 128-by-64-bit division.
	out := make([]TokenRange, n)
	prev := MinToken
	for i := 0; i < n; i++ {
		end := MaxToken
		if i < n-1 {
			q, _ := bits.Div64(uint64(i+1), 0, uint64(n))
			end = int64(q + 1<<63) // MinToken + q, wrapping
		}
		out[i] = TokenRange{Index: i, Start: prev, End: end}
		prev = end
	}
	return out
}

// SegmentCount sizes a ring split so that a segment holds about
// rowsPerSegment rows given an estimate of the rows in the table. It returns
// fallback when either number is unknown (<= 0), and clamps the result to
// [1, MaxSegments].
func SegmentCount(estimatedRows, rowsPerSegment int64, fallback int) int {
	if estimatedRows <= 0 || rowsPerSegment <= 0 {
		return min(max(fallback, 1), MaxSegments)
	}
	n := (estimatedRows + rowsPerSegment - 1) / rowsPerSegment
	return int(min(max(n, 1), MaxSegments))
}

// SplitRange splits r into n ranges of (nearly) equal width, in token
// order, keeping r's Index on each: contiguous, not overlapping, holding
// exactly r's tokens (the first includes r.Start when r does). Fewer than
// n ranges come back when r holds fewer than n tokens; n is clamped to
// [1, MaxSegments].
func SplitRange(r TokenRange, n int) []TokenRange {
	n = min(max(n, 1), MaxSegments)
	if r.Start == MinToken && r.End == MaxToken {
		out := Segments(n)
		for i := range out {
			out[i].Index = r.Index
		}
		return out
	}
	width := uint64(r.End) - uint64(r.Start) // tokens in (Start, End]
	if width < uint64(n) {
		n = int(max(width, 1))
	}
	out := make([]TokenRange, 0, n)
	prev := r.Start
	for i := 1; i <= n; i++ {
		end := r.End
		if i < n {
			hi, lo := bits.Mul64(uint64(i), width)
			q, _ := bits.Div64(hi, lo, uint64(n))
			end = int64(uint64(r.Start) + q)
		}
		if end != prev {
			out = append(out, TokenRange{Index: r.Index, Start: prev, End: end})
		}
		prev = end
	}
	return out
}

// RangeSegments is the split of a partial run over r: segments of about
// the width of a full run's split into full segments (at least one).
func RangeSegments(r TokenRange, full int) int {
	full = min(max(full, 1), MaxSegments)
	width := float64(uint64(r.End) - uint64(r.Start))
	n := int(math.Ceil(width / math.Exp2(64) * float64(full)))
	return min(max(n, 1), MaxSegments)
}
