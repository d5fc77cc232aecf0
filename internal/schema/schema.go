// Package schema owns the one table shape Tidemark writes in every region and
// the CQL statements that read and write it. store, hints (replay) and repair
// all go through these texts, so that every writer sets all of a row's cells
// with one timestamp and every reader sees the same columns.
//
// Table shape, one per namespace:
//
//	(pk blob, ck blob, value blob, deleted boolean, digest bigint,
//	 expires bigint, fp bigint, ver bigint, PRIMARY KEY ((pk), ck))
//
// digest is a 64-bit hash of (deleted, value), written with the same
// timestamp as the other cells, so repair compares rows by reading
// writetime(digest) and digest alone. expires is the row's absolute expiry
// (seconds since the epoch, 0 = never): the instant at which the row stops
// being visible in every region, whatever a node's apply delay; the
// Cassandra TTL written with the row only reclaims the space. fp is the
// row's fingerprint (Fingerprint): a 64-bit hash of its whole version
// (pk, ck, timestamp, deleted, digest, expires), written with the row's
// timestamp and TTL by every writer (InsertValues computes it), so that
// repair compares a token range across regions by Cassandra's own
// aggregates (SelectFingerprintRange) without reading its rows. ver is
// the row's version again — its timestamp, the value of writetime(digest)
// — as a column that an index can hold (CreateVersionIndex), so that an
// incremental repair aggregates only the rows at or above a version
// (SelectFingerprintSince) and reads nothing of the rest.
//
// # Row format 2
//
// Every write binds every regular column, none of them null, with one
// timestamp and one TTL (InsertValues): a deletion marker's value is an
// empty blob, not null. A null is a cell tombstone, which reconciles
// differently from the row's other cells (internal/cells), so a marker with
// a null value could tie with a longer-lived write of the same timestamp
// into a row no one wrote. Tables created before the expires column
// existed get it from Upgrade; their rows without it (expires null, read
// as 0) take their expiry from their remaining TTL (Expiry).
package schema

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Limits of the table. Every package that sizes a row, a hint record or a
// buffer takes them from here.
const (
	// MaxPartitionKey is Cassandra's limit on a partition key's size
	// (64 KiB - 1).
	MaxPartitionKey = 65535

	// MaxClusteringKey is the limit Tidemark puts on a clustering key
	// (Cassandra also limits clustering values to 64 KiB - 1).
	MaxClusteringKey = 65535

	// DefaultMaxValueSize is the largest value a store with default limits
	// writes (1 MiB): store.DefaultMaxValueSize, and what the default size
	// of a hint record (record.DefaultMaxHintBytes) is made to fit.
	DefaultMaxValueSize = 1 << 20

	// MaxNameLen is the longest keyspace or namespace name (ValidateName).
	MaxNameLen = 48
)

// DefaultRetention is how long a deletion marker lives by default: 10 days
// (docs/design.md, "Deletes and resurrection").
const DefaultRetention = 10 * 24 * time.Hour

// MaxTTL is the longest TTL or tombstone retention a write may carry:
// Cassandra's maximum TTL (20 years, 630 720 000 s) less the second that
// rounding an expiry up to a whole second, and the TTL up again, can add.
const MaxTTL = 20*365*24*time.Hour - time.Second

