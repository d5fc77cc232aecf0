// Package store is the library services use to read and write Tidemark: an
// eventually consistent, multi-region key-value store over Apache Cassandra,
// where every region is its own Cassandra cluster and Tidemark itself
// replicates between them.
//
// # Mental model
//
// A Store (Open) knows every region and one of them, the home region, is
// where this process runs. Data lives in namespaces (CreateNamespace,
// Namespace): one table per namespace, the same in every region, holding
// rows addressed by a partition key and a clustering key. Rows of one
// partition are stored together, ordered by clustering key: they can be
// scanned (Scan, All) and written together with one version (PutBatch,
// atomic within each region's write of it).
//
// Every write gets one version, a timestamp from the process's hybrid
// logical clock (never behind the wall clock, strictly increasing), and that
// same version is written to every region, into hints and by repair. Between
// two versions of a row the higher timestamp wins everywhere — last write
// wins, exactly as Cassandra reconciles cells — so a row converges to the
// same value in every region whatever order the writes arrive in, and a
// retried or replayed write is harmless.
//
// A call's consistency level (WithConsistency; default LocalQuorum) says
// which regions it waits for:
//
//	level         succeeds when                        in each region   other regions
//	LocalOne      the home region acks                 LOCAL_ONE        background; hint on failure
//	LocalQuorum   the home region acks                 LOCAL_QUORUM     background; hint on failure
//	Quorum        a majority of regions ack            LOCAL_QUORUM     the rest in the background
//	EachQuorum    every region acks                    LOCAL_QUORUM     failed region: hint + error
//	All           every region acks                    ALL              failed region: hint + error
//	Any (writes)  home acks, or its hint is durable    LOCAL_ONE        background; hint on failure
//
// A write returns as soon as its level is met; it never waits for the
// slowest region it does not need. Regions written in the background, and
// synchronous regions that answer late, are written by a bounded pool of
// workers; a region that misses a write for availability (unreachable,
// timeout, open circuit breaker, full queue) gets a hint: a record of the
// write that the repair daemon replays into that region later. A region that
// answers and refuses a write (say, the namespace's table is missing there)
// gets no hint, since the replay would be refused too: the refusal is
// counted (writes_rejected_total) and logged, and returned to the caller
// when the call waits on that region. Hints go to a HintSink (the Kafka
// producer of package hints in production). Anti-entropy repair is the
// safety net behind hints.
//
// Reads at LocalOne and LocalQuorum read the home region. Reads at Quorum,
// EachQuorum and All read that many regions, return the newest version, and
// write it back to the regions that answered with an older one (read
// repair).
//
// Deletes write a deletion marker (a row with no value and a new version)
// that lives for the namespace's tombstone retention, so a region that
// missed the delete learns it from hints or repair instead of resurrecting
// the row.
//
// # Invariants
//
//   - Every mutation has one timestamp, written with every cell of every row
//     it touches, in every region and in its hints.
//   - Invalid input is rejected before any I/O: a call that fails validation
//     wrote nothing anywhere.
//   - A region that misses a write for availability is either hinted
//     (hinted_writes_total) or counted as left to repair
//     (hints_failed_total); one that refuses a write is never hinted, and
//     is counted (writes_rejected_total). Nothing is dropped silently.
//   - A deletion marker lives exactly the namespace's tombstone retention,
//     read from the table; if no region can tell it, the Delete fails
//     (ErrUnavailable) rather than guess.
//   - Memory and concurrency are bounded: Config.RemoteConcurrency workers,
//     Config.MaxPendingWrites and Config.MaxPendingBytes of queued work.
//   - Close waits for every goroutine the Store started, except the closing
//     of a region's connections, which it waits for at most
//     ConnectionCloseTimeout (regions close concurrently; one that hangs
//     finishes in the background and is named in an ErrStillClosing error). CloseContext
//     bounds the whole wait, hinting the background writes it gives up on.
//
// # Errors
//
// Errors wrap the sentinels of this package (ErrNotFound, ErrUnavailable,
// ErrTimeout, ErrValueTooLarge, ErrKeyTooLarge, ErrEmptyKey,
// ErrInvalidNamespace, ErrInvalidTTL, ErrInvalidLevel, ...): test them with
// errors.Is. A call that could not meet its level returns a
// *ConsistencyError listing each failed region as a *RegionError with its
// cause; get them with errors.As. See docs/consistency.md for the full
// semantics.
//
// # Testing
//
// The database is behind a narrow interface, Executor, one per region; the
// default one uses the gocql driver. MemoryRegion is an in-memory Executor,
// so code that uses a Store can be tested without Cassandra (MemoryFactory).
package store
