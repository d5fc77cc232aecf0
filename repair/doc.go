// Package repair is Tidemark's anti-entropy repair: it makes every region
// hold the last-write-wins winner of every row, comparing digests rather
// than values.
//
// # Algorithm
//
// The Murmur3 token ring is split into segments ([Segments]). For a segment,
// every region streams token(pk), pk, ck, writetime(digest), digest,
// deleted, ttl(digest) and expires in token order (paged: memory is bounded
// by the page size), and [Diff] merges the streams in Cassandra's scan order
// ([CompareKeys]: token, then partition key bytes, then clustering key
// bytes). A version is a timestamp, an absolute expiry, a kind and a digest
// (row format 2: internal/schema); a row whose expiry had passed at the scan
// is absent ([DigestRow.Expired]). A row whose observations are not all the
// same ([Observed.Same]) is a [Divergence]; [PlanRow] decides it by the
// order of quorum.Compare (Cassandra 5.0's tie rules) as far as digests
// tell: the highest timestamp wins, then an expiring version over one that
// never expires, then the later expiry, then a deletion marker over values;
// versions tied on all of that with different digests, or markers beside
// values, are decided from their values as the cell-wise join Cassandra
// keeps ([ResolveTie]), so that every region ends with identical cells. An
// expired winner is never replaced by an older version: nothing is
// written. The winner is written, with its own timestamp, its absolute
// expiry and the TTL left until it when the writer writes (never a TTL
// seen earlier: a copy never outlives the original), to exactly the
// regions that lack it; its value is read only from one region that holds
// it, and a deletion marker needs no value at all.
//
// # Invariants
//
//   - Diff and PlanRow are pure: no I/O, no clock (the scanners mark expired
//     rows). They are tested against a model: after applying the plans,
//     every region holds the model's quorum.Compare winner of every key
//     whose winner is live, and a new Diff finds nothing else; and against
//     the shared tie table (internal/cells/testdata/ties.txt): [MemRegion]
//     reconciles cells through internal/cells, as Cassandra 5.0 does.
//   - Row-level precision: a row is written only if it differs, and only to
//     the regions that lack the winner; Report.RowsWritten equals
//     Report.RowsDiffering unless a winner had expired or changed meanwhile
//     (Report.RowsSkipped).
//   - The segments of a ring cover every token exactly once; the first
//     includes MinToken.
//   - A segment is done only when every region was scanned to its end and
//     every write succeeded; progress is recorded per segment, so a run that
//     stops resumes with the segments not done, and segments are shared by
//     concurrent processes through leases (lightweight transactions with a
//     TTL) in [CQLProgress], kept in one region for every process
//     ([RecordProgressLocation] records which, in every region).
//   - A full repair dates from the start of its run ([Report.RunStarted],
//     [Metrics.SetLastFullRepair]): only deletes made before a run started
//     are sure to have reached every region when it completes. An
//     unfinished run older than [Options.MaxRunAge] (default half the
//     tombstone retention) is abandoned rather than resumed.
//
// The I/O sits behind [RegionReader], [RegionWriter] and [ProgressStore];
// [NewCQLRegion] and [NewCQLProgress] are the Cassandra implementations, and
// [MemRegion] and [MemProgress] the in-memory ones used by tests and
// examples. See docs/repair.md for guarantees, tuning and operations.
package repair
