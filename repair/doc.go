// Package repair is Tidemark's anti-entropy repair: it makes every region
// hold the last-write-wins winner of every row, comparing digests rather
// than values.
//
// # Algorithm
//
// The Murmur3 token ring is split into segments ([Segments]). For a segment,
// every region streams token(pk), pk, ck, writetime(digest), digest, deleted
// and ttl(digest) in token order (paged: memory is bounded by the page size),
// and [Diff] merges the streams in Cassandra's scan order ([CompareKeys]:
// token, then partition key bytes, then clustering key bytes). A row whose
// observations are not all the same version ([Observed.Same]) is a
// [Divergence]; [PlanRow] decides it by the order of quorum.Compare as far as
// digests tell: the highest timestamp wins, a deletion marker wins a tie,
// and values tied on timestamp with different digests are decided from their
// values ([ResolveTie]). The winner is written, with its own timestamp and
// remaining TTL, to exactly the regions that lack it; its value is read only
// from one region that holds it, and a deletion marker needs no value at all.
//
// # Invariants
//
//   - Diff and PlanRow are pure: no I/O, no clock. They are tested against a
//     model: after applying the plans, every region holds the model's
//     last-write-wins winner of every key, and a new Diff finds nothing.
//   - Row-level precision: a row is written only if it differs, and only to
//     the regions that lack the winner; Report.RowsWritten equals
//     Report.RowsDiffering unless a winner expired or changed meanwhile
//     (Report.RowsSkipped).
//   - The segments of a ring cover every token exactly once; the first
//     includes MinToken.
//   - A segment is done only when every region was scanned to its end and
//     every write succeeded; progress is recorded per segment, so a run that
//     stops resumes with the segments not done, and segments are shared by
//     concurrent processes through leases (lightweight transactions with a
//     TTL) in [CQLProgress].
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
