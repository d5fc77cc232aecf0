package repair

import (
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Defaults of the Options left zero.
const (
	// DefaultSegments is how many segments a new run splits the ring into.
	DefaultSegments = 64
	// DefaultPageSize is how many rows a digest scan fetches per page.
	DefaultPageSize = 1000
	// DefaultIntensity is the fraction of time repair works: always.
	DefaultIntensity = 1.0
	// DefaultParallelism is how many segments a process repairs at once.
	DefaultParallelism = 1
	// DefaultConcurrency is how many divergent rows of a segment are
	// fetched and written at once.
	DefaultConcurrency = 16
	// DefaultMaxAttempts is how many times a failing segment is tried in
	// one Run.
	DefaultMaxAttempts = 5
	// DefaultRetryBackoff is the wait, about, before a failed segment's
	// first retry.
	DefaultRetryBackoff = time.Second
	// RetryBackoffCeiling bounds the wait between a failed segment's
	// attempts: it never exceeds RetryBackoffCeiling × RetryBackoff.
	RetryBackoffCeiling = 32
	// DefaultLeaseTTL is how long a segment lease lives without renewal.
	DefaultLeaseTTL = 2 * time.Minute
	// DefaultLeaseWaitFactor is LeaseWait's default in lease TTLs: a
	// segment another owner keeps leased for 10 × LeaseTTL without
	// finishing it starts counting as failing.
	DefaultLeaseWaitFactor = 10
	// DefaultSamples is how many divergent rows a report keeps as
	// examples.
	DefaultSamples = 10
	// DefaultControlPoll is how often a run reads its Directive from a
	// ControlStore.
	DefaultControlPoll = time.Second
	// DefaultSegmentTimeout is how long a segment may make no progress (no
	// row scanned or written, not paused, not throttled) before its attempt
	// is abandoned and retried.
	DefaultSegmentTimeout = 5 * time.Minute
	// DefaultSplitAfter is how many consecutive failed attempts of a
	// segment (or of a piece of one) split the failing range for the next
	// attempts.
	DefaultSplitAfter = 2
	// SplitInto is how many pieces a failing range is split into.
	SplitInto = 4
	// MaxSplitDepth bounds the splitting: a segment becomes at most
	// SplitInto^MaxSplitDepth pieces (64).
	MaxSplitDepth = 3
	// DefaultFingerprintFanout is how many parts a range whose
	// fingerprints differ is split into.
	DefaultFingerprintFanout = 4
	// DefaultFingerprintLeafRows is the row count at or below which a
	// differing range is digest-scanned rather than split again.
	DefaultFingerprintLeafRows = 16
	// DefaultFingerprintMaxDepth bounds the splitting of a segment by
	// fingerprints: 16 levels of 4 parts.
	DefaultFingerprintMaxDepth = 16
)

// Bounds of repair's own housekeeping, not configurable.
const (
	// leasePollMax bounds the wait before asking again for a segment
	// another owner holds: min(LeaseTTL/4, leasePollMax).
	leasePollMax = 5 * time.Second
	// bookkeepingTimeout bounds a lease release after the segment's work
	// ended (even when the run was cancelled) and the lookup of a lease's
	// owner for an error message.
	bookkeepingTimeout = 5 * time.Second
)

// Options configure a Repairer. The zero value of every field picks the
// documented default.
type Options struct {
	// Segments is how many segments a new run splits the token ring into.
	// More segments mean finer resume and lease granularity and shorter
	// scans; each segment costs one range query per region. Default
	// DefaultSegments (64).
	Segments int
	// RowsPerSegment, when > 0, sizes a new run from the regions' row
	// estimates (Estimator, system.size_estimates) so that a segment holds
	// about this many rows; Segments is the fallback when no estimate is
	// available. Default 0 (use Segments).
	RowsPerSegment int64
	// PageSize is how many rows a digest scan fetches per page; it bounds
	// memory per region stream. Default DefaultPageSize (1000).
	PageSize int
	// RowsPerSecond limits the scan rate (rows read from all regions divided
	// by the number of regions, i.e. about distinct rows per second),
	// shared by the segments of a run, with a burst of one second's worth
	// (a golang.org/x/time/rate limiter). 0 means no limit. Default 0.
	RowsPerSecond float64
	// Intensity in (0, 1] is the fraction of time repair works: after a
	// segment that took d, a worker rests d*(1/Intensity - 1), as in
	// Cassandra Reaper. Default DefaultIntensity (1: no rest).
	Intensity float64
	// Parallelism is how many segments this process repairs at once.
	// Default DefaultParallelism (1).
	Parallelism int
	// Concurrency is how many divergent rows of a segment are fetched and
	// written at once. Default DefaultConcurrency (16).
	Concurrency int
	// MaxAttempts is how many times a failing segment is tried in one Run
	// before it is left for the next run. A segment whose attempt a region
	// refused (RegionError.Refused: no permission, an invalid statement, a
	// missing table) is not retried: it fails after that one attempt.
	// Default DefaultMaxAttempts (5).
	MaxAttempts int
	// RetryBackoff is about the wait before a failed segment's first
	// retry; the wait doubles per attempt, never exceeding
	// RetryBackoffCeiling (32) × RetryBackoff, and each wait is drawn at
	// random within ±50 % of its nominal value (wait.Backoff), so that
	// daemons whose segments failed together do not retry together.
	// Default DefaultRetryBackoff (1s).
	RetryBackoff time.Duration
	// LeaseTTL is how long a segment lease lives without renewal; a crashed
	// owner's segments are free again after it. Renewed every LeaseTTL/3.
	// Default DefaultLeaseTTL (2m).
	LeaseTTL time.Duration
	// LeaseWait bounds how long Run waits for a segment that another owner
	// keeps leased without finishing it (a stuck or leaked process that
	// renews its lease forever). While a segment is refused, Run polls it
	// every min(LeaseTTL/4, 5s) without counting attempts; once it has been
	// refused continuously for longer than LeaseWait, every further refusal
	// counts as a failed attempt (an error wrapping [ErrSegmentLeased] that
	// names the segment and, when the ProgressStore is a [LeaseInspector],
	// the lease's owner), retried after RetryBackoff like any failure. So
	// after MaxAttempts such attempts the segment is given up and Run ends
	// with ErrIncomplete, about LeaseWait plus the retry backoffs after the
	// segment was first refused. A healthy owner that needs longer than
	// LeaseWait for one segment makes this Run report the segment failed;
	// that owner still finishes and records it. Dry runs take no leases and
	// never wait. Default DefaultLeaseWaitFactor (10) × LeaseTTL.
	LeaseWait time.Duration
	// Owner names this process in leases. A stable name lets a restarted
	// process take its own leases back at once. Default "hostname-pid".
	Owner string
	// DryRun reports what differs and writes nothing: no repairs, no
	// progress, no leases.
	DryRun bool
	// Samples is how many divergent rows a report keeps as examples.
	// Default DefaultSamples (10).
	Samples int
	// Progress persists runs and leases. Default: a new MemProgress (no
	// persistence across processes).
	Progress ProgressStore
	// MaxRunAge is how old an unfinished run may be and still be resumed.
	// An older one is abandoned and a new run starts: a complete run only
	// proves that deletes older than its start reached every region, so a
	// run that started long ago cannot show a recent full repair however
	// late it finishes. Default: half the namespace's tombstone retention
	// (half of schema.DefaultRetention when no table records one).
	MaxRunAge time.Duration
	// Fresh abandons the namespace's unfinished run, whatever its age, and
	// starts a new one (with Segments). Not used by dry runs.
	Fresh bool
	// Now is the clock that ages unfinished runs and stamps finished ones;
	// nil means time.Now.
	Now func() time.Time
	// Metrics, if not nil, receives counts and durations.
	Metrics *Metrics
	// Logger receives progress and errors; nil discards them.
	Logger *slog.Logger
	// OnProgress, if set, is called after every segment attempt, from one
	// goroutine at a time.
	OnProgress func(Progress)
	// OnRun, if set, is called once Run has joined or created its run,
	// before any segment is repaired.
	OnRun func(RunInfo)
	// Control, if not nil, steers the run (pause, resume, abort, tuning;
	// see [Control]); nil gives each Run a Control of its own, still
	// steered by the store's Directive.
	Control *Control
	// ControlPoll is how often Run reads its run's Directive when the
	// ProgressStore is a [ControlStore]. Default DefaultControlPoll (1s).
	ControlPoll time.Duration
	// Scope, when partial, limits the run to a token range and/or some
	// regions (see [Scope]). Not a full repair.
	Scope Scope
	// Since, when > 0, makes the run incremental: in each segment it
	// compares, through the version index, only the rows whose version
	// (µs) is at least Since, and compares the segment in full only when
	// they differ. Set it to a convergence watermark every region has
	// reached (the least of the published ones): below it the watermark
	// vouches that the regions hold the same versions of every write a
	// store made, so what remains to compare is the writes not yet
	// settled everywhere (docs/design.md, "Incremental repair"). An
	// incremental run is not a full repair: damage no store wrote (a lost
	// disk, a write from outside Tidemark) waits for the next full run,
	// and it does not move the last full repair. Every region must be an
	// [IncrementalFingerprinter], fingerprints enabled. Its progress key
	// is IncrementalKey(namespace). Default 0 (a full run).
	Since int64
	// SegmentTimeout abandons a segment attempt that makes no progress
	// for this long (a scan or write that hangs): the attempt fails with
	// ErrSegmentTimeout and is retried. Time paused or throttled does not
	// count. Default DefaultSegmentTimeout (5m).
	SegmentTimeout time.Duration
	// SplitAfter splits a failing range into SplitInto pieces after this
	// many consecutive failed attempts, during the run (pieces are
	// repaired one after another under the segment's lease, and the
	// segment is done when every piece is), down to MaxSplitDepth levels.
	// Attempts that finish a piece do not count towards MaxAttempts.
	// Default DefaultSplitAfter (2); negative disables splitting.
	SplitAfter int
	// Conflicts configures conflict detection (docs/repair.md,
	// "Conflicts"): a divergent row whose losing live version — a value or
	// a deletion marker — was written by another writer within
	// Conflicts.Window of the winner is recorded in the conflict log and
	// counted (tidemark_conflicts_total). On by default (not in dry
	// runs); Conflicts.Disabled turns it off. Bad values fail New.
	Conflicts ConflictConfig
	// DisableFingerprints turns segment fingerprints off: every segment is
	// digest-scanned, as before they existed. By default, when every
	// region's Reader is a Fingerprinter, a segment is first compared by
	// its fingerprints (docs/repair.md, "Fingerprints").
	DisableFingerprints bool
	// FingerprintFanout is how many parts a range whose fingerprints differ
	// is split into. Default DefaultFingerprintFanout (4).
	FingerprintFanout int
	// FingerprintLeafRows: a differing range of at most this many rows (in
	// the region holding most) is digest-scanned, not split. Default
	// DefaultFingerprintLeafRows (16).
	FingerprintLeafRows int64
	// FingerprintMaxDepth bounds the levels of splitting below a segment;
	// ranges still differing there are digest-scanned. Default
	// DefaultFingerprintMaxDepth (16).
	FingerprintMaxDepth int
	// ConflictSink is where conflicts are recorded. Default: the conflict
	// table (tidemark_conflicts, created when a run starts) in the keyspace of
	// the first region whose Writer is a *CQLRegion; with no such region
	// (in-memory regions) and no sink, nothing is recorded.
	ConflictSink ConflictSink
}

func (o *Options) setDefaults() {
	setDefault(&o.Segments, DefaultSegments)
	setDefault(&o.PageSize, DefaultPageSize)
	if o.Intensity <= 0 || o.Intensity > 1 {
		o.Intensity = DefaultIntensity
	}
	setDefault(&o.Parallelism, DefaultParallelism)
	setDefault(&o.Concurrency, DefaultConcurrency)
	setDefault(&o.MaxAttempts, DefaultMaxAttempts)
	setDefault(&o.RetryBackoff, DefaultRetryBackoff)
	setDefault(&o.LeaseTTL, DefaultLeaseTTL)
	setDefault(&o.LeaseWait, DefaultLeaseWaitFactor*o.LeaseTTL)
	setDefault(&o.Samples, DefaultSamples)
	setDefault(&o.ControlPoll, DefaultControlPoll)
	setDefault(&o.SegmentTimeout, DefaultSegmentTimeout)
	setDefault(&o.FingerprintFanout, DefaultFingerprintFanout)
	o.FingerprintFanout = max(o.FingerprintFanout, 2)
	setDefault(&o.FingerprintMaxDepth, DefaultFingerprintMaxDepth)
	if o.FingerprintLeafRows <= 0 {
		o.FingerprintLeafRows = DefaultFingerprintLeafRows
	}
	if o.SplitAfter == 0 {
		o.SplitAfter = DefaultSplitAfter
	}
	if o.Owner == "" {
		h, _ := os.Hostname()
		o.Owner = h + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// setDefault sets *v to def when it is zero or negative.
func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
