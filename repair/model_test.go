package repair

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
)

const testNS = "things"

// tokenFromPK makes a partition key's first 8 bytes its token, so tests can
// put rows anywhere on the ring, collide tokens, and use both ends.
func tokenFromPK(pk []byte) int64 {
	if len(pk) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(pk[:8]))
}

func pkAt(token int64, suffix string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(token))
	return append(b, suffix...)
}

var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestRegions(n int) []*MemRegion {
	rs := make([]*MemRegion, n)
	for i := range rs {
		rs[i] = NewMemRegion(testNS)
		rs[i].Token = tokenFromPK
		rs[i].Now = func() time.Time { return fixedNow }
	}
	return rs
}

// modelVersion is one region's version of a key in the model.
type modelVersion struct {
	present bool
	// v is the version, with its absolute expiry.
	v quorum.Version
	// ttl is the Cassandra TTL the region's cells were written with, in
	// seconds: the TTL left until v.Expires, or longer for a row a node
	// applied late.
	ttl int
}

// live reports whether readers see the version at fixedNow: present and
// not past its absolute expiry.
func (mv modelVersion) live() bool {
	return mv.present && schema.Visible(mv.v.Expires, fixedNow)
}

type modelKey struct {
	pk, ck   []byte
	versions []modelVersion // per region
}

// winner is the model's winning version of the key by quorum.Compare,
// expired versions included (an expired winner is not replaced by an
// older version).
func (k *modelKey) winner() (quorum.Version, bool) {
	var vs []quorum.Version
	for _, mv := range k.versions {
		if mv.present {
			vs = append(vs, mv.v)
		}
	}
	if len(vs) == 0 {
		return quorum.Version{}, false
	}
	return vs[quorum.Newest(vs)], true
}

// winnerLive reports whether the key has a winner and it has not expired:
// then repair writes it everywhere.
func (k *modelKey) winnerLive() bool {
	w, ok := k.winner()
	return ok && schema.Visible(w.Expires, fixedNow)
}

// differs reports whether the regions do not all show the same state: an
// expired version shows as absent.
func (k *modelKey) differs() bool {
	first := k.versions[0]
	for _, mv := range k.versions[1:] {
		if mv.live() != first.live() {
			return true
		}
		if mv.live() && quorum.Compare(mv.v, first.v) != 0 {
			return true
		}
	}
	return false
}

// skipped reports whether repair must leave a differing key alone: its
// winner has expired.
func (k *modelKey) skipped() bool {
	_, ok := k.winner()
	return ok && k.differs() && !k.winnerLive()
}

// interestingTokens are ring positions the generator favours: both ends of
// the ring, segment boundaries and a shared token (collisions).
func interestingTokens(segs []TokenRange) []int64 {
	ts := []int64{MinToken, MinToken + 1, MaxToken, MaxToken - 1, 0, 42, 42}
	for _, s := range segs {
		ts = append(ts, s.End, s.End-1)
		if s.End < MaxToken {
			ts = append(ts, s.End+1)
		}
	}
	return ts
}

