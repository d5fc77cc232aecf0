package schema

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "users", "user_profiles2", strings.Repeat("x", 48)}
	bad := []string{"", "A", "1abc", "_x", "a-b", "a b", "a;drop", `a"b`, "système", strings.Repeat("x", 49)}
	for _, n := range good {
		if err := ValidateName("namespace", n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		err := ValidateName("namespace", n)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}

func TestDigestDistinguishesDeletionAndValue(t *testing.T) {
	if Digest(true, nil) == Digest(false, nil) {
		t.Fatal("deletion and empty value share a digest")
	}
	if Digest(false, []byte("a")) == Digest(false, []byte("b")) {
		t.Fatal("different values share a digest")
	}
	if Digest(true, []byte("x")) != Digest(true, nil) {
		t.Fatal("a deletion's digest must not depend on a value")
	}
}

func TestRetentionRoundTrip(t *testing.T) {
	ddl := CreateTable("ks", "t", 36*time.Hour)
	i := strings.Index(ddl, "comment = '")
	if i < 0 {
		t.Fatal("no comment in DDL")
	}
	rest := ddl[i+len("comment = '"):]
	comment := rest[:strings.Index(rest, "'")]
	got, err := ParseRetention(comment)
	if err != nil || got != 36*time.Hour {
		t.Fatalf("ParseRetention(%q) = %v, %v", comment, got, err)
	}
	longest := fmt.Sprintf("tidemark:v1 retention=%d", int64(MaxTTL/time.Second))
	if got, err := ParseRetention(longest); err != nil || got != MaxTTL {
		t.Fatalf("ParseRetention(%q) = %v, %v, want %v", longest, got, err, MaxTTL)
	}
	for _, c := range []string{"", "other", "tidemark:v1", "tidemark:v1 retention=x", "tidemark:v1 retention=-5",
		// Longer than a deletion marker's TTL can be.
		fmt.Sprintf("tidemark:v1 retention=%d", int64(MaxTTL/time.Second)+1)} {
		if _, err := ParseRetention(c); err == nil {
			t.Errorf("ParseRetention(%q) succeeded", c)
		}
	}
}

func TestTTLSeconds(t *testing.T) {
	cases := map[time.Duration]int{0: 0, -time.Second: 0, time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, time.Hour: 3600}
	for d, want := range cases {
		if got := TTLSeconds(d); got != want {
			t.Errorf("TTLSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestTableIDIsStableAndDistinct(t *testing.T) {
	a := TableID("ks", "users")
	if a != TableID("ks", "users") {
		t.Fatal("TableID is not deterministic")
	}
	if a == TableID("ks", "users2") || a == TableID("ks2", "users") {
		t.Fatal("different tables share an id")
	}
	if len(a) != 36 || a[14] != '5' || !strings.ContainsAny(a[19:20], "89ab") {
		t.Fatalf("TableID %s is not a version 5 RFC 4122 UUID", a)
	}
	if !strings.Contains(CreateTable("ks", "users", time.Hour), "WITH ID = "+a) {
		t.Fatal("CreateTable does not use TableID")
	}
}

func TestDigestRangeStatementsDifferOnlyInTheLowerBound(t *testing.T) {
	excl, incl := SelectDigestRange("ks", "t"), SelectDigestRangeFrom("ks", "t")
	if !strings.Contains(excl, "token(pk) > ? AND token(pk) <= ?") || !strings.Contains(incl, "token(pk) >= ? AND token(pk) <= ?") {
		t.Fatalf("statements: %q / %q", excl, incl)
	}
	if strings.Replace(excl, "token(pk) > ?", "token(pk) >= ?", 1) != incl {
		t.Fatal("the two statements select different columns")
	}
}

// BackfillValues writes exactly the fingerprint the store would have
// written for the version the row holds, and leaves alone the rows whose
// fingerprint is current or whose expiry cannot be agreed on.
func TestBackfillValues(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	pk, ck := []byte("p"), []byte("c")
	c := RowCells(false, []byte("v"), now.Unix()+100)
	live := BackfillRow{PK: pk, CK: ck, Timestamp: 42, TTL: 100, Digest: c.Digest, Expires: c.Expires}
	args, ok := BackfillValues(live, now)
	if !ok {
		t.Fatal("a row without fp was not backfilled")
	}
	want := InsertValues(pk, ck, c, 42, 100)
	if args[0] != int64(42) || args[1] != 99 || args[2] != want[6] || string(args[3].([]byte)) != "p" || string(args[4].([]byte)) != "c" {
		t.Fatalf("BackfillValues = %v, want ts 42, ttl 99, the store's fp %v, pk, ck", args, want[6])
	}
	noTTL := BackfillRow{PK: pk, CK: nil, Timestamp: 7, Deleted: true, Digest: Digest(true, nil)}
	args, ok = BackfillValues(noTTL, now)
	marker := RowCells(true, nil, 0)
	if !ok || args[1] != 0 || args[2] != InsertValues(pk, nil, marker, 7, 0)[6] {
		t.Fatalf("a marker without TTL: %v %v, want ttl 0 and the store's fp", args, ok)
	}
	for name, r := range map[string]BackfillRow{
		"fp current":            {PK: pk, CK: ck, Timestamp: 42, FPTimestamp: 42, Digest: c.Digest},
		"no digest":             {PK: pk, CK: ck},
		"TTL without expires":   {PK: pk, CK: ck, Timestamp: 42, TTL: 100, Digest: c.Digest},
		"TTL about to end":      {PK: pk, CK: ck, Timestamp: 42, TTL: 2, Digest: c.Digest, Expires: now.Unix() + 2},
		"expiry passed":         {PK: pk, CK: ck, Timestamp: 42, TTL: 50, Digest: c.Digest, Expires: now.Unix() - 1},
		"expiry passed, no TTL": {PK: pk, CK: ck, Timestamp: 42, Digest: c.Digest, Expires: now.Unix()},
	} {
		if args, ok := BackfillValues(r, now); ok {
			t.Errorf("%s: backfilled with %v, want left alone", name, args)
		}
	}
	stale := live
	stale.FPTimestamp = 41
	if _, ok := BackfillValues(stale, now); !ok {
		t.Error("a row whose fp is older than its digest was not backfilled")
	}
}

// TestInsertBindsTheVersionAsVer: every writer's INSERT names ver and binds
// the row's timestamp to it, beside the timestamp the write carries, one
// value per placeholder.
func TestInsertBindsTheVersionAsVer(t *testing.T) {
	stmt := Insert("ks", "t")
	vals := InsertValues([]byte("p"), []byte("c"), RowCells(false, []byte("v"), 0), 1234567, 60)
	if n := strings.Count(stmt, "?"); n != len(vals) {
		t.Fatalf("%q has %d placeholders, InsertValues binds %d", stmt, n, len(vals))
	}
	if !strings.Contains(stmt, "fp, ver) VALUES") || vals[7] != int64(1234567) || vals[8] != int64(1234567) || vals[9] != 60 {
		t.Errorf("%q bound %v: want ver = the timestamp (1234567), then the timestamp and the TTL", stmt, vals)
	}
	if !strings.Contains(CreateTable("ks", "t", time.Hour), " ver bigint,") || !slices.Contains(AddedColumns, "ver") {
		t.Errorf("the table is created or upgraded without ver")
	}
}

// TestFingerprintSinceStatementsDifferOnlyInTheLowerBound: the indexed
// aggregate is the range aggregate plus sum(writetime(ver)) over the rows
// whose ver is at least the bound.
func TestFingerprintSinceStatementsDifferOnlyInTheLowerBound(t *testing.T) {
	a, b := SelectFingerprintSince("ks", "t"), SelectFingerprintSinceFrom("ks", "t")
	if strings.Replace(a, "token(pk) > ?", "token(pk) >= ?", 1) != b {
		t.Errorf("%q and %q differ in more than the lower bound", a, b)
	}
	full := SelectFingerprintRange("ks", "t")
	if want := strings.Replace(full, "sum(writetime(fp))", "sum(writetime(fp)), sum(writetime(ver))", 1) + " AND ver >= ?"; a != want {
		t.Errorf("SelectFingerprintSince = %q, want %q", a, want)
	}
	if got := CreateVersionIndex("ks", "t"); got != `CREATE CUSTOM INDEX IF NOT EXISTS t_ver ON ks.t (ver) USING 'StorageAttachedIndex'` {
		t.Errorf("CreateVersionIndex = %q", got)
	}
}
