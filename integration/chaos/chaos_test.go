package chaos

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/quorum"
)

var k1 = Key{PK: "p", CK: "c"}

func put(ts int64, v string, acked bool) Write {
	return Write{Key: k1, V: quorum.Version{Timestamp: ts, Value: []byte(v)}, Acked: acked, Op: "put"}
}

func del(ts int64, acked bool) Write {
	return Write{Key: k1, V: quorum.Version{Timestamp: ts, Deleted: true, Expires: 9_999_999_999}, Acked: acked, Op: "delete"}
}

func everywhere(s State) map[string]map[Key]State {
	return map[string]map[Key]State{"a": {k1: s}, "b": {k1: s}, "c": {k1: s}}
}

func history(ws ...Write) *History {
	h := &History{}
	for _, w := range ws {
		h.AddWrite(w)
	}
	return h
}

func TestCheckCases(t *testing.T) {
	absent := State{}
	held := func(w Write) State { return State{Present: true, V: w.V} }
	p1, p2m, p3 := put(1, "one", true), put(2, "two", false), put(3, "three", true)
	d2 := del(2, true)
	for _, c := range []struct {
		name string
		ws   []Write
		s    State
		ok   bool
		kind string
	}{
		{"the greatest acked write", []Write{p1, p3}, held(p3), true, ""},
		{"an older acked write survives: lost", []Write{p1, p3}, held(p1), false, "lost"},
		{"absent after an acked write: lost", []Write{p1}, absent, false, "lost"},
		{"absent when nothing was acked", []Write{p2m}, absent, true, ""},
		{"a failed write that landed", []Write{p1, p2m}, held(p2m), true, ""},
		{"a failed write below an acked one cannot win", []Write{p2m, p3}, held(p2m), false, "lost"},
		{"a version no one wrote", []Write{p1}, State{Present: true, V: quorum.Version{Timestamp: 1, Value: []byte("other")}}, false, "unwritten"},
		{"a live value under an acked newer delete: resurrection", []Write{p1, d2}, held(p1), false, "resurrected"},
		{"the delete holds", []Write{p1, d2}, held(d2), true, ""},
		{"a newer write after the delete", []Write{p1, d2, p3}, held(p3), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Check(history(c.ws...), everywhere(c.s))
			if v.OK() != c.ok {
				t.Fatalf("OK = %v, want %v: %s", v.OK(), c.ok, v)
			}
			got := map[string]int{"lost": len(v.Lost), "resurrected": len(v.Resurrected), "unwritten": len(v.Unwritten)}
			if c.kind != "" && got[c.kind] == 0 {
				t.Fatalf("no %s reported: %s", c.kind, v)
			}
		})
	}
}

func TestCheckDivergence(t *testing.T) {
	p1 := put(1, "one", true)
	regions := everywhere(State{Present: true, V: p1.V})
	regions["c"] = map[Key]State{} // c lacks it
	v := Check(history(p1), regions)
	if len(v.Diverged) != 1 || len(v.Lost) != 1 {
		t.Fatalf("want one divergence and c's loss: %s", v)
	}
	// Expiries within a second are the same.
	regions = everywhere(State{Present: true, V: quorum.Version{Timestamp: 1, Value: []byte("one"), Expires: 100}})
	regions["b"][k1] = State{Present: true, V: quorum.Version{Timestamp: 1, Value: []byte("one"), Expires: 101}}
	p := put(1, "one", true)
	p.V.Expires = 100
	if v := Check(history(p), regions); !v.OK() {
		t.Fatalf("expiries a second apart judged different: %s", v)
	}
}

// TestCheckAcceptsExactlyThePossibleStates: for random histories of one
// key, the checker accepts a state exactly when it is the greatest version
// of some applied set A, acked ⊆ A ⊆ acked ∪ maybe (enumerated), or absent
// when A can be empty.
func TestCheckAcceptsExactlyThePossibleStates(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 2000 {
		n := 1 + r.IntN(5)
		var ws []Write
		for i := range n {
			ts := int64(1 + r.IntN(4)) // ties happen
			if r.IntN(3) == 0 {
				ws = append(ws, del(ts, r.IntN(2) == 0))
			} else {
				ws = append(ws, put(ts, string(rune('a'+i)), r.IntN(2) == 0))
			}
		}
		possible := possibleStates(ws)
		candidates := []State{{}}
		for _, w := range ws {
			candidates = append(candidates, State{Present: true, V: w.V})
		}
		candidates = append(candidates, State{Present: true, V: quorum.Version{Timestamp: 9, Value: []byte("z")}})
		for _, s := range candidates {
			want := slices.ContainsFunc(possible, func(p State) bool { return same(p, s) })
			if got := Check(history(ws...), everywhere(s)).OK(); got != want {
				t.Fatalf("history %+v, state %v: checker says %v, the enumeration %v", ws, s, got, want)
			}
		}
	}
}

