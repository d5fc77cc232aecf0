package quorum

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func live(ts int64, v string) Version { return Version{Timestamp: ts, Value: []byte(v)} }
func del(ts int64) Version            { return Version{Timestamp: ts, Deleted: true} }
func exp(v Version, at int64) Version { v.Expires = at; return v }

func TestCompareTable(t *testing.T) {
	for _, c := range []struct {
		a, b Version
		want int // sign of Compare(a, b)
		why  string
	}{
		{live(2, "a"), live(1, "z"), 1, "higher timestamp wins over a greater value"},
		{live(1, "z"), live(2, "a"), -1, "higher timestamp wins, other side"},
		{live(2, ""), del(1), 1, "a newer value beats an older deletion"},
		{del(2), live(1, "z"), 1, "a newer deletion beats an older value"},
		{del(5), live(5, "z"), 1, "on a tie a deletion wins"},
		{live(5, "\xff\xff"), del(5), -1, "on a tie a deletion wins, other side"},
		{del(5), del(5), 0, "two deletions at one timestamp are the same version"},
		{Version{Timestamp: 5, Deleted: true, Value: []byte("x")}, del(5), 0, "a deletion's Value is ignored"},
		{live(5, "b"), live(5, "a"), 1, "on a tie the greater value wins"},
		{live(5, "ab"), live(5, "a"), 1, "a longer value with the same prefix is greater"},
		{live(5, "\x80"), live(5, "\x7f"), 1, "bytes compare unsigned"},
		{live(5, "a"), live(5, "a"), 0, "identical"},
		{Version{Timestamp: 5}, Version{Timestamp: 5, Value: []byte{}}, 0, "nil equals empty"},
		{live(5, "\x00"), Version{Timestamp: 5}, 1, "a zero byte beats nil"},
		{live(-1, "z"), live(0, ""), -1, "negative timestamps order below zero"},
		{live(math.MaxInt64, ""), live(math.MinInt64, "z"), 1, "extremes do not overflow"},
		{exp(live(5, "a"), 100), live(5, "z"), 1, "on a tie an expiring value beats one that never expires"},
		{exp(del(5), 100), exp(live(5, "z"), 200), -1, "on a tie the later expiry wins, even over a deletion"},
		{exp(del(5), 200), exp(live(5, "z"), 100), 1, "on a tie the later expiry wins"},
		{exp(del(5), 100), exp(live(5, "z"), 100), 1, "equal expiries: a deletion wins"},
		{exp(live(5, "b"), 100), exp(live(5, "a"), 100), 1, "equal expiries: the greater value wins"},
		{exp(live(6, "a"), 100), exp(live(5, "a"), 900), 1, "a higher timestamp wins over a later expiry"},
		{exp(del(5), 100), exp(del(5), 200), -1, "two markers: the later expiry wins"},
		{del(math.MinInt64), live(math.MaxInt64, ""), -1, "extremes do not overflow, other side"},
	} {
		got := Compare(c.a, c.b)
		if cmpSign(got, 0) != c.want {
			t.Errorf("%s: Compare(%v, %v) = %d, want sign %d", c.why, c.a, c.b, got, c.want)
		}
		if back := Compare(c.b, c.a); cmpSign(back, 0) != -c.want {
			t.Errorf("%s: Compare(%v, %v) = %d, want sign %d", c.why, c.b, c.a, back, -c.want)
		}
	}
}

// refKey encodes a version so that comparing keys as bytes orders versions
// like the design's rule: the timestamp as big-endian with the sign bit
// flipped (so unsigned order is signed order); then 0 for a version that
// never expires, or 1 and its expiry (sign bit flipped); then 1 for a
// deletion, or 0 and the value for a live version. It is a second,
// independent statement of Compare.
func refKey(v Version) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(v.Timestamp)^(1<<63))
	if v.Expires == 0 {
		k = append(k, 0)
	} else {
		k = binary.BigEndian.AppendUint64(append(k, 1), uint64(v.Expires)^(1<<63))
	}
	if v.Deleted {
		return append(k, 1)
	}
	return append(append(k, 0), v.Value...)
}

