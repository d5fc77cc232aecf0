// Package cells is a model of how Apache Cassandra 5.0 stores and
// reconciles the cells of a Tidemark row, for the in-memory regions of
// package store/driver and package repair and for tests that check Tidemark
// against Cassandra. It is the one place that knows Cassandra's per-cell
// rules (Cells.resolveRegular in 5.0.8):
//
//  1. the higher timestamp wins;
//  2. at equal timestamps an expiring cell or a tombstone beats a live cell;
//  3. of an expiring cell and a tombstone, the tombstone wins;
//  4. of two expiring cells (or two tombstones), the later local deletion
//     time wins;
//  5. of two expiring cells with the same local deletion time, the one with
//     the smaller TTL (written later) wins;
//  6. then the greater value, compared as unsigned bytes.
//
// A Tidemark row has five regular cells — value, deleted, digest, expires
// and fp (the fingerprint) — each reconciled on its own. Tidemark writes every cell of a row
// with one timestamp and one TTL, and never binds null for a cell (a
// deletion marker's value is an empty blob), so that the cells of a row
// always reconcile alike and a row is always one version; a null bound by
// another writer (or by Tidemark before format 2 of the row) is a cell
// tombstone, and can leave a row whose cells come from two versions. The
// model keeps that too, so tests can show exactly what Cassandra keeps.
package cells

import (
	"bytes"
	"encoding/binary"
	"math"
)

// NoDeletion is the local deletion time of a live cell.
const NoDeletion = math.MaxInt64

// Cell is one cell as a Cassandra node stores it.
type Cell struct {
	// Timestamp is the write timestamp, µs.
	Timestamp int64
	// Value is the cell's value; nil for a tombstone.
	Value []byte
	// TTL is the cell's time to live in seconds; 0 for a live cell or a
	// tombstone.
	TTL int64
	// LocalDeletion is, in seconds since the epoch, when an expiring cell
	// expires (the node's time when it applied the write, plus TTL), when a
	// tombstone was written, or NoDeletion for a live cell.
	LocalDeletion int64
}

// Tombstone reports whether c is a tombstone (a null that was written).
func (c Cell) Tombstone() bool { return c.Value == nil && c.LocalDeletion != NoDeletion }

// Expiring reports whether c is an expiring cell.
func (c Cell) Expiring() bool { return c.TTL > 0 }

// Live reports whether c is readable at now (seconds): not a tombstone and
// not expired.
func (c Cell) Live(now int64) bool {
	return !c.Tombstone() && (c.LocalDeletion == NoDeletion || now < c.LocalDeletion)
}

// Write makes the cell a write of value with timestamp ts and ttl seconds
// (0 = none) creates on a node whose clock reads now (seconds). A nil value
// is a tombstone, which ignores the TTL.
func Write(ts int64, value []byte, ttl, now int64) Cell {
	switch {
	case value == nil:
		return Cell{Timestamp: ts, LocalDeletion: now}
	case ttl > 0:
		return Cell{Timestamp: ts, Value: value, TTL: ttl, LocalDeletion: now + ttl}
	default:
		return Cell{Timestamp: ts, Value: value, LocalDeletion: NoDeletion}
	}
}

// Reconcile returns the cell a node keeps of a and b, as Cassandra 5.0's
// Cells.resolveRegular decides (see the package documentation). It is
// commutative except that, of two identical cells, it returns a.
func Reconcile(a, b Cell) Cell {
	if a.Timestamp != b.Timestamp {
		return pick(a.Timestamp > b.Timestamp, a, b)
	}
	ad, bd := a.LocalDeletion != NoDeletion, b.LocalDeletion != NoDeletion
	if ad || bd {
		if ad != bd {
			return pick(ad, a, b)
		}
		at, bt := !a.Expiring(), !b.Expiring()
		if at != bt {
			return pick(at, a, b)
		}
		if a.LocalDeletion != b.LocalDeletion {
			return pick(a.LocalDeletion > b.LocalDeletion, a, b)
		}
		if !at && a.TTL != b.TTL {
			return pick(a.TTL < b.TTL, a, b)
		}
	}
	return pick(bytes.Compare(a.Value, b.Value) >= 0, a, b)
}

