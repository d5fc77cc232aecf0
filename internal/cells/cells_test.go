package cells

import (
	"bytes"
	"testing"
)

func digestForTest(deleted bool, value []byte) int64 {
	if deleted {
		return -1
	}
	var h int64 = 7
	for _, b := range value {
		h = h*31 + int64(b)
	}
	return h
}

// TestTieTable applies both writes of every tie, in both orders, to one
// modelled node (one clock reading, as in one batch) and checks the row it
// keeps: deleted and value as the table says, the same whichever write came
// first.
func TestTieTable(t *testing.T) {
	ties, err := LoadTies("testdata/ties.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(ties) < 10 {
		t.Fatalf("only %d ties read", len(ties))
	}
	const now = 1_800_000_000
	for _, tie := range ties {
		t.Run(tie.Name, func(t *testing.T) {
			expA, expB := int64(0), int64(0)
			if tie.A.TTL > 0 {
				expA = now + tie.A.TTL
			}
			if tie.B.TTL > 0 {
				expB = now + tie.B.TTL
			}
			var ab, ba Row
			ab.Apply(tie.A.Columns(digestForTest, expA), tie.A.Timestamp, tie.A.TTL, now)
			ab.Apply(tie.B.Columns(digestForTest, expB), tie.B.Timestamp, tie.B.TTL, now)
			ba.Apply(tie.B.Columns(digestForTest, expB), tie.B.Timestamp, tie.B.TTL, now)
			ba.Apply(tie.A.Columns(digestForTest, expA), tie.A.Timestamp, tie.A.TTL, now)
			if !equalRows(ab, ba) {
				t.Fatalf("order matters: a then b %+v, b then a %+v", ab, ba)
			}
			gotDel, gotVal := AsBool(ab.Deleted), ab.Value.Value
			if kept, ok := tie.Kept(); ok {
				if gotDel != kept.Deleted {
					t.Fatalf("deleted = %v, want %v (write %s)", gotDel, kept.Deleted, tie.Keeps)
				}
				if !kept.Deleted && !bytes.Equal(gotVal, kept.Value) {
					t.Fatalf("value = %q, want %q (write %s)", gotVal, kept.Value, tie.Keeps)
				}
				return
			}
			if gotDel != tie.MixedDeleted || (gotVal == nil) != (tie.MixedValue == nil) || !bytes.Equal(gotVal, tie.MixedValue) {
				t.Fatalf("row deleted=%v value=%q, want the mix deleted=%v value=%q", gotDel, gotVal, tie.MixedDeleted, tie.MixedValue)
			}
		})
	}
}

func equalRows(a, b Row) bool {
	eq := func(x, y Cell) bool {
		return x.Timestamp == y.Timestamp && x.TTL == y.TTL && x.LocalDeletion == y.LocalDeletion &&
			bytes.Equal(x.Value, y.Value) && (x.Value == nil) == (y.Value == nil)
	}
	return a.Present == b.Present && eq(a.Value, b.Value) && eq(a.Deleted, b.Deleted) && eq(a.Digest, b.Digest) && eq(a.Expires, b.Expires)
}