// smallDomain returns versions with many ties: 3 timestamps, deleted or not,
// and values that differ by length, by sign bit, and nil against empty.
func smallDomain() []Version {
	values := [][]byte{nil, {}, {0}, {0, 0}, {1}, {0x7f}, {0x80}, {0xff}, []byte("a"), []byte("ab")}
	var vs []Version
	for _, ts := range []int64{-1, 0, 1} {
		for _, exp := range []int64{0, 100, 200} {
			for _, d := range []bool{false, true} {
				for _, v := range values {
					vs = append(vs, Version{Timestamp: ts, Deleted: d, Value: v, Expires: exp})
				}
			}
		}
	}
	return vs
}

// TestCompareOrderExhaustive checks, over every pair and triple of a small
// domain full of ties, that Compare agrees with refKey and is a total order:
// reflexive, antisymmetric and transitive.
func TestCompareOrderExhaustive(t *testing.T) {
	vs := smallDomain()
	for _, a := range vs {
		if Compare(a, a) != 0 {
			t.Fatalf("Compare(%v, itself) != 0", a)
		}
		for _, b := range vs {
			ab := cmpSign(Compare(a, b), 0)
			if want := bytes.Compare(refKey(a), refKey(b)); ab != want {
				t.Fatalf("Compare(%v, %v) = %d, reference says %d", a, b, ab, want)
			}
			if ba := cmpSign(Compare(b, a), 0); ba != -ab {
				t.Fatalf("not antisymmetric: Compare(%v, %v) = %d, Compare(%v, %v) = %d", a, b, ab, b, a, ba)
			}
			for _, c := range vs {
				bc, ac := Compare(b, c), Compare(a, c)
				if ab >= 0 && bc >= 0 && ac < 0 || ab > 0 && bc > 0 && ac <= 0 || ab == 0 && bc == 0 && ac != 0 {
					t.Fatalf("not transitive: %v, %v, %v: %d %d %d", a, b, c, ab, bc, ac)
				}
			}
		}
	}
}

func randVersion(r *rand.Rand) Version {
	v := Version{Deleted: r.IntN(4) == 0}
	switch r.IntN(3) {
	case 0: // never expires
	case 1:
		v.Expires = int64(1 + r.IntN(2)) // ties
	default:
		v.Expires = int64(r.Uint64())
	}
	switch r.IntN(3) {
	case 0:
		v.Timestamp = int64(r.IntN(3)) // ties
	case 1:
		v.Timestamp = int64(r.Uint64()) // anything, both signs
	default:
		v.Timestamp = []int64{math.MinInt64, math.MaxInt64, -1, 0}[r.IntN(4)]
	}
	if n := r.IntN(5); n > 0 {
		v.Value = make([]byte, n-1) // 1 in 5 nil, 1 in 5 empty
		for i := range v.Value {
			v.Value[i] = byte(r.IntN(3)) * 0x7f // 0x00, 0x7f, 0xfe: ties and sign bits
		}
	}
	return v
}

// TestCompareRandom checks the order properties over random triples drawn
// from a wide domain (extreme timestamps included).
func TestCompareRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50_000 {
		a, b, c := randVersion(r), randVersion(r), randVersion(r)
		ab, bc, ac := Compare(a, b), Compare(b, c), Compare(a, c)
		if cmpSign(ab, 0) != bytes.Compare(refKey(a), refKey(b)) {
			t.Fatalf("Compare(%v, %v) = %d disagrees with the reference", a, b, ab)
		}
		if cmpSign(Compare(b, a), 0) != -cmpSign(ab, 0) {
			t.Fatalf("not antisymmetric: %v, %v", a, b)
		}
		if ab >= 0 && bc >= 0 && ac < 0 || ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("not transitive: %v, %v, %v: %d %d %d", a, b, c, ab, bc, ac)
		}
	}
}