// genModel fills regions with random divergent contents: missing rows, older
// versions, deletion markers, ties on timestamp (deletion vs value, value vs
// value) and on expiry, expiring and non-expiring versions of one
// timestamp, and rows whose absolute expiry has passed while a node that
// applied them late still holds their cells. The clock is frozen at
// fixedNow.
func genModel(rng *rand.Rand, regions []*MemRegion, keys int, segs []TokenRange) []*modelKey {
	toks := interestingTokens(segs)
	values := [][]byte{nil, []byte(""), []byte("a"), []byte("b"), []byte("zz"), []byte("zz\x00")}
	now := fixedNow.Unix()
	// Few expiries, so that versions tie on them: never, two in the
	// future, and one passed.
	expiries := []int64{0, 0, now + 100, now + 200, now - 5}
	var out []*modelKey
	seen := map[string]bool{}
	for len(out) < keys {
		var tok int64
		if rng.IntN(3) == 0 {
			tok = toks[rng.IntN(len(toks))]
		} else {
			tok = int64(rng.Uint64())
		}
		pk := pkAt(tok, fmt.Sprintf("p%d", rng.IntN(4)))
		ck := []byte(fmt.Sprintf("c%d", rng.IntN(3)))
		if rng.IntN(10) == 0 {
			ck = []byte{}
		}
		id := string(schema.PartitionKeyBytes(pk, ck))
		if seen[id] {
			continue
		}
		seen[id] = true
		k := &modelKey{pk: pk, ck: ck, versions: make([]modelVersion, len(regions))}
		base := int64(1_000_000 + rng.IntN(3))
		for i, reg := range regions {
			if rng.IntN(5) == 0 {
				continue // missing here
			}
			v := quorum.Version{Timestamp: base + int64(rng.IntN(3))}
			if rng.IntN(4) == 0 {
				v.Deleted = true
			} else {
				v.Value = values[rng.IntN(len(values))]
			}
			if rng.IntN(3) == 0 {
				v.Expires = expiries[rng.IntN(len(expiries))]
			}
			ttl, _ := schema.TTLUntil(v.Expires, fixedNow)
			if v.Expires != 0 && v.Expires <= now {
				// Expired, but a node applied it late: its cells are
				// still there for 30 s (less than any live expiry, so
				// they never outlive a live version of the same
				// timestamp).
				ttl = 30
			}
			k.versions[i] = modelVersion{present: true, v: v, ttl: ttl}
			reg.Insert(testNS, pk, ck, schema.RowCells(v.Deleted, v.Value, v.Expires), v.Timestamp, ttl)
		}
		out = append(out, k)
	}
	return out
}