// TestReconcileRules checks each rule of Cells.resolveRegular on single
// cells, both argument orders.
func TestReconcileRules(t *testing.T) {
	const now = 1000
	live := func(ts int64, v string) Cell { return Write(ts, []byte(v), 0, now) }
	expiring := func(ts int64, v string, ttl int64) Cell { return Write(ts, []byte(v), ttl, now) }
	tomb := func(ts int64) Cell { return Write(ts, nil, 0, now) }
	for _, c := range []struct {
		name        string
		a, b, wants Cell
	}{
		{"higher timestamp", live(2, "a"), expiring(1, "z", 10), live(2, "a")},
		{"expiring beats live", expiring(1, "a", 10), live(1, "z"), expiring(1, "a", 10)},
		{"tombstone beats live", tomb(1), live(1, "z"), tomb(1)},
		{"tombstone beats expiring", tomb(1), expiring(1, "z", 99999), tomb(1)},
		{"later expiry", expiring(1, "a", 20), expiring(1, "z", 10), expiring(1, "a", 20)},
		{"same expiry, smaller ttl", Cell{Timestamp: 1, Value: []byte("a"), TTL: 5, LocalDeletion: 2000}, Cell{Timestamp: 1, Value: []byte("z"), TTL: 9, LocalDeletion: 2000}, Cell{Timestamp: 1, Value: []byte("a"), TTL: 5, LocalDeletion: 2000}},
		{"greater value", live(1, "b"), live(1, "a"), live(1, "b")},
		{"unsigned bytes", live(1, "\x80"), live(1, "\x7f"), live(1, "\x80")},
		{"empty is a value", live(1, ""), tomb(1), tomb(1)},
	} {
		for _, order := range [][2]Cell{{c.a, c.b}, {c.b, c.a}} {
			got := Reconcile(order[0], order[1])
			if got.Timestamp != c.wants.Timestamp || !bytes.Equal(got.Value, c.wants.Value) || got.TTL != c.wants.TTL || got.Tombstone() != c.wants.Tombstone() {
				t.Errorf("%s: Reconcile(%+v, %+v) = %+v, want %+v", c.name, order[0], order[1], got, c.wants)
			}
		}
	}
}

func TestVisible(t *testing.T) {
	var r Row
	if r.Visible(0) {
		t.Fatal("an absent row is visible")
	}
	r.Apply(Columns{Value: []byte("v"), Deleted: Bool(false), Digest: Bigint(1), Expires: Bigint(1010)}, 5, 10, 1000)
	if !r.Visible(1009) || r.Visible(1010) {
		t.Fatal("a row with TTL 10 written at 1000 must be visible until 1010, not at it")
	}
	if AsBigint(r.Expires) != 1010 || AsBool(r.Deleted) {
		t.Fatal("encodings do not round-trip")
	}
}

// An UPDATE of fp alone touches no other cell, and loses to a later write
// of the row as a cell does.
func TestUpdateFingerprint(t *testing.T) {
	var r Row
	r.Apply(Columns{Value: []byte("v"), Deleted: Bool(false), Digest: Bigint(1), Expires: Bigint(0)}, 5, 0, 1000)
	before := r
	r.UpdateFingerprint(Bigint(77), 5, 0, 1001)
	if AsBigint(r.Fingerprint) != 77 || r.Fingerprint.Timestamp != 5 {
		t.Fatalf("fp cell = %+v, want 77 at timestamp 5", r.Fingerprint)
	}
	same := func(a, b Cell) bool {
		return a.Timestamp == b.Timestamp && bytes.Equal(a.Value, b.Value) && a.TTL == b.TTL && a.LocalDeletion == b.LocalDeletion
	}
	if !same(r.Value, before.Value) || !same(r.Deleted, before.Deleted) || !same(r.Digest, before.Digest) || !same(r.Expires, before.Expires) {
		t.Fatalf("the update changed other cells: %+v, was %+v", r, before)
	}
	r.Apply(Columns{Value: []byte("w"), Deleted: Bool(false), Digest: Bigint(2), Expires: Bigint(0), Fingerprint: Bigint(88)}, 9, 0, 1002)
	r.UpdateFingerprint(Bigint(77), 5, 0, 1003)
	if AsBigint(r.Fingerprint) != 88 {
		t.Fatalf("an older fp update replaced a newer write's fp: %d", AsBigint(r.Fingerprint))
	}
	var absent Row
	absent.UpdateFingerprint(Bigint(1), 3, 0, 1000)
	if !absent.Present || absent.Digest.Live(1000) || !absent.Fingerprint.Live(1000) {
		t.Fatalf("an update of an absent row = %+v, want the fp cell alone", absent)
	}
}