func TestNewest(t *testing.T) {
	for _, c := range []struct {
		vs   []Version
		want int
	}{
		{nil, -1},
		{[]Version{}, -1},
		{[]Version{live(1, "a")}, 0},
		{[]Version{live(1, "a"), live(3, "a"), live(2, "z")}, 1},
		{[]Version{live(3, "z"), del(3), live(3, "zz")}, 1},
		{[]Version{live(3, "a"), live(3, "b"), live(3, "b")}, 1},                         // first of equals
		{[]Version{del(3), Version{Timestamp: 3, Deleted: true, Value: []byte("x")}}, 0}, // equals
		{[]Version{{Timestamp: 1}, {Timestamp: 1, Value: []byte{}}}, 0},                  // nil == empty
	} {
		if got := Newest(c.vs); got != c.want {
			t.Errorf("Newest(%v) = %d, want %d", c.vs, got, c.want)
		}
	}
}

// TestNewestIsSortMax checks Newest against a stable sort: the winner equals
// the top of the sorted slice, and every version before it loses to it.
func TestNewestIsSortMax(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20_000 {
		vs := make([]Version, r.IntN(8))
		for i := range vs {
			vs[i] = randVersion(r)
		}
		got := Newest(vs)
		if len(vs) == 0 {
			if got != -1 {
				t.Fatalf("Newest(empty) = %d", got)
			}
			continue
		}
		sorted := slices.Clone(vs)
		slices.SortStableFunc(sorted, func(a, b Version) int { return Compare(b, a) }) // winners first
		if Compare(vs[got], sorted[0]) != 0 {
			t.Fatalf("Newest(%v) = %d (%v), but the sort puts %v first", vs, got, vs[got], sorted[0])
		}
		for i := range got {
			if Compare(vs[i], vs[got]) >= 0 {
				t.Fatalf("Newest(%v) = %d, but %d is at least as new", vs, got, i)
			}
		}
	}
}

func TestVersionString(t *testing.T) {
	for _, c := range []struct {
		v    Version
		want string
	}{
		{del(1700000000000000), "ts=1700000000000000 deleted"},
		{Version{Timestamp: 7, Deleted: true, Value: []byte("x")}, "ts=7 deleted"},
		{live(-3, "abc"), `ts=-3 value="abc"`},
		{live(1, "a\x00\xff"), `ts=1 value="a\x00\xff"`},
		{Version{Timestamp: 1}, "ts=1 value=nil"},
		{Version{Timestamp: 1, Value: []byte{}}, `ts=1 value=""`},
		{live(1, strings.Repeat("x", 40)), `ts=1 value="` + strings.Repeat("x", 32) + `"...(+8 bytes)`},
		{exp(del(2), 1700000000), "ts=2 deleted expires=1700000000"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("String() = %s, want %s", got, c.want)
		}
	}
}

// FuzzCompare checks antisymmetry and agreement with the reference encoding
// on arbitrary pairs of versions.
func FuzzCompare(f *testing.F) {
	f.Add(int64(1), false, []byte("a"), int64(0), int64(1), true, []byte(nil), int64(7))
	f.Add(int64(math.MinInt64), false, []byte{}, int64(5), int64(math.MaxInt64), false, []byte{0xff}, int64(0))
	f.Fuzz(func(t *testing.T, ta int64, da bool, va []byte, ea int64, tb int64, db bool, vb []byte, eb int64) {
		a := Version{Timestamp: ta, Deleted: da, Value: va, Expires: ea}
		b := Version{Timestamp: tb, Deleted: db, Value: vb, Expires: eb}
		ab := cmpSign(Compare(a, b), 0)
		if ab != bytes.Compare(refKey(a), refKey(b)) {
			t.Fatalf("Compare(%v, %v) = %d disagrees with the reference", a, b, ab)
		}
		if cmpSign(Compare(b, a), 0) != -ab || Compare(a, a) != 0 {
			t.Fatalf("not antisymmetric or not reflexive: %v, %v", a, b)
		}
		if n := Newest([]Version{a, b}); (ab >= 0) != (n == 0) {
			t.Fatalf("Newest(%v, %v) = %d, Compare = %d", a, b, n, ab)
		}
	})
}