// checkConverged asserts that every region holds the model's winner of
// every key whose winner is live — written with a TTL that ends at its
// expiry, never later — that keys whose winner has expired were left as
// they were, and that a fresh digest comparison finds nothing left to
// repair but those.
func checkConverged(t *testing.T, regions []*MemRegion, keys []*modelKey) {
	t.Helper()
	left := map[string]bool{}
	for _, k := range keys {
		want, ok := k.winner()
		if ok && !k.winnerLive() {
			if k.differs() {
				left[string(schema.PartitionKeyBytes(k.pk, k.ck))] = true
			}
			for i, reg := range regions {
				got, _, present := reg.Get(testNS, k.pk, k.ck)
				mv := k.versions[i]
				if present != mv.present || (present && quorum.Compare(versionOfRow(got), mv.v) != 0) {
					t.Errorf("region %d: %x/%x = %v %s; its winner %s expired, so it must keep %v", i, k.pk, k.ck, present, versionOfRow(got), want, mv)
				}
			}
			continue
		}
		for i, reg := range regions {
			got, _, present := reg.Get(testNS, k.pk, k.ck)
			if !ok {
				if present {
					t.Errorf("region %d has %x/%x which no region had", i, k.pk, k.ck)
				}
				continue
			}
			if !present {
				t.Errorf("region %d lacks %x/%x, want %s", i, k.pk, k.ck, want)
				continue
			}
			gv := versionOfRow(got)
			if quorum.Compare(gv, want) != 0 {
				t.Errorf("region %d has %x/%x = %s, want %s (versions %v)", i, k.pk, k.ck, gv, want, k.versions)
			}
			if had := k.versions[i]; want.Expires != 0 && !(had.present && quorum.Compare(had.v, want) == 0) &&
				fixedNow.Unix()+int64(got.TTL) > want.Expires {
				t.Errorf("region %d: copy of %x/%x lives %ds, past its expiry %d (now %d)", i, k.pk, k.ck, got.TTL, want.Expires, fixedNow.Unix())
			}
		}
	}
	for _, seg := range Segments(7) {
		streams := make([]RowStream, len(regions))
		for i, reg := range regions {
			streams[i] = reg.ScanDigests(context.Background(), testNS, seg, 10)
		}
		_, err := Diff(streams, func(d *Divergence) error {
			if !left[string(schema.PartitionKeyBytes(d.PK, d.CK))] {
				t.Errorf("still divergent after repair: %s", d)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// versionOfRow is the version a point read shows.
func versionOfRow(v RowValue) quorum.Version {
	return quorum.Version{Timestamp: v.Timestamp, Deleted: v.Deleted, Value: v.Value, Expires: v.Expires}
}

// applyPlans is a minimal executor of the pure core's plans, for the model
// test: it reads values and writes the winners straight into the regions.
func applyPlans(t *testing.T, regions []*MemRegion, seg TokenRange) (st DiffStats, written, skipped int64) {
	t.Helper()
	ctx := context.Background()
	streams := make([]RowStream, len(regions))
	for i, reg := range regions {
		streams[i] = reg.ScanDigests(ctx, testNS, seg, 10)
	}
	st, err := Diff(streams, func(d *Divergence) error {
		p := PlanRow(d)
		var w Write
		switch p.Action {
		case 0:
			if !p.Winner.Expired {
				return fmt.Errorf("no plan for %s", d)
			}
			skipped++
			return nil
		case ActionMark:
			w = Write{PK: d.PK, CK: d.CK, Timestamp: p.Winner.Timestamp, Expires: p.Winner.Expires, Deleted: true, Digest: p.Winner.Digest, Targets: p.Targets}
		case ActionCopy:
			v, ok, err := regions[p.Source].ReadRow(ctx, testNS, d.PK, d.CK)
			if err != nil || !ok || v.Timestamp != p.Winner.Timestamp || v.Expires != p.Winner.Expires {
				return fmt.Errorf("source %d of %s: %v %v %+v", p.Source, d, err, ok, v)
			}
			w = Write{PK: d.PK, CK: d.CK, Timestamp: v.Timestamp, Expires: v.Expires, Value: v.Value, Digest: p.Winner.Digest, Targets: p.Targets}
		case ActionTie:
			vals := make([][]byte, len(p.Tied))
			for k, r := range p.Tied {
				v, _, err := regions[r].ReadRow(ctx, testNS, d.PK, d.CK)
				if err != nil {
					return err
				}
				vals[k] = v.Value
			}
			var err error
			if w, err = ResolveTie(d, p, vals); err != nil {
				return err
			}
		}
		if len(w.Targets) == 0 {
			return fmt.Errorf("plan %s for %s has no targets", p.Action, d)
		}
		for _, r := range w.Targets {
			if err := regions[r].WriteRow(ctx, testNS, &w); err != nil {
				return err
			}
		}
		written++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, written, skipped
}

func TestDiffPlanConvergesToModel(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			nReg := 2 + rng.IntN(4)
			nSeg := 1 + rng.IntN(9)
			segs := Segments(nSeg)
			regions := newTestRegions(nReg)
			keys := genModel(rng, regions, rng.IntN(300), segs)
			var wantDiff, wantRows, wantSkipped int64
			for _, k := range keys {
				if k.differs() {
					wantDiff++
				}
				if k.skipped() {
					wantSkipped++
				}
				if _, ok := k.winner(); ok {
					wantRows++
				}
			}
			var gotDiff, gotWritten, gotSkipped, rows int64
			for _, s := range segs {
				st, w, sk := applyPlans(t, regions, s)
				gotDiff += st.Differing
				gotWritten += w
				gotSkipped += sk
				rows += st.Rows
			}
			if rows != wantRows {
				t.Errorf("merged %d rows, model has %d keys", rows, wantRows)
			}
			if gotDiff != wantDiff {
				t.Errorf("differing = %d, model says %d", gotDiff, wantDiff)
			}
			// Row-level precision: every differing row is written, but
			// those whose winner has expired.
			if gotSkipped != wantSkipped || gotWritten != gotDiff-gotSkipped {
				t.Errorf("written = %d, skipped = %d (model %d), differing = %d", gotWritten, gotSkipped, wantSkipped, gotDiff)
			}
			checkConverged(t, regions, keys)
		})
	}
}

func TestDiffDetectsOutOfOrderStream(t *testing.T) {
	rows := []DigestRow{{Token: 5, PK: []byte("b")}, {Token: 5, PK: []byte("a")}}
	_, err := Diff([]RowStream{NewSliceStream(rows, nil), NewSliceStream(nil, nil)}, func(*Divergence) error { return nil })
	if err == nil || !errorsIs(err, ErrOutOfOrder) {
		t.Fatalf("Diff = %v, want ErrOutOfOrder", err)
	}
}

func TestDiffStreamErrorStops(t *testing.T) {
	boom := fmt.Errorf("boom")
	rows := []DigestRow{{Token: 1, PK: []byte("a"), Timestamp: 1}}
	calls := 0
	_, err := Diff([]RowStream{NewSliceStream(rows, boom), NewSliceStream(rows, nil)}, func(*Divergence) error { calls++; return nil })
	if !errorsIs(err, boom) {
		t.Fatalf("Diff = %v, want boom", err)
	}
	if calls != 0 {
		t.Fatalf("identical row reported as divergent")
	}
}

func TestDiffEmptyStreams(t *testing.T) {
	st, err := Diff([]RowStream{NewSliceStream(nil, nil), NewSliceStream(nil, nil), NewSliceStream(nil, nil)},
		func(d *Divergence) error { t.Errorf("unexpected %s", d); return nil })
	if err != nil || st.Rows != 0 || st.Differing != 0 {
		t.Fatalf("Diff of empty streams = %+v, %v", st, err)
	}
}

func TestPlanRow(t *testing.T) {
	live := func(ts, dig int64) Observed { return Observed{Present: true, Timestamp: ts, Digest: dig} }
	del := func(ts int64) Observed { return Observed{Present: true, Timestamp: ts, Deleted: true, Digest: 7} }
	withTTL := func(o Observed, ttl int32) Observed { o.TTL = ttl; return o }
	exp := func(o Observed, expires int64) Observed { o.Expires = expires; return o }
	expired := func(o Observed) Observed { o.Expired = true; return o }
	absent := Observed{}
	tests := []struct {
		name    string
		regions []Observed
		action  Action
		source  int
		targets []int
		tied    []int
	}{
		{"missing in one", []Observed{live(5, 1), absent, live(5, 1)}, ActionCopy, 0, []int{1}, nil},
		{"older in one", []Observed{live(4, 2), live(5, 1), live(5, 1)}, ActionCopy, 1, []int{0}, nil},
		{"newer only in last", []Observed{live(4, 2), live(4, 2), live(9, 3)}, ActionCopy, 2, []int{0, 1}, nil},
		{"deletion newer", []Observed{live(5, 1), del(6), live(5, 1)}, ActionMark, 1, []int{0, 2}, nil},
		{"deletion older loses", []Observed{live(7, 1), del(6), absent}, ActionCopy, 0, []int{1, 2}, nil},
		// A marker expires (its retention) and a value here does not: at
		// one timestamp the expiring version wins.
		{"expiring deletion wins tie", []Observed{live(6, 1), exp(del(6), 900)}, ActionMark, 1, []int{0}, nil},
		{"deletion missing", []Observed{del(6), absent}, ActionMark, 0, []int{1}, nil},
		// Changed with row format 2: a version includes its digest, so
		// markers whose digest cells differ (a marker reconciled with a
		// value of its timestamp) are made to hold the greatest one.
		{"markers with different digest cells converge on the greatest", []Observed{del(6), {Present: true, Timestamp: 6, Deleted: true, Digest: 9}, absent}, ActionMark, 1, []int{0, 2}, nil},
		{"value tie needs values", []Observed{live(6, 1), live(6, 2), live(5, 3)}, ActionTie, -1, nil, []int{0, 1}},
		// A marker and a value with one timestamp and expiry: only other
		// writers make that; decided like a tie (the cell-wise join).
		{"marker beside a value is a tie", []Observed{exp(live(6, 1), 900), exp(del(6), 900), absent}, ActionTie, -1, nil, []int{0}},
		{"value tie on another expiry is no tie", []Observed{exp(live(6, 1), 900), exp(live(6, 2), 800)}, ActionCopy, 0, []int{1}, nil},
		{"later expiry wins", []Observed{exp(live(6, 1), 100), exp(live(6, 1), 200), absent}, ActionCopy, 1, []int{0, 2}, nil},
		{"expiring beats never expiring", []Observed{live(6, 1), exp(live(6, 2), 100)}, ActionCopy, 1, []int{0}, nil},
		{"later timestamp beats expiry", []Observed{exp(live(6, 1), 100), live(7, 2)}, ActionCopy, 1, []int{0}, nil},
		{"longer-lived marker beats value", []Observed{exp(live(6, 1), 100), exp(del(6), 200)}, ActionMark, 1, []int{0}, nil},
		{"longer-lived value beats marker", []Observed{exp(live(6, 1), 300), exp(del(6), 200)}, ActionCopy, 0, []int{1}, nil},
		{"longest TTL is the source", []Observed{withTTL(live(6, 1), 10), withTTL(live(6, 1), 50), absent}, ActionCopy, 1, []int{2}, nil},
		{"no TTL outlives TTL", []Observed{withTTL(live(6, 1), 10), live(6, 1), absent}, ActionCopy, 1, []int{2}, nil},
		// Finding 9: an expired row is logically absent.
		{"expired winner: nothing is copied", []Observed{expired(exp(live(9, 1), 100)), live(5, 2), absent}, 0, -1, nil, nil},
		{"expired marker winner: nothing either", []Observed{expired(exp(del(9), 100)), live(5, 2)}, 0, -1, nil, nil},
		{"expired older version is overwritten", []Observed{expired(exp(live(5, 1), 100)), live(9, 2)}, ActionCopy, 1, []int{0}, nil},
		{"expired loser of a longer expiry", []Observed{expired(exp(live(6, 1), 100)), exp(live(6, 1), 200)}, ActionCopy, 1, []int{0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanRow(&Divergence{Regions: tc.regions})
			if p.Action != tc.action || p.Source != tc.source || fmt.Sprint(p.Targets) != fmt.Sprint(tc.targets) || fmt.Sprint(p.Tied) != fmt.Sprint(tc.tied) {
				t.Errorf("PlanRow = %s source=%d targets=%v tied=%v; want %s source=%d targets=%v tied=%v",
					p.Action, p.Source, p.Targets, p.Tied, tc.action, tc.source, tc.targets, tc.tied)
			}
		})
	}
}

func TestResolveTieConvergesDigestCells(t *testing.T) {
	// Region 0 holds "x" whose digest cell is small, region 1 "y" with a
	// greater digest cell. Cassandra keeps the greater value ("y") and,
	// cell by cell, the greater digest: both must end up with the same cells.
	d := &Divergence{PK: []byte("k"), CK: []byte("c"), Regions: []Observed{
		{Present: true, Timestamp: 9, Digest: 1},
		{Present: true, Timestamp: 9, Digest: -1}, // 0xff.. is the greater cell
		{},
	}}
	p := PlanRow(d)
	w, err := ResolveTie(d, p, [][]byte{[]byte("y"), []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if string(w.Value) != "y" || w.Digest != -1 || fmt.Sprint(w.Targets) != "[0 1 2]" {
		t.Fatalf("ResolveTie = value %q digest %d targets %v", w.Value, w.Digest, w.Targets)
	}
	if _, err := ResolveTie(d, p, [][]byte{[]byte("y")}); err == nil {
		t.Fatal("ResolveTie accepted too few values")
	}
}

func TestPairIndexIsDense(t *testing.T) {
	for n := 2; n <= 7; n++ {
		seen := map[int]bool{}
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				k := PairIndex(i, j, n)
				if k < 0 || k >= n*(n-1)/2 || seen[k] {
					t.Fatalf("PairIndex(%d,%d,%d) = %d (dup or out of range)", i, j, n, k)
				}
				seen[k] = true
			}
		}
	}
}

func TestSegmentsCoverRing(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	counts := []int{1, 2, 3, 7, 64, 1000, 4096, MaxSegments, MaxSegments + 5, 0, -3}
	for k := 0; k < 20; k++ {
		counts = append(counts, 1+rng.IntN(100000))
	}
	for _, n := range counts {
		segs := Segments(n)
		want := min(max(n, 1), MaxSegments)
		if len(segs) != want {
			t.Fatalf("Segments(%d) has %d segments, want %d", n, len(segs), want)
		}
		if segs[0].Start != MinToken || segs[len(segs)-1].End != MaxToken || !segs[0].Contains(MinToken) {
			t.Fatalf("Segments(%d) does not span the ring: %s .. %s", n, segs[0], segs[len(segs)-1])
		}
		for i, s := range segs {
			if s.Index != i || s.Start >= s.End {
				t.Fatalf("Segments(%d)[%d] = %s", n, i, s)
			}
			if i > 0 && segs[i-1].End != s.Start {
				t.Fatalf("Segments(%d): gap or overlap between %s and %s", n, segs[i-1], s)
			}
			if i > 0 && s.Contains(s.Start) {
				t.Fatalf("Segments(%d)[%d] contains its exclusive start", n, i)
			}
		}
		// Every probe token is in exactly one segment.
		probes := []int64{MinToken, MinToken + 1, -1, 0, 1, MaxToken - 1, MaxToken}
		for k := 0; k < 200; k++ {
			probes = append(probes, int64(rng.Uint64()))
		}
		for _, s := range segs[:min(len(segs), 50)] {
			probes = append(probes, s.Start, s.End, s.End+1)
		}
		for _, tok := range probes {
			hits := 0
			if len(segs) <= 5000 {
				for _, s := range segs {
					if s.Contains(tok) {
						hits++
					}
				}
			} else {
				// binary search for the first segment with End >= tok, then check neighbours
				lo, hi := 0, len(segs)-1
				for lo < hi {
					mid := (lo + hi) / 2
					if segs[mid].End < tok {
						lo = mid + 1
					} else {
						hi = mid
					}
				}
				for j := max(lo-1, 0); j <= min(lo+1, len(segs)-1); j++ {
					if segs[j].Contains(tok) {
						hits++
					}
				}
			}
			if hits != 1 {
				t.Fatalf("Segments(%d): token %d in %d segments", n, tok, hits)
			}
		}
		// Widths are even to within one token.
		if n >= 2 && n <= 5000 {
			w0 := uint64(segs[1].End - segs[1].Start)
			for _, s := range segs[1 : len(segs)-1] {
				if d := int64(uint64(s.End-s.Start) - w0); d > 1 || d < -1 {
					t.Fatalf("Segments(%d): uneven widths %d vs %d", n, uint64(s.End-s.Start), w0)
				}
			}
		}
	}
}

func TestSegmentCount(t *testing.T) {
	tests := []struct {
		est, per int64
		fb, want int
	}{
		{0, 100, 16, 16},
		{1000, 0, 16, 16},
		{1000, 100, 16, 10},
		{1001, 100, 16, 11},
		{5, 100, 16, 1},
		{math.MaxInt64, 1, 16, MaxSegments},
		{-1, 10, 0, 1},
	}
	for _, tc := range tests {
		if got := SegmentCount(tc.est, tc.per, tc.fb); got != tc.want {
			t.Errorf("SegmentCount(%d, %d, %d) = %d, want %d", tc.est, tc.per, tc.fb, got, tc.want)
		}
	}
}

func TestTokenRangeString(t *testing.T) {
	s := Segments(2)
	if got := s[0].String(); got != fmt.Sprintf("#0 [%d, %d]", MinToken, s[0].End) {
		t.Errorf("first = %q", got)
	}
	if got := s[1].String(); got != fmt.Sprintf("#1 (%d, %d]", s[1].Start, MaxToken) {
		t.Errorf("second = %q", got)
	}
}
