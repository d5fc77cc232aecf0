package quorum

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dataCase is one non-comment line of a testdata file.
type dataCase struct {
	pos     string   // file:line, for messages
	read    bool     // "read" prefix; write otherwise
	level   Level    // parsed level (may be invalid: "Level(n)")
	regions int      // R=n
	args    []string // words after R=n, before "->"
	want    string   // text after "->"
}

// readCases parses a testdata file in the format its header describes.
func readCases(t *testing.T, path string) []dataCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []dataCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pos := fmt.Sprintf("%s:%d", path, n)
		lhs, rhs, ok := strings.Cut(line, "->")
		if !ok {
			t.Fatalf("%s: no \"->\" in %q", pos, line)
		}
		words := strings.Fields(lhs)
		c := dataCase{pos: pos, want: strings.TrimSpace(rhs)}
		if len(words) > 0 && (words[0] == "read" || words[0] == "write") {
			c.read = words[0] == "read"
			words = words[1:]
		}
		if len(words) < 2 {
			t.Fatalf("%s: want LEVEL R=n, got %q", pos, line)
		}
		if c.level, err = parseTestLevel(words[0]); err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		r, ok := strings.CutPrefix(words[1], "R=")
		if !ok {
			t.Fatalf("%s: want R=n, got %q", pos, words[1])
		}
		if c.regions, err = strconv.Atoi(r); err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		c.args = words[2:]
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return cases
}

// parseTestLevel accepts what ParseLevel accepts, and "Level(n)" for an
// invalid level.
func parseTestLevel(s string) (Level, error) {
	if n, ok := strings.CutPrefix(s, "Level("); ok {
		v, err := strconv.ParseUint(strings.TrimSuffix(n, ")"), 10, 8)
		return Level(v), err
	}
	return ParseLevel(s)
}

func (c dataCase) plan(t *testing.T) Plan {
	t.Helper()
	mk := WritePlan
	if c.read {
		mk = ReadPlan
	}
	p, err := mk(c.level, c.regions)
	if err != nil {
		t.Fatalf("%s: %v", c.pos, err)
	}
	return p
}

var outcomeWords = map[string]Outcome{"pend": Pending, "ack": Acked, "hint": Hinted, "fail": Failed}
var resultWords = map[string]Result{"pending": ResultPending, "succeeded": Succeeded, "lost": Lost}

func TestResultsData(t *testing.T) {
	for _, c := range readCases(t, "testdata/results.txt") {
		p := c.plan(t)
		if len(c.args) != c.regions {
			t.Fatalf("%s: R=%d but %d outcomes", c.pos, c.regions, len(c.args))
		}
		outcomes := make([]Outcome, len(c.args))
		for i, w := range c.args {
			o, ok := outcomeWords[w]
			if !ok {
				t.Fatalf("%s: unknown outcome %q (want pend, ack, hint or fail)", c.pos, w)
			}
			outcomes[i] = o
		}
		want, ok := resultWords[c.want]
		if !ok {
			t.Fatalf("%s: unknown result %q (want pending, succeeded or lost)", c.pos, c.want)
		}
		if got := p.Result(outcomes); got != want {
			t.Errorf("%s: got %s, want %s\n\t%s", c.pos, got, want, p.Describe(outcomes))
		}
	}
}