// ErrInvalidName reports a keyspace or namespace name that is not a safe,
// unquoted CQL identifier.
var ErrInvalidName = errors.New("invalid name")

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,` + strconv.Itoa(MaxNameLen-1) + `}$`)

// ValidateName checks that name is usable as an unquoted CQL identifier: it
// starts with a lower-case letter and holds only lower-case letters, digits
// and underscores, 48 characters at most. No quoting is ever needed, so a name
// can never inject CQL. what says which kind of name it is ("keyspace",
// "namespace") for the error message.
func ValidateName(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: %s %q must match [a-z][a-z0-9_]{0,47}", ErrInvalidName, what, name)
	}
	return nil
}

// Digest is the 64-bit hash of a row's (deleted, value) stored in the digest
// column.
func Digest(deleted bool, value []byte) int64 {
	var d xxhash.Digest
	d.Reset()
	if deleted {
		_, _ = d.Write([]byte{1})
	} else {
		_, _ = d.Write([]byte{0})
		_, _ = d.Write(value)
	}
	return int64(d.Sum64())
}

// Fingerprint is the 64-bit hash of a row version stored in the fp column:
// its keys, its timestamp (µs), whether it is a deletion marker, its
// digest and its absolute expiry (seconds, 0 = never). Two regions that
// hold the same version of a row hold the same fingerprint, and the sum of
// a range's fingerprints (modulo 2^64, as Cassandra's sum over bigint
// wraps) is a hash of the set of versions it holds.
func Fingerprint(pk, ck []byte, ts int64, deleted bool, digest, expires int64) int64 {
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(len(pk)))
	_, _ = d.Write(b[:4])
	_, _ = d.Write(pk)
	binary.BigEndian.PutUint32(b[:4], uint32(len(ck)))
	_, _ = d.Write(b[:4])
	_, _ = d.Write(ck)
	for _, v := range []int64{ts, digest, expires} {
		binary.BigEndian.PutUint64(b[:], uint64(v))
		_, _ = d.Write(b[:])
	}
	if deleted {
		_, _ = d.Write([]byte{1})
	} else {
		_, _ = d.Write([]byte{0})
	}
	return int64(d.Sum64())
}

// CommentPrefix starts the table comment that records Tidemark's metadata.
const CommentPrefix = "tidemark:v1"

// CreateTable returns the DDL for a namespace's table. The tombstone
// retention is recorded in the table comment so that the daemon can read it
// back; gc_grace_seconds is kept at least as long, so Cassandra's own
// tombstones (from TTL expiry of markers) are not purged before repair runs.
//
// The table id is derived from its name (TableID), so that several processes
// creating the same namespace at once through different coordinators agree
// on one table instead of racing into a schema conflict.
func CreateTable(keyspace, table string, retention time.Duration) string {
	secs := int64(retention / time.Second)
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (pk blob, ck blob, value blob, deleted boolean, digest bigint, expires bigint, fp bigint, ver bigint, PRIMARY KEY ((pk), ck)) WITH ID = %s AND comment = '%s retention=%d' AND gc_grace_seconds = %d`,
		keyspace, table, TableID(keyspace, table), CommentPrefix, secs, secs)
}

// Upgrade returns the statements that bring a table created by an earlier
// CreateTable to the current shape: one ALTER TABLE … ADD per column added
// since. Run them after CreateTable; an error saying the column already
// exists (IsColumnExists) means there was nothing to do.
func Upgrade(keyspace, table string) []string {
	var out []string
	for _, c := range AddedColumns {
		out = append(out, fmt.Sprintf(`ALTER TABLE %s.%s ADD %s bigint`, keyspace, table, c))
	}
	return out
}

// AddedColumns are the columns added to the table since its first shape,
// in the order Upgrade adds them (all bigint): expires (row format 2), fp
// (the fingerprint) and ver (the version, for incremental repair).
var AddedColumns = []string{"expires", "fp", "ver"}

// VersionIndex is the name of a namespace's index on its ver column.
func VersionIndex(table string) string { return table + "_ver" }

// CreateVersionIndex returns the DDL of the storage-attached index on a
// namespace's ver column (Cassandra 5.0's SAI), which lets
// SelectFingerprintSince read only the rows at or above a version. The
// index is built in the background over the rows already there; until it
// is, the query fails (IsIndexUnavailable) and repair compares the range
// in full.
func CreateVersionIndex(keyspace, table string) string {
	return fmt.Sprintf(`CREATE CUSTOM INDEX IF NOT EXISTS %s ON %s.%s (ver) USING 'StorageAttachedIndex'`, VersionIndex(table), keyspace, table)
}

// SelectIndexes lists a table's indexes from the schema tables. Bind:
// keyspace, table. Column: index_name.
const SelectIndexes = `SELECT index_name FROM system_schema.indexes WHERE keyspace_name = ? AND table_name = ?`

// SelectColumns lists a table's columns from the schema tables. Bind:
// keyspace, table. Column: column_name.
const SelectColumns = `SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`

// IsUndefinedColumn reports whether a message from Cassandra refuses a
// statement that names a column the table lacks: a table an earlier
// release created, not upgraded yet (Upgrade).
func IsUndefinedColumn(msg string) bool { return strings.Contains(msg, "Undefined column name") }

// IsColumnExists reports whether a message from Cassandra refuses an
// ALTER TABLE … ADD because the column is already there.
func IsColumnExists(msg string) bool {
	return strings.Contains(msg, "conflicts with an existing column") || strings.Contains(msg, "already exists")
}

