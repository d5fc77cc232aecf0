package integration

// The tie table (internal/cells/testdata/ties.txt) against a real Cassandra
// 5.0 node: every pair of writes with one timestamp is applied in one
// batch, so both share the node's clock (their local deletion times are
// now + TTL), and the row Cassandra keeps is read back and compared with
// what the cell model, quorum.Compare and the in-memory regions predict.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
)

const tiesNS = "ties"

func loadTies(t *testing.T) []cells.Tie {
	t.Helper()
	ties, err := cells.LoadTies("../internal/cells/testdata/ties.txt")
	if err != nil {
		t.Fatal(err)
	}
	return ties
}

// tieBind binds a tie-table write as a Tidemark writer does (a legacy
// marker binds its value as null), with expiry now + ttl.
func tieBind(ks string, pk []byte, w cells.TieWrite, now time.Time) (string, []any) {
	var expires int64
	if w.TTL > 0 {
		expires = now.Unix() + w.TTL
	}
	c := w.Columns(schema.Digest, expires)
	// The fingerprint and ver a Tidemark writer binds with this version
	// (the tie checks read the other cells only).
	fp := schema.Fingerprint(pk, []byte("ck"), w.Timestamp, w.Deleted, schema.Digest(w.Deleted, w.Value), expires)
	return schema.Insert(ks, tiesNS), []any{pk, []byte("ck"), c.Value, cells.AsBool(cells.Cell{Value: c.Deleted}),
		cells.AsBigint(cells.Cell{Value: c.Digest}), cells.AsBigint(cells.Cell{Value: c.Expires}), fp, w.Timestamp, w.Timestamp, int(w.TTL)}
}

type tieRow struct {
	value          []byte
	valueNull      bool
	deleted        bool
	digest         int64
	writetime, ttl int64
	expires        int64
}

func readTieRow(t *testing.T, s *gocql.Session, ks string, pk []byte) tieRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r tieRow
	var vwt *int64
	err := s.Query(fmt.Sprintf(`SELECT value, writetime(value), deleted, digest, writetime(digest), ttl(digest), expires FROM %s.%s WHERE pk = ? AND ck = ?`, ks, tiesNS),
		pk, []byte("ck")).ScanContext(ctx, &r.value, &vwt, &r.deleted, &r.digest, &r.writetime, &r.ttl, &r.expires)
	if errors.Is(err, gocql.ErrNotFound) {
		t.Fatalf("row %q not found", pk)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.valueNull = vwt == nil // a null (a cell tombstone) has no writetime
	return r
}

// TestTieTableOnCassandra: what a real Cassandra 5.0 keeps of each pair is
// what the table says, what the cell model predicts cell by cell, and (for
// rows Tidemark writes) the version quorum.Compare picks.
func TestTieTableOnCassandra(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a")
	s := adminSession(t, region(t, "a"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Query(schema.CreateTable(ks, tiesNS, time.Hour)).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		t.Fatal(err)
	}
	ties := loadTies(t)
	checked := 0
	for i, tie := range ties {
		pk := fmt.Appendf(nil, "tie-%02d", i)
		// One batch: both writes see the same node clock.
		now := time.Now()
		b := s.Batch(gocql.UnloggedBatch)
		for _, w := range []cells.TieWrite{tie.A, tie.B} {
			stmt, args := tieBind(ks, pk, w, now)
			b.Query(stmt, args...)
		}
		if err := b.ExecContext(ctx); err != nil {
			t.Fatalf("%s: batch: %v", tie.Name, err)
		}
		got := readTieRow(t, s, ks, pk)
		// The cell model, applied at the second the node applied the batch
		// (taken from the TTL Cassandra reports).
		var model cells.Row
		nowSec := now.Unix()
		for _, w := range []cells.TieWrite{tie.A, tie.B} {
			var expires int64
			if w.TTL > 0 {
				expires = nowSec + w.TTL
			}
			model.Apply(w.Columns(schema.Digest, expires), w.Timestamp, w.TTL, nowSec)
		}
		wantValueNull := model.Value.Tombstone()
		if got.deleted != cells.AsBool(model.Deleted) || got.digest != cells.AsBigint(model.Digest) ||
			got.writetime != model.Digest.Timestamp || got.expires != cells.AsBigint(model.Expires) ||
			got.valueNull != wantValueNull || (!wantValueNull && !bytes.Equal(got.value, model.Value.Value)) {
			t.Errorf("%s: Cassandra kept %+v, the cell model predicts deleted=%v digest=%d ts=%d expires=%d value=%q (null %v)",
				tie.Name, got, cells.AsBool(model.Deleted), cells.AsBigint(model.Digest), model.Digest.Timestamp,
				cells.AsBigint(model.Expires), model.Value.Value, wantValueNull)
		}
		if d := model.Digest.TTL; abs(int(got.ttl-d)) > 2 {
			t.Errorf("%s: ttl(digest) %d, the model's cell has TTL %d", tie.Name, got.ttl, d)
		}
		// The table's verdict.
		if kept, ok := tie.Kept(); ok {
			if got.deleted != kept.Deleted || (!kept.Deleted && !bytes.Equal(got.value, kept.Value)) || got.writetime != kept.Timestamp {
				t.Errorf("%s: Cassandra kept deleted=%v value=%q ts=%d, the table says write %s (%+v)", tie.Name, got.deleted, got.value, got.writetime, tie.Keeps, kept)
			}
			if !tie.HasLegacy() {
				a, b := tieVersion(tie.A, nowSec), tieVersion(tie.B, nowSec)
				winner := a
				if quorum.Compare(b, a) > 0 {
					winner = b
				}
				if winner.Deleted != got.deleted || (!got.deleted && !bytes.Equal(winner.Value, got.value)) || winner.Timestamp != got.writetime || winner.Expires != got.expires {
					t.Errorf("%s: quorum.Compare picks %v, Cassandra kept %+v", tie.Name, winner, got)
				}
			}
		} else if got.deleted != tie.MixedDeleted || got.valueNull != (tie.MixedValue == nil) {
			t.Errorf("%s: Cassandra kept deleted=%v value null=%v, the table says the mix deleted=%v value=%q",
				tie.Name, got.deleted, got.valueNull, tie.MixedDeleted, tie.MixedValue)
		}
		checked++
	}
	t.Logf("%d ties checked against Cassandra 5.0", checked)
}

// tieVersion is the version a tie-table write makes when applied at now
// (seconds).
func tieVersion(w cells.TieWrite, now int64) quorum.Version {
	v := quorum.Version{Timestamp: w.Timestamp, Deleted: w.Deleted}
	if !w.Deleted {
		v.Value = w.Value
	}
	if w.TTL > 0 {
		v.Expires = now + w.TTL
	}
	return v
}