func pick(first bool, a, b Cell) Cell {
	if first {
		return a
	}
	return b
}

// Row is the regular cells of one Tidemark row on one node. A zero Cell
// (Timestamp 0, no value, LocalDeletion 0) stands for a column never
// written; Present tells a row that exists at all.
type Row struct {
	Present                         bool
	Value, Deleted, Digest, Expires Cell
	// Fingerprint is the fp cell; a zero Cell when no write set it (rows
	// written before the column existed).
	Fingerprint Cell
	// Version is the ver cell (the row's timestamp as a value); a zero
	// Cell when no write set it.
	Version Cell
}

// Columns are the values one write binds for a row's regular columns; a nil
// field binds null, except Fingerprint and Version: nil there means the
// write does not name the column at all (a writer from before it
// existed), so the row's fp or ver cell is left as it was.
type Columns struct {
	Value, Deleted, Digest, Expires []byte
	Fingerprint, Version            []byte
}

// Apply reconciles a write of cols with timestamp ts and ttl (seconds),
// applied by a node whose clock reads now (seconds), into r.
func (r *Row) Apply(cols Columns, ts, ttl, now int64) {
	w := Row{Present: true,
		Value:   Write(ts, cols.Value, ttl, now),
		Deleted: Write(ts, cols.Deleted, ttl, now),
		Digest:  Write(ts, cols.Digest, ttl, now),
		Expires: Write(ts, cols.Expires, ttl, now),
	}
	if cols.Fingerprint != nil {
		w.Fingerprint = Write(ts, cols.Fingerprint, ttl, now)
	}
	if cols.Version != nil {
		w.Version = Write(ts, cols.Version, ttl, now)
	}
	if !r.Present {
		*r = w
		return
	}
	if cols.Fingerprint != nil {
		r.Fingerprint = Reconcile(r.Fingerprint, w.Fingerprint)
	}
	if cols.Version != nil {
		r.Version = Reconcile(r.Version, w.Version)
	}
	r.Value = Reconcile(r.Value, w.Value)
	r.Deleted = Reconcile(r.Deleted, w.Deleted)
	r.Digest = Reconcile(r.Digest, w.Digest)
	r.Expires = Reconcile(r.Expires, w.Expires)
}

// UpdateFingerprint reconciles an UPDATE of the fp column alone (as
// schema.UpdateFingerprint writes it) into r: no other cell is touched,
// and a row that did not exist holds the fp cell only.
func (r *Row) UpdateFingerprint(fp []byte, ts, ttl, now int64) {
	w := Write(ts, fp, ttl, now)
	if !r.Present {
		*r = Row{Present: true, Fingerprint: w}
		return
	}
	r.Fingerprint = Reconcile(r.Fingerprint, w)
}

// Visible reports whether a SELECT at now (seconds) returns the row: some
// regular cell is live. (Tidemark's rows always carry live deleted and
// digest cells while they exist.)
func (r *Row) Visible(now int64) bool {
	return r.Present && (r.Value.Live(now) || r.Deleted.Live(now) || r.Digest.Live(now) || r.Expires.Live(now) || r.Fingerprint.Live(now) || r.Version.Live(now))
}

// Bool encodes a CQL boolean as Cassandra stores it.
func Bool(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// Bigint encodes a CQL bigint as Cassandra stores it (8 bytes, big-endian
// two's complement: compared as unsigned bytes, negative numbers are the
// greater).
func Bigint(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// AsBool reads a boolean cell (false for a tombstone or an empty value).
func AsBool(c Cell) bool { return len(c.Value) == 1 && c.Value[0] != 0 }

// AsBigint reads a bigint cell (0 for a tombstone or a malformed value).
func AsBigint(c Cell) int64 {
	if len(c.Value) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(c.Value))
}