// TableID is a name-based (version 5, SHA-1) UUID for keyspace.table.
func TableID(keyspace, table string) string {
	h := sha1.Sum([]byte("tidemark-table:" + keyspace + "." + table))
	u := h[:16]
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// ParseRetention reads the tombstone retention back from a table comment
// written by CreateTable.
func ParseRetention(comment string) (time.Duration, error) {
	if !strings.HasPrefix(comment, CommentPrefix) {
		return 0, fmt.Errorf("table comment %q was not written by tidemark", comment)
	}
	for _, f := range strings.Fields(comment) {
		if v, ok := strings.CutPrefix(f, "retention="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("table comment %q: bad retention", comment)
			}
			if d := time.Duration(n) * time.Second; n <= int64(MaxTTL/time.Second) {
				return d, nil
			}
			return 0, fmt.Errorf("table comment %q: a retention of %d s is longer than a deletion marker can live (at most %d s: Cassandra refuses a TTL over 20 years)",
				comment, n, int64(MaxTTL/time.Second))
		}
	}
	return 0, fmt.Errorf("table comment %q has no retention", comment)
}

// CreateKeyspace returns DDL for a keyspace replicated within one data center.
func CreateKeyspace(keyspace, dc string, rf int) string {
	return fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'NetworkTopologyStrategy', '%s': %d}`, keyspace, dc, rf)
}

// Insert returns the statement that writes every cell of one row with one
// timestamp and one TTL, its fingerprint included. Bind InsertValues.
func Insert(keyspace, table string) string {
	return fmt.Sprintf(`INSERT INTO %s.%s (pk, ck, value, deleted, digest, expires, fp, ver) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`, keyspace, table)
}

// Cells are the regular columns of one row as a write sets them.
type Cells struct {
	// Value is a live row's value; a marker's is ignored. Stored as an
	// empty blob when nil or for a marker, never as null (row format 2).
	Value []byte
	// Deleted marks a deletion marker.
	Deleted bool
	// Digest is the digest column: Digest(Deleted, Value) as RowCells
	// computes it, or the digest repair reconciled.
	Digest int64
	// Expires is the absolute expiry, seconds since the epoch; 0 = never.
	Expires int64
}

// RowCells returns the cells of a row version: its value (ignored for a
// marker), whether it is a deletion marker, its digest and its absolute
// expiry.
func RowCells(deleted bool, value []byte, expires int64) Cells {
	if deleted {
		value = nil
	}
	return Cells{Value: value, Deleted: deleted, Digest: Digest(deleted, value), Expires: expires}
}

// InsertValues returns the values to bind to Insert for the row (pk, ck)
// with cells c, timestamp ts (µs) and ttl (seconds, 0 = none): pk, ck,
// value, deleted, digest, expires, fp (Fingerprint of the version), ver
// (ts itself), ts, ttl. No value is ever nil: a live row's nil value and a marker's value
// bind as an empty blob (a nil clustering key as an empty one).
func InsertValues(pk, ck []byte, c Cells, ts int64, ttl int) []any {
	value := c.Value
	if c.Deleted || value == nil {
		value = []byte{}
	}
	if ck == nil {
		ck = []byte{}
	}
	fp := Fingerprint(pk, ck, ts, c.Deleted, c.Digest, c.Expires)
	return []any{pk, ck, value, c.Deleted, c.Digest, c.Expires, fp, ts, ts, ttl}
}

// ExpiryAfter returns the absolute expiry, in whole seconds since the
// epoch, of a row written at now that must live d: now + d rounded up to
// the next whole second, so that the row never expires earlier than asked.
// d <= 0 gives 0 (never).
func ExpiryAfter(now time.Time, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	t := now.Add(d)
	s := t.Unix()
	if t.After(time.Unix(s, 0)) {
		s++
	}
	return s
}

// TTLUntil returns the Cassandra TTL (whole seconds, rounded up) that
// makes a row written at now expire at expires (seconds since the epoch);
// 0 for a row that never expires (expires 0). expired reports that the
// instant has passed: the row must not be written at all.
func TTLUntil(expires int64, now time.Time) (ttl int, expired bool) {
	if expires == 0 {
		return 0, false
	}
	left := time.Unix(expires, 0).Sub(now)
	if left <= 0 {
		return 0, true
	}
	return TTLSeconds(left), false
}

// Expiry is the absolute expiry of a row read at now with the expires
// column and the remaining ttl(digest): the column when set; for a row
// written before it existed, now plus its remaining TTL; 0 for a row that
// never expires.
func Expiry(expires int64, ttl int, now time.Time) int64 {
	switch {
	case expires != 0:
		return expires
	case ttl > 0:
		return now.Unix() + int64(ttl)
	}
	return 0
}

// Visible reports whether a row with absolute expiry expires (0 = never)
// is visible at now. Every region hides a row at the same instant.
func Visible(expires int64, now time.Time) bool {
	return expires == 0 || now.Before(time.Unix(expires, 0))
}

// SelectRow reads one row. Bind: pk, ck. Columns: value, deleted,
// writetime(digest), ttl(digest), expires.
func SelectRow(keyspace, table string) string {
	return fmt.Sprintf(`SELECT value, deleted, writetime(digest), ttl(digest), expires FROM %s.%s WHERE pk = ? AND ck = ?`, keyspace, table)
}

// SelectPartition reads a partition from a clustering key on, in clustering
// order. Bind: pk, ck (exclusive lower bound). Columns: ck, value, deleted,
// writetime(digest), ttl(digest), expires.
func SelectPartition(keyspace, table string) string {
	return fmt.Sprintf(`SELECT ck, value, deleted, writetime(digest), ttl(digest), expires FROM %s.%s WHERE pk = ? AND ck > ?`, keyspace, table)
}

// SelectPartitionFirst is SelectPartition without a lower bound. Bind: pk.
func SelectPartitionFirst(keyspace, table string) string {
	return fmt.Sprintf(`SELECT ck, value, deleted, writetime(digest), ttl(digest), expires FROM %s.%s WHERE pk = ?`, keyspace, table)
}

// SelectDigestRange reads the digests of a token range (start, end], in token
// order. Bind: start, end. Columns: token(pk), pk, ck, writetime(digest),
// digest, deleted, ttl(digest), expires.
func SelectDigestRange(keyspace, table string) string {
	return fmt.Sprintf(`SELECT token(pk), pk, ck, writetime(digest), digest, deleted, ttl(digest), expires FROM %s.%s WHERE token(pk) > ? AND token(pk) <= ?`, keyspace, table)
}

// SelectDigestRangeFrom is SelectDigestRange with an inclusive lower bound,
// for the segment that starts at the ring's minimum token. Bind: start, end.
func SelectDigestRangeFrom(keyspace, table string) string {
	return fmt.Sprintf(`SELECT token(pk), pk, ck, writetime(digest), digest, deleted, ttl(digest), expires FROM %s.%s WHERE token(pk) >= ? AND token(pk) <= ?`, keyspace, table)
}

// SelectBackfillRange reads what a fingerprint backfill needs of every row
// of a token range (start, end]: pk, ck, writetime(digest), ttl(digest),
// digest, deleted, expires, writetime(fp). Bind: start, end. A row whose
// writetime(fp) is below writetime(digest) (null reads as 0: no fp) lacks
// its version's fingerprint.
func SelectBackfillRange(keyspace, table string) string {
	return fmt.Sprintf(`SELECT pk, ck, writetime(digest), ttl(digest), digest, deleted, expires, writetime(fp) FROM %s.%s WHERE token(pk) > ? AND token(pk) <= ?`, keyspace, table)
}

// SelectBackfillRangeFrom is SelectBackfillRange with an inclusive lower
// bound, for a range that starts at the ring's minimum token.
func SelectBackfillRangeFrom(keyspace, table string) string {
	return fmt.Sprintf(`SELECT pk, ck, writetime(digest), ttl(digest), digest, deleted, expires, writetime(fp) FROM %s.%s WHERE token(pk) >= ? AND token(pk) <= ?`, keyspace, table)
}

// UpdateFingerprint writes the fp cell alone, at the row's own timestamp
// so that any later write of the row wins over it. Bind: ts, ttl, fp, pk,
// ck (BackfillValues).
func UpdateFingerprint(keyspace, table string) string {
	return fmt.Sprintf(`UPDATE %s.%s USING TIMESTAMP ? AND TTL ? SET fp = ? WHERE pk = ? AND ck = ?`, keyspace, table)
}

// BackfillRow is a row as SelectBackfillRange reads it.
type BackfillRow struct {
	PK, CK []byte
	// Timestamp is writetime(digest), TTL ttl(digest) (seconds, 0: none).
	Timestamp int64
	TTL       int
	Digest    int64
	Deleted   bool
	// Expires is the expires column (0 when null), FPTimestamp
	// writetime(fp) (0 when the row has no fp).
	Expires, FPTimestamp int64
}

// BackfillValues decides whether a row read by SelectBackfillRange gets
// its fingerprint written, and returns the values to bind to
// UpdateFingerprint. It does not when the row's fp is its version's
// already (written at or after its digest), when its absolute expiry is
// not recorded (a TTL but no expires column: the regions would compute
// different expiries from the TTL each reads), when that expiry has
// passed or is two seconds away, or when the row has no digest. The fp
// cell gets one second less than the row's remaining TTL, so that it
// never outlives the row's other cells.
func BackfillValues(r BackfillRow, now time.Time) ([]any, bool) {
	switch {
	case r.Timestamp == 0, r.FPTimestamp >= r.Timestamp:
		return nil, false
	case r.TTL > 0 && (r.Expires == 0 || r.TTL <= 2 || !Visible(r.Expires, now.Add(2*time.Second))):
		return nil, false
	case r.TTL == 0 && r.Expires != 0 && !Visible(r.Expires, now):
		return nil, false
	}
	ttl := 0
	if r.TTL > 0 {
		ttl = r.TTL - 1
	}
	ck := r.CK
	if ck == nil {
		ck = []byte{}
	}
	fp := Fingerprint(r.PK, ck, r.Timestamp, r.Deleted, r.Digest, r.Expires)
	return []any{r.Timestamp, ttl, fp, r.PK, ck}, true
}

// SelectFingerprintRange aggregates a token range (start, end] on the
// server: count(*), count(fp), sum(fp), sum(writetime(digest)),
// sum(digest), sum(writetime(fp)). Bind: start, end. Sums over bigint wrap
// modulo 2^64 in Cassandra, so each is a hash of the range's set of rows;
// count(*) - count(fp) is the rows written before the fp column existed,
// whose versions the sums do not cover. The guard sums catch a row whose
// fp cell is not its version's: a writer that does not set fp (a release
// before it) moves writetime(digest) but not writetime(fp), and a tie
// reconciled cell by cell may keep one write's fp beside another's digest.
func SelectFingerprintRange(keyspace, table string) string {
	return fmt.Sprintf(`SELECT count(*), count(fp), sum(fp), sum(writetime(digest)), sum(digest), sum(writetime(fp)) FROM %s.%s WHERE token(pk) > ? AND token(pk) <= ?`, keyspace, table)
}

// SelectFingerprintRangeFrom is SelectFingerprintRange with an inclusive
// lower bound, for a range that starts at the ring's minimum token.
func SelectFingerprintRangeFrom(keyspace, table string) string {
	return fmt.Sprintf(`SELECT count(*), count(fp), sum(fp), sum(writetime(digest)), sum(digest), sum(writetime(fp)) FROM %s.%s WHERE token(pk) >= ? AND token(pk) <= ?`, keyspace, table)
}

// SelectFingerprintSince is SelectFingerprintRange over the rows of the
// range whose version (the ver column) is at least a given one, plus
// sum(writetime(ver)), read through the version index
// (CreateVersionIndex): the server reads those rows alone. Bind: start,
// end, since. The last sum guards the subset as sum(writetime(fp)) guards
// the range: a writer that does not set ver (a release before it) leaves
// a row's ver older than its digest.
func SelectFingerprintSince(keyspace, table string) string {
	return fmt.Sprintf(`SELECT count(*), count(fp), sum(fp), sum(writetime(digest)), sum(digest), sum(writetime(fp)), sum(writetime(ver)) FROM %s.%s WHERE token(pk) > ? AND token(pk) <= ? AND ver >= ?`, keyspace, table)
}

// SelectFingerprintSinceFrom is SelectFingerprintSince with an inclusive
// lower bound, for a range that starts at the ring's minimum token.
func SelectFingerprintSinceFrom(keyspace, table string) string {
	return fmt.Sprintf(`SELECT count(*), count(fp), sum(fp), sum(writetime(digest)), sum(digest), sum(writetime(fp)), sum(writetime(ver)) FROM %s.%s WHERE token(pk) >= ? AND token(pk) <= ? AND ver >= ?`, keyspace, table)
}

// IsIndexUnavailable reports whether a message from Cassandra refuses a
// SelectFingerprintSince because the version index cannot answer it: not
// created, or not built yet.
func IsIndexUnavailable(msg string) bool {
	// Cassandra 5.0: without the index it asks for ALLOW FILTERING; while
	// the index builds a replica fails the read with INDEX_NOT_AVAILABLE.
	for _, m := range []string{"ALLOW FILTERING", "INDEX_NOT_AVAILABLE"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// SelectTableComment reads a table's comment from the schema tables. Bind:
// keyspace, table.
const SelectTableComment = `SELECT comment FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`

// PartitionKeyBytes returns the encoding of a composite key; it is here so
// that every package agrees on how a (pk, ck) pair is made into a Kafka key
// or a map key.
func PartitionKeyBytes(pk, ck []byte) []byte {
	b := make([]byte, 0, 4+len(pk)+len(ck))
	b = binary.BigEndian.AppendUint32(b, uint32(len(pk)))
	b = append(b, pk...)
	return append(b, ck...)
}

// TTLSeconds converts a remaining lifetime into the whole seconds CQL takes,
// rounding up so that a row never expires earlier than asked. It returns 0
// (no TTL) for d <= 0.
func TTLSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}
