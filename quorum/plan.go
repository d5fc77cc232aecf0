package quorum

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Outcome is what is known about one region's part of a call.
type Outcome uint8

// The outcomes of one region. A region starts Pending and moves to exactly one
// of the others.
const (
	// Pending means the region has not answered yet.
	Pending Outcome = iota
	// Acked means the region applied the write (or answered the read) at the
	// plan's consistency inside the region.
	Acked
	// Hinted means the region failed or was skipped (for example, its circuit
	// breaker is open) but the hint for it is durable. It counts as success
	// only for the home region of an [Any] call; everywhere else it counts as
	// not acked.
	Hinted
	// Failed means the region failed and no durable hint stands in for it.
	Failed
)

// String returns "PENDING", "ACKED", "HINTED" or "FAILED", or "Outcome(N)"
// for a value that is not one of the constants.
func (o Outcome) String() string {
	switch o {
	case Pending:
		return "PENDING"
	case Acked:
		return "ACKED"
	case Hinted:
		return "HINTED"
	case Failed:
		return "FAILED"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the state of a whole call, given the outcomes known so far.
type Result uint8

// The results of a call. ResultPending is the zero value.
const (
	// ResultPending means the call can still go either way: keep waiting.
	ResultPending Result = iota
	// Succeeded means the call has succeeded, whatever the regions still
	// pending do: return success now.
	Succeeded
	// Lost means the call can no longer succeed, whatever the regions still
	// pending do: return the error now.
	Lost
)

// String returns "PENDING", "SUCCEEDED" or "LOST", or "Result(N)" for a value
// that is not one of the constants.
func (r Result) String() string {
	switch r {
	case ResultPending:
		return "PENDING"
	case Succeeded:
		return "SUCCEEDED"
	case Lost:
		return "LOST"
	}
	return "Result(" + strconv.Itoa(int(r)) + ")"
}

// ErrWriteOnly is wrapped by the error [ReadPlan] returns for [Any], which is
// a level for writes only.
var ErrWriteOnly = errors.New("quorum: consistency level ANY is for writes only")

// ErrNoRegions is wrapped by the error [WritePlan] and [ReadPlan] return for
// a region count below 1.
var ErrNoRegions = errors.New("quorum: a plan needs at least one region")

// Plan says, for one level and R regions, which regions a call reaches
// synchronously and how their outcomes combine into a [Result].
//
// Regions are numbered 0..R-1 and region 0 is always the home region. Make a
// Plan with [WritePlan] or [ReadPlan], which check their arguments; a literal
// Plan{Level: l, Regions: r} with a valid level and r ≥ 1 is the same as
// WritePlan(l, r). A Plan is a small comparable value, safe to copy and to use
// from many goroutines.
type Plan struct {
	// Level is the consistency level of the call.
	Level Level
	// Regions is R, the number of regions in the deployment.
	Regions int

	read bool // a ReadPlan: nothing happens in the background
}

// WritePlan returns the plan for a write at level l in a deployment of
// regions regions. It fails, wrapping [ErrUnknownLevel], if l is not valid,
// and wrapping [ErrNoRegions] if regions < 1.
func WritePlan(l Level, regions int) (Plan, error) {
	if err := check(l, regions); err != nil {
		return Plan{}, err
	}
	return Plan{Level: l, Regions: regions}, nil
}

// ReadPlan returns the plan for a read at level l in a deployment of regions
// regions. Reads follow the same rules as writes, except that [LocalOne] and
// [LocalQuorum] read the home region only and nothing is done in the
// background. It fails like [WritePlan], and also for [Any], wrapping
// [ErrWriteOnly].
func ReadPlan(l Level, regions int) (Plan, error) {
	if err := check(l, regions); err != nil {
		return Plan{}, err
	}
	if l == Any {
		return Plan{}, fmt.Errorf("%w; read at %s or %s instead", ErrWriteOnly, LocalOne, LocalQuorum)
	}
	return Plan{Level: l, Regions: regions, read: true}, nil
}

func check(l Level, regions int) error {
	if !l.Valid() {
		return fmt.Errorf("%w %s; use one of %s", ErrUnknownLevel, l, validNames)
	}
	if regions < 1 {
		return fmt.Errorf("%w, got %d; count the home region too", ErrNoRegions, regions)
	}
	return nil
}

// valid reports whether p is a plan WritePlan or ReadPlan could return.
func (p Plan) valid() bool {
	return p.Level.Valid() && p.Regions >= 1 && !(p.read && p.Level == Any)
}

// homeOnly reports whether only the home region's outcome decides the call.
func (p Plan) homeOnly() bool {
	switch p.Level {
	case LocalOne, LocalQuorum, Any:
		return true
	}
	return false
}

// IsRead reports whether p was made by [ReadPlan].
func (p Plan) IsRead() bool { return p.read }

// Sync returns the indices of the regions the call waits on, in increasing
// order: [0] (the home region) for [LocalOne], [LocalQuorum] and [Any]; every
// region for [Quorum], [EachQuorum] and [All]. It returns nil for a Plan that
// is not valid. The slice is new on every call.
func (p Plan) Sync() []int {
	if !p.valid() {
		return nil
	}
	if p.homeOnly() {
		return []int{0}
	}
	return indices(0, p.Regions)
}

// Async returns the indices of the regions a write reaches in the background,
// without waiting: every region not in [Plan.Sync]. A read does nothing in the
// background, so for a read plan it returns nil, as it does for a Plan that is
// not valid. The slice is new on every call.
func (p Plan) Async() []int {
	if !p.valid() || p.read || !p.homeOnly() {
		return nil
	}
	return indices(1, p.Regions)
}

func indices(from, to int) []int {
	if from >= to {
		return nil
	}
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// Required returns how many regions must ack for the call to succeed: 1 (the
// home region) for [LocalOne], [LocalQuorum] and [Any]; a majority, R/2+1,
// for [Quorum]; R for [EachQuorum] and [All]. For [Any] the home region's
// durable hint stands in for its ack. It returns 0 for a Plan that is not
// valid.
func (p Plan) Required() int {
	if !p.valid() {
		return 0
	}
	switch p.Level {
	case Quorum:
		return p.Regions/2 + 1
	case EachQuorum, All:
		return p.Regions
	}
	return 1
}

// Result combines the outcomes known so far, one per region (outcomes[0] is
// the home region), into the state of the call. It decides as early as
// possible: it returns [Succeeded] as soon as every way the pending regions
// could still answer leads to success, [Lost] as soon as none does, and
// [ResultPending] otherwise. Once decided, the result never changes however
// the pending regions answer.
//
// The rules, with R regions:
//
//   - LocalOne, LocalQuorum: the home region decides. Acked succeeds; Failed
//     or Hinted loses. The other regions do not matter.
//   - Any: the home region decides. Acked or Hinted succeeds; Failed loses.
//   - Quorum: succeeds once R/2+1 regions are Acked; loses once Acked plus
//     Pending is below R/2+1. Hinted counts as not acked.
//   - EachQuorum, All: succeeds once every region is Acked; loses as soon as
//     one is Failed or Hinted.
//
// An Outcome that is not one of the four constants counts as [Failed].
// Result panics if p is not a valid plan (one [WritePlan] or [ReadPlan]
// returns) or len(outcomes) != p.Regions: both are programming errors.
func (p Plan) Result(outcomes []Outcome) Result {
	if !p.valid() {
		panic(fmt.Sprintf("quorum: Result called on invalid plan %s (make plans with WritePlan or ReadPlan)", p))
	}
	if len(outcomes) != p.Regions {
		panic(fmt.Sprintf("quorum: %s: Result got %d outcomes, want one per region", p, len(outcomes)))
	}
	if p.homeOnly() {
		switch outcomes[0] {
		case Pending:
			return ResultPending
		case Acked:
			return Succeeded
		case Hinted:
			if p.Level == Any {
				return Succeeded
			}
		}
		return Lost
	}
	acked, pending := 0, 0
	for _, o := range outcomes {
		switch o {
		case Acked:
			acked++
		case Pending:
			pending++
		}
	}
	need := p.Required()
	switch {
	case acked >= need:
		return Succeeded
	case acked+pending < need:
		return Lost
	}
	return ResultPending
}

// String returns the plan in the form Describe starts with, such as
// "QUORUM R=3 need 2"; a read plan is prefixed with "read ".
func (p Plan) String() string {
	var b strings.Builder
	if p.read {
		b.WriteString("read ")
	}
	fmt.Fprintf(&b, "%s R=%d need %d", p.Level, p.Regions, p.Required())
	return b.String()
}

// Describe returns a one-line account of the plan, the outcomes and the
// result, for logs, error messages and failing tests, for example
//
//	QUORUM R=3 need 2: [a:ACKED b:FAILED c:PENDING] -> PENDING
//
// Regions are named a, b, c, ... in index order (a is the home region; past
// z they are named r27, r28, ...). Regions the call does not wait on are shown
// in parentheses, such as "(b:PENDING)". Unlike [Plan.Result], Describe never
// panics: for an invalid plan or the wrong number of outcomes it ends with
// "-> INVALID".
func (p Plan) Describe(outcomes []Outcome) string {
	var b strings.Builder
	b.WriteString(p.String())
	b.WriteString(": [")
	sync := !p.homeOnly()
	for i, o := range outcomes {
		if i > 0 {
			b.WriteByte(' ')
		}
		waited := i == 0 || sync
		if !waited {
			b.WriteByte('(')
		}
		b.WriteString(RegionLabel(i))
		b.WriteByte(':')
		b.WriteString(o.String())
		if !waited {
			b.WriteByte(')')
		}
	}
	b.WriteString("] -> ")
	if !p.valid() || len(outcomes) != p.Regions {
		b.WriteString("INVALID")
	} else {
		b.WriteString(p.Result(outcomes).String())
	}
	return b.String()
}

// RegionLabel returns the short name [Plan.Describe] gives region index i:
// "a" for 0 (the home region) through "z" for 25, then "r27", "r28", ...
// (one-based) for the rest.
func RegionLabel(i int) string {
	if i >= 0 && i < 26 {
		return string(rune('a' + i))
	}
	return "r" + strconv.Itoa(i+1)
}
