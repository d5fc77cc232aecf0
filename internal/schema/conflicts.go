package schema

import (
	"fmt"
	"time"
)

// The conflict log (docs/repair.md, "Conflicts"): one table per keyspace,
// in every region's keyspace that a detector records in, holding the
// versions last-write-wins dropped.
const (
	// ConflictsTable is the conflict log's table.
	ConflictsTable = "tidemark_conflicts"
	// ConflictBucket is the width of one partition of the log: the hour
	// of the winning write. A partition holds the conflicts of one
	// namespace's writes of one hour, so it stays bounded by the writes
	// made in an hour (and by the detectors' rate limits).
	ConflictBucket = time.Hour
	// DefaultConflictTTL is how long a conflict record lives (7 days).
	DefaultConflictTTL = 7 * 24 * time.Hour
)

// ConflictBucketOf returns the log partition of a winning write made at
// ts (µs since the epoch): whole ConflictBuckets since the epoch.
func ConflictBucketOf(ts int64) int64 {
	b := ConflictBucket.Microseconds()
	if ts < 0 {
		return (ts - b + 1) / b
	}
	return ts / b
}

// CreateConflictsTable returns the DDL of the conflict log. Its primary
// key is the conflict itself — namespace, the winning write's hour,
// (pk, ck), both timestamps — so the same conflict seen twice (by repair
// and by a read repair, or by two daemons) is one row. Rows carry a TTL
// (InsertConflict), compacted by time windows; the table id is derived
// from its name (TableID), as for every table Tidemark creates.
func CreateConflictsTable(keyspace string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (namespace text, bucket bigint, pk blob, ck blob, winner_ts bigint, loser_ts bigint, winner_writer int, winner_deleted boolean, loser_writer int, loser_deleted boolean, loser_region text, detected_by text, detected_at timestamp, PRIMARY KEY ((namespace, bucket), pk, ck, winner_ts, loser_ts)) WITH ID = %s AND comment = '%s conflict log' AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}`,
		keyspace, ConflictsTable, TableID(keyspace, ConflictsTable), CommentPrefix)
}

// InsertConflict writes one conflict record. Bind: namespace, bucket, pk,
// ck, winner_ts, loser_ts, winner_writer, winner_deleted, loser_writer,
// loser_deleted, loser_region, detected_by, detected_at, ttl (seconds).
func InsertConflict(keyspace string) string {
	return fmt.Sprintf(`INSERT INTO %s.%s (namespace, bucket, pk, ck, winner_ts, loser_ts, winner_writer, winner_deleted, loser_writer, loser_deleted, loser_region, detected_by, detected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?`,
		keyspace, ConflictsTable)
}

// SelectConflicts reads one partition of the conflict log. Bind:
// namespace, bucket. Columns: pk, ck, winner_ts, loser_ts, winner_writer,
// winner_deleted, loser_writer, loser_deleted, loser_region, detected_by,
// detected_at.
func SelectConflicts(keyspace string) string {
	return fmt.Sprintf(`SELECT pk, ck, winner_ts, loser_ts, winner_writer, winner_deleted, loser_writer, loser_deleted, loser_region, detected_by, detected_at FROM %s.%s WHERE namespace = ? AND bucket = ?`,
		keyspace, ConflictsTable)
}
