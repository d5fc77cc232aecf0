package repair

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestIncrementalRunModel checks the argument of docs/design.md,
// "Incremental repair", on random schedules (one seed a subtest: `go test
// -run 'TestIncrementalRunModel/17'` reproduces one). Stores write keys
// with unique, increasing versions, values and deletion markers, each
// write applied in a random subset of three regions — under the
// watermark's promise for cutoff C: every region holds, for every key, the
// newest version below C that a store wrote, or a newer one. Writes at or
// above C reach any subset (unsettled: in flight, hinted, debt). An
// incremental run from C must then leave every region holding every key's
// winner, the newest version any region held: the result of a full run.
// One key per schedule breaks the promise (a region lost its version below
// C, as a lost disk would): with a version of it at or above C somewhere
// the run must repair it; with none, it may repair it (its segment was
// compared in full for another key's sake) or leave it exactly as it was —
// never anything in between.
func TestIncrementalRunModel(t *testing.T) {
	for seed := uint64(1); seed <= 80; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 4242))
			ms := newTestRegions(3)
			const keys, cutoff = 60, 10_000
			next := int64(100)
			// newest[k][r] is region r's version of key k; kinds and
			// values are derived from the version.
			newest := make([][3]int64, keys)
			apply := func(k int, v int64, regions []int) {
				pk := keyPK(k, keys)
				deleted := v%5 == 0
				for _, r := range regions {
					ms[r].Put(testNS, pk, nil, v, deleted, fmt.Appendf(nil, "v%d", v), 0)
					newest[k][r] = max(newest[k][r], v)
				}
			}
			subset := func(all bool) []int {
				var out []int
				for r := range 3 {
					if all || rng.IntN(2) == 0 {
						out = append(out, r)
					}
				}
				return out
			}
			broken := rng.IntN(keys)
			for k := range keys {
				// Writes below the cutoff: the older ones anywhere, the
				// newest of them everywhere (the promise) — except in one
				// region for the broken key.
				below := rng.IntN(4)
				for i := range below {
					next += int64(1 + rng.IntN(50))
					if i == below-1 {
						regions := subset(true)
						if k == broken {
							regions = regions[:2]
						}
						apply(k, next, regions)
					} else {
						apply(k, next, subset(false))
					}
				}
				if next >= cutoff-200 {
					next = 100
				}
			}
			next = cutoff
			for k := range keys {
				for range rng.IntN(3) {
					next += int64(1 + rng.IntN(50))
					apply(k, next, subset(false))
				}
			}
			// The winner of each key, and whether some region holds a
			// version of it at or above the cutoff.
			winner := make([]int64, keys)
			seen := make([]bool, keys)
			for k := range keys {
				for r := range 3 {
					winner[k] = max(winner[k], newest[k][r])
					seen[k] = seen[k] || newest[k][r] >= cutoff
				}
			}
			r, err := New(regionsOf(ms), Options{Segments: 1 + rng.IntN(8), Since: cutoff})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Run(context.Background(), testNS); err != nil {
				t.Fatal(err)
			}
			for k := range keys {
				pk := keyPK(k, keys)
				var held [3]int64
				for reg := range 3 {
					if v, _, ok := ms[reg].Get(testNS, pk, nil); ok {
						held[reg] = v.Timestamp
					}
				}
				agree := held[0] == winner[k] && held[1] == winner[k] && held[2] == winner[k]
				switch {
				case k == broken && !seen[k]:
					if !agree && held != newest[k] {
						t.Errorf("key %d (lost below the cutoff, nothing above): regions hold %v, were %v: neither repaired nor left alone", k, held, newest[k])
					}
				case !agree:
					t.Errorf("key %d: regions hold %v after the incremental run, want the winner %d everywhere (broken key: %v, a version at or above the cutoff: %v)",
						k, held, winner[k], k == broken, seen[k])
				}
			}
		})
	}
}

// keyPK is key k of n, its token spread evenly over the ring (so that
// runs of 1 to 8 segments each hold some keys).
func keyPK(k, n int) []byte {
	step := ^uint64(0) / uint64(n)
	return pkAt(int64(uint64(k)*step+step/2+(1<<63)), "k")
}