// possibleStates enumerates every applied subset.
func possibleStates(ws []Write) []State {
	var out []State
	for mask := 0; mask < 1<<len(ws); mask++ {
		var best *quorum.Version
		ok := true
		for i, w := range ws {
			in := mask&(1<<i) != 0
			if w.Acked && !in {
				ok = false
				break
			}
			if in && (best == nil || quorum.Compare(w.V, *best) > 0) {
				v := w.V
				best = &v
			}
		}
		if !ok {
			continue
		}
		if best == nil {
			out = append(out, State{})
		} else {
			out = append(out, State{Present: true, V: *best})
		}
	}
	return out
}

func TestScheduleIsSeededAndBounded(t *testing.T) {
	d := 90 * time.Second
	a, b := Schedule(42, d, []string{"a", "b", "c"}), Schedule(42, d, []string{"a", "b", "c"})
	if !slices.Equal(a, b) {
		t.Fatal("one seed drew two schedules")
	}
	kinds := map[FaultKind]bool{}
	for _, f := range a {
		kinds[f.Kind] = true
		if f.At < 0 || f.At+f.For >= d {
			t.Fatalf("fault %v outside the run of %v", f, d)
		}
		if (f.Kind == PauseNode || f.Kind == KillNode) && f.Region == "a" {
			t.Fatalf("fault %v on the home region's node", f)
		}
	}
	if len(kinds) < 6 {
		t.Fatalf("only %d kinds of fault in a 90s schedule: %v", len(kinds), a)
	}
	// No two faults on the broker, or on one node, at once.
	for seed := uint64(0); seed < 200; seed++ {
		var kafkaUntil time.Duration
		for _, f := range Schedule(seed, 10*time.Minute, []string{"a", "b", "c"}) {
			if f.Kind == PauseKafka || f.Kind == RestartKafka {
				if f.At < kafkaUntil {
					t.Fatalf("seed %d: %v overlaps an earlier broker fault", seed, f)
				}
				kafkaUntil = f.At + f.For
			}
		}
	}
	w1, w2 := NewWorkload(1, 1), NewWorkload(1, 1)
	for range 100 {
		if x, y := w1.Next(), w2.Next(); x.Key != y.Key || x.Kind != y.Kind {
			t.Fatal("one seed drew two workloads")
		}
	}
}

func TestCheckWatermark(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k1, k2, k3 := Key{PK: "p", CK: "1"}, Key{PK: "p", CK: "2"}, Key{PK: "p", CK: "3"}
	writes := []Write{
		{Key: k1, V: quorum.Version{Timestamp: 10}, Acked: true},
		{Key: k1, V: quorum.Version{Timestamp: 30}, Acked: true},
		{Key: k2, V: quorum.Version{Timestamp: 20}, Acked: false}, // not acknowledged: promises nothing
		{Key: k3, V: quorum.Version{Timestamp: 15}, Acked: true},
		{Key: k3, V: quorum.Version{Timestamp: 25, Expires: now.Unix() - 5}, Acked: true}, // expired: k3 may be absent
	}
	held := map[Key]State{k1: {Present: true, V: quorum.Version{Timestamp: 10}}}
	if v := CheckWatermark(writes, 20, held, now); len(v) != 0 {
		t.Fatalf("k1 at 10 holds every write below 20: %v", v)
	}
	if v := CheckWatermark(writes, 31, held, now); len(v) != 1 || !strings.Contains(v[0], "p/1") {
		t.Fatalf("k1 lacks version 30, below 31: %v", v)
	}
	held[k1] = State{Present: true, V: quorum.Version{Timestamp: 40}} // a newer version covers it
	if v := CheckWatermark(writes, 31, held, now); len(v) != 0 {
		t.Fatalf("k1 at 40: %v", v)
	}
	delete(held, k1)
	if v := CheckWatermark(writes, 11, held, now); len(v) != 1 {
		t.Fatalf("k1 absent with an acknowledged write below the watermark: %v", v)
	}
	if v := CheckWatermark(writes[2:], 100, map[Key]State{}, now); len(v) != 0 {
		t.Fatalf("k3's newest write expired, k2 never acknowledged: %v", v)
	}
}