func TestPlansData(t *testing.T) {
	for _, c := range readCases(t, "testdata/plans.txt") {
		mk := WritePlan
		if c.read {
			mk = ReadPlan
		}
		p, err := mk(c.level, c.regions)
		if wantErr, ok := strings.CutPrefix(c.want, "error "); ok {
			sentinels := map[string]error{
				"ErrWriteOnly": ErrWriteOnly, "ErrUnknownLevel": ErrUnknownLevel, "ErrNoRegions": ErrNoRegions,
			}
			target, ok := sentinels[wantErr]
			if !ok {
				t.Fatalf("%s: unknown error %q", c.pos, wantErr)
			}
			if !errors.Is(err, target) {
				t.Errorf("%s: got plan %v, error %v; want error wrapping %s", c.pos, p, err, wantErr)
			}
			if p != (Plan{}) {
				t.Errorf("%s: got plan %#v with the error, want the zero Plan", c.pos, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.pos, err)
			continue
		}
		got := fmt.Sprintf("sync=%v async=%v need=%d", p.Sync(), p.Async(), p.Required())
		if got != c.want {
			t.Errorf("%s: %s: got %s, want %s", c.pos, p, got, c.want)
		}
		if p.Level != c.level || p.Regions != c.regions || p.IsRead() != c.read {
			t.Errorf("%s: plan fields %#v do not match the request", c.pos, p)
		}
	}
}

// refFinal says whether a call whose regions have all answered (no Pending)
// succeeded, read straight off the design table, without Required.
func refFinal(l Level, final []Outcome) bool {
	home := final[0]
	switch l {
	case LocalOne, LocalQuorum:
		return home == Acked
	case Any:
		return home == Acked || home == Hinted
	case Quorum:
		acks := 0
		for _, o := range final {
			if o == Acked {
				acks++
			}
		}
		return 2*acks > len(final) // a strict majority
	case EachQuorum, All:
		return !slices.ContainsFunc(final, func(o Outcome) bool { return o != Acked })
	}
	panic("refFinal: bad level " + l.String())
}

// completions calls f with every way the Pending outcomes could be answered.
// It fills the Pending slots in place and restores them before returning.
func completions(outcomes []Outcome, f func([]Outcome)) {
	i := slices.Index(outcomes, Pending)
	if i < 0 {
		f(outcomes)
		return
	}
	for _, o := range []Outcome{Acked, Hinted, Failed} {
		outcomes[i] = o
		completions(outcomes, f)
	}
	outcomes[i] = Pending
}

// refResult is the reference model of Plan.Result: Succeeded iff every
// completion succeeds, Lost iff none does.
func refResult(l Level, outcomes []Outcome) Result {
	every, some := true, false
	completions(slices.Clone(outcomes), func(final []Outcome) {
		ok := refFinal(l, final)
		every = every && ok
		some = some || ok
	})
	switch {
	case every:
		return Succeeded
	case !some:
		return Lost
	}
	return ResultPending
}

var allOutcomes = []Outcome{Pending, Acked, Hinted, Failed}

// patterns calls f with every slice of r outcomes (4^r of them). The slice is
// reused between calls.
func patterns(r int, f func([]Outcome)) {
	s := make([]Outcome, r)
	var rec func(i int)
	rec = func(i int) {
		if i == r {
			f(s)
			return
		}
		for _, o := range allOutcomes {
			s[i] = o
			rec(i + 1)
		}
	}
	rec(0)
}

// outcomeRank orders answered outcomes from worst to best for a call.
func outcomeRank(o Outcome) int {
	return [...]int{Failed: 0, Hinted: 1, Acked: 2}[o]
}

// resultRank orders results from worst to best.
func resultRank(r Result) int {
	return [...]int{Lost: 0, ResultPending: 1, Succeeded: 2}[r]
}

const maxExhaustiveR = 6

// TestResultExhaustive checks Plan.Result for every level, read and write,
// R = 1..maxExhaustiveR and every pattern of outcomes against the reference
// model, and checks that decided results are final, that Result is monotonic,
// and that regions outside Sync never matter.
func TestResultExhaustive(t *testing.T) {
	checked := 0
	for _, l := range Levels() {
		for _, read := range []bool{false, true} {
			if read && !l.ValidForRead() {
				continue
			}
			for r := 1; r <= maxExhaustiveR; r++ {
				mk := WritePlan
				if read {
					mk = ReadPlan
				}
				p, err := mk(l, r)
				if err != nil {
					t.Fatal(err)
				}
				sync := p.Sync()
				patterns(r, func(out []Outcome) {
					checked++
					got := p.Result(out)
					if want := refResult(l, out); got != want {
						t.Fatalf("%s: want %s (reference)", p.Describe(out), want)
					}
					for i, old := range out {
						for _, o := range allOutcomes {
							if o == old {
								continue
							}
							out[i] = o
							next := p.Result(out)
							out[i] = old
							changed := func(why string) {
								t.Helper()
								c := slices.Clone(out)
								c[i] = o
								t.Fatalf("%s: %s, but %s", p.Describe(out), why, p.Describe(c))
							}
							if !slices.Contains(sync, i) && next != got {
								changed(fmt.Sprintf("region %s is not waited on", RegionLabel(i)))
							}
							switch {
							case old == Pending && got != ResultPending && next != got:
								changed("a decided result changed")
							case old == Pending && o == Acked && resultRank(next) < resultRank(got):
								changed("an ack made it worse")
							case old == Pending && o == Failed && resultRank(next) > resultRank(got):
								changed("a failure made it better")
							case old != Pending && o != Pending &&
								cmpSign(outcomeRank(o), outcomeRank(old))*cmpSign(resultRank(next), resultRank(got)) < 0:
								changed(fmt.Sprintf("%s -> %s moved the result the other way", old, o))
							}
						}
					}
				})
			}
		}
	}
	// 6 write levels + 5 read levels, each over sum(4^r, r=1..6) patterns.
	if want := 11 * (4 + 16 + 64 + 256 + 1024 + 4096); checked != want {
		t.Fatalf("checked %d patterns, want %d", checked, want)
	}
}

func cmpSign(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestReadWriteSameRules checks that a read and a write at the same level
// decide identically.
func TestReadWriteSameRules(t *testing.T) {
	for _, l := range Levels() {
		if !l.ValidForRead() {
			continue
		}
		for r := 1; r <= 4; r++ {
			w, _ := WritePlan(l, r)
			rd, _ := ReadPlan(l, r)
			patterns(r, func(out []Outcome) {
				if a, b := w.Result(out), rd.Result(out); a != b {
					t.Fatalf("write %s vs read %s", w.Describe(out), rd.Describe(out))
				}
			})
		}
	}
}

// TestUnknownOutcomeIsFailed checks that an Outcome outside the constants
// counts as Failed.
func TestUnknownOutcomeIsFailed(t *testing.T) {
	for _, l := range Levels() {
		for r := 1; r <= 3; r++ {
			p, _ := WritePlan(l, r)
			patterns(r, func(out []Outcome) {
				odd := slices.Clone(out)
				for i, o := range odd {
					if o == Failed {
						odd[i] = Outcome(4 + i)
					}
				}
				if a, b := p.Result(out), p.Result(odd); a != b {
					t.Fatalf("%s, but %s", p.Describe(out), p.Describe(odd))
				}
			})
		}
	}
}

// TestPlanShape checks the structural invariants of Sync, Async and Required
// for every valid plan.
func TestPlanShape(t *testing.T) {
	for _, l := range Levels() {
		for r := 1; r <= 30; r++ {
			for _, read := range []bool{false, true} {
				mk := WritePlan
				if read {
					mk = ReadPlan
				}
				p, err := mk(l, r)
				if read && l == Any {
					if !errors.Is(err, ErrWriteOnly) {
						t.Fatalf("ReadPlan(%s, %d): got error %v, want ErrWriteOnly", l, r, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				sync, async := p.Sync(), p.Async()
				if len(sync) == 0 || sync[0] != 0 {
					t.Errorf("%s: Sync %v does not start with the home region", p, sync)
				}
				if read && len(async) != 0 {
					t.Errorf("%s: a read has Async %v", p, async)
				}
				all := append(slices.Clone(sync), async...)
				slices.Sort(all)
				if !read && !slices.Equal(all, indices(0, r)) {
					t.Errorf("%s: Sync %v + Async %v is not every region exactly once", p, sync, async)
				}
				if !slices.IsSorted(sync) || !slices.IsSorted(async) {
					t.Errorf("%s: Sync %v or Async %v not sorted", p, sync, async)
				}
				if need := p.Required(); need < 1 || need > len(sync) {
					t.Errorf("%s: Required %d not in 1..len(Sync)=%d", p, need, len(sync))
				}
				// Every Sync region acked succeeds; every one failed loses.
				acked := make([]Outcome, r)
				failed := make([]Outcome, r)
				for _, i := range sync {
					acked[i], failed[i] = Acked, Failed
				}
				if got := p.Result(acked); got != Succeeded {
					t.Errorf("%s", p.Describe(acked))
				}
				if got := p.Result(failed); got != Lost {
					t.Errorf("%s", p.Describe(failed))
				}
				// The slices are fresh: changing one does not change the plan.
				sync[0] = 99
				if p.Sync()[0] != 0 {
					t.Errorf("%s: Sync shares its slice", p)
				}
			}
		}
	}
}

func TestInvalidPlans(t *testing.T) {
	for _, p := range []Plan{{}, {Level: Quorum}, {Level: Level(9), Regions: 3}, {Level: Quorum, Regions: -2}} {
		if p.Sync() != nil || p.Async() != nil || p.Required() != 0 {
			t.Errorf("%#v: Sync %v Async %v Required %d, want nil nil 0", p, p.Sync(), p.Async(), p.Required())
		}
		if d := p.Describe(nil); !strings.HasSuffix(d, "-> INVALID") {
			t.Errorf("%#v: Describe = %q, want it to end in -> INVALID", p, d)
		}
		mustPanic(t, "Result on "+p.String(), func() { p.Result(make([]Outcome, max(p.Regions, 0))) })
	}
	p, _ := WritePlan(Quorum, 3)
	mustPanic(t, "Result with 2 outcomes for R=3", func() { p.Result([]Outcome{Acked, Acked}) })
	if d := p.Describe([]Outcome{Acked}); d != "QUORUM R=3 need 2: [a:ACKED] -> INVALID" {
		t.Errorf("Describe with too few outcomes = %q", d)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestDescribe(t *testing.T) {
	mk := func(read bool, l Level, r int) Plan {
		f := WritePlan
		if read {
			f = ReadPlan
		}
		p, err := f(l, r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		p    Plan
		out  []Outcome
		want string
	}{
		{mk(false, Quorum, 3), []Outcome{Acked, Failed, Pending},
			"QUORUM R=3 need 2: [a:ACKED b:FAILED c:PENDING] -> PENDING"},
		{mk(false, LocalQuorum, 3), []Outcome{Acked, Pending, Hinted},
			"LOCAL_QUORUM R=3 need 1: [a:ACKED (b:PENDING) (c:HINTED)] -> SUCCEEDED"},
		{mk(false, Any, 2), []Outcome{Hinted, Failed},
			"ANY R=2 need 1: [a:HINTED (b:FAILED)] -> SUCCEEDED"},
		{mk(true, All, 2), []Outcome{Acked, Hinted},
			"read ALL R=2 need 2: [a:ACKED b:HINTED] -> LOST"},
		{mk(false, EachQuorum, 1), []Outcome{Outcome(7)},
			"EACH_QUORUM R=1 need 1: [a:Outcome(7)] -> LOST"},
	} {
		if got := c.p.Describe(c.out); got != c.want {
			t.Errorf("Describe:\n got %s\nwant %s", got, c.want)
		}
	}
	// Past z, regions are numbered.
	p := mk(false, All, 28)
	out := make([]Outcome, 28)
	for i := range out {
		out[i] = Acked
	}
	if got := p.Describe(out); !strings.Contains(got, " z:ACKED r27:ACKED r28:ACKED] -> SUCCEEDED") {
		t.Errorf("Describe R=28: %s", got)
	}
}

func TestOutcomeResultStrings(t *testing.T) {
	for o, want := range map[Outcome]string{Pending: "PENDING", Acked: "ACKED", Hinted: "HINTED", Failed: "FAILED", 4: "Outcome(4)"} {
		if got := o.String(); got != want {
			t.Errorf("Outcome %d: %q, want %q", o, got, want)
		}
	}
	for r, want := range map[Result]string{ResultPending: "PENDING", Succeeded: "SUCCEEDED", Lost: "LOST", 3: "Result(3)"} {
		if got := r.String(); got != want {
			t.Errorf("Result %d: %q, want %q", r, got, want)
		}
	}
}

func TestPlanLiteralIsWritePlan(t *testing.T) {
	for _, l := range Levels() {
		w, err := WritePlan(l, 3)
		if err != nil || w != (Plan{Level: l, Regions: 3}) {
			t.Errorf("WritePlan(%s, 3) = %#v, %v; want the literal", l, w, err)
		}
		if r, err := ReadPlan(l, 3); err == nil && (r == w || !r.IsRead() || w.IsRead()) {
			t.Errorf("ReadPlan(%s, 3) = %#v, not distinct from WritePlan %#v", l, r, w)
		}
	}
}
