package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Defaults for the Config fields left zero.
const (
	// DefaultTimeout is the default Config.Timeout.
	DefaultTimeout = 5 * time.Second
	// DefaultConnectTimeout is the default Config.ConnectTimeout.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxValueSize is the default Config.MaxValueSize (1 MiB). The
	// default size of a hint record (record.DefaultMaxHintBytes) fits a row
	// with a value this large and both keys at their limits.
	DefaultMaxValueSize = schema.DefaultMaxValueSize
	// DefaultMaxBatchBytes is the default Config.MaxBatchBytes (4 MiB).
	DefaultMaxBatchBytes = 4 << 20
	// DefaultRemoteConcurrency is the default Config.RemoteConcurrency.
	DefaultRemoteConcurrency = 128
	// DefaultQueueWait is the default Config.QueueWait.
	DefaultQueueWait = 250 * time.Millisecond
	// DefaultMaxPendingWrites is the default Config.MaxPendingWrites.
	DefaultMaxPendingWrites = 4096
	// DefaultMaxPendingBytes is the default Config.MaxPendingBytes (64 MiB).
	DefaultMaxPendingBytes = 64 << 20
	// DefaultHintConcurrency is the default Config.HintConcurrency.
	DefaultHintConcurrency = 64
	// DefaultMaxPendingHints is the default Config.MaxPendingHints.
	DefaultMaxPendingHints = 16384
	// DefaultMaxPendingDebt is the default Config.MaxPendingDebt.
	DefaultMaxPendingDebt = 16384
	// DefaultHintTimeout is the default Config.HintTimeout.
	DefaultHintTimeout = 5 * time.Second
	// DefaultMaxClockDrift is the default Config.MaxClockDrift.
	DefaultMaxClockDrift = time.Minute
	// DefaultReplicationFactor is the default RegionConfig.ReplicationFactor.
	DefaultReplicationFactor = 3
	// DefaultBreakerFailures is the default BreakerConfig.ConsecutiveFailures.
	DefaultBreakerFailures = 5
	// DefaultBreakerOpenTimeout is the default BreakerConfig.OpenTimeout.
	DefaultBreakerOpenTimeout = 5 * time.Second
	// DefaultBreakerHalfOpenRequests is the default
	// BreakerConfig.HalfOpenRequests.
	DefaultBreakerHalfOpenRequests = 1
	// cassandraMaxTTL is Cassandra's maximum TTL (20 years).
	cassandraMaxTTL = schema.MaxTTL + time.Second
	// maxTTL is the longest WithTTL and WithRetention (schema.MaxTTL).
	maxTTL = schema.MaxTTL
)

// Config configures a Store. Only Regions, Home and Keyspace are required;
// every other zero field takes the default its comment names.
type Config struct {
	// Regions lists every region, each its own Cassandra cluster (or data
	// center). Names must be unique. Required.
	Regions []RegionConfig

	// Home is the name of this process's home region, one of Regions. Local
	// levels read and wait on the home region only. Required.
	Home string

	// Keyspace is the keyspace holding every namespace's table, the same in
	// every region. It must match [a-z][a-z0-9_]{0,47}. Required.
	Keyspace string

	// CreateKeyspace makes Open create the keyspace in each region (if it
	// does not exist) with NetworkTopologyStrategy and the region's
	// ReplicationFactor in its LocalDC. Default false: operators usually
	// create keyspaces themselves.
	CreateKeyspace bool

	// DefaultLevel is the consistency level of calls that do not pass
	// WithConsistency. Default quorum.LocalQuorum.
	DefaultLevel quorum.Level

	// Timeout bounds each call's wait for its regions, and each region
	// request, unless the call passes WithTimeout. Default 5s. Background
	// writes to the other regions also use it.
	Timeout time.Duration

	// ConnectTimeout bounds connecting to each region in Open. Default 10s.
	ConnectTimeout time.Duration

	// MaxValueSize is the largest value Put accepts, in bytes. Default
	// 1 MiB. Larger values make large Cassandra mutations, slow hints and
	// slow repair; store big blobs elsewhere and keep a reference here.
	MaxValueSize int

	// MaxBatchBytes bounds the total keys and values of one PutBatch.
	// Default 4 MiB (Cassandra rejects mutations above half its commit log
	// segment, 16 MiB by default).
	MaxBatchBytes int

	// RemoteConcurrency is how many background region writes (asynchronous
	// regions, late synchronous regions, read repairs) run at once. Default
	// 128: enough for the remote regions to keep up with what the home
	// region accepts (a region's driver multiplexes them over a few
	// connections). Higher drains a backlog faster at the cost of memory.
	RemoteConcurrency int

	// QueueWait is how long a write to a healthy remote region waits for
	// room when the background queue is full, before it becomes a hint:
	// backpressure that slows the caller a little rather than hinting
	// under load (hints are for regions that fail). Default 250ms: on
	// the local environment a burst at the home region's full rate then
	// hints nothing (50ms hinted 58 of 67,000 remote writes: a remote
	// region's pauses outlast it); it is also the most a call is slowed by
	// a healthy but overloaded region. A negative value never waits. A
	// region that is not connected or whose breaker is open never waits:
	// its share of the write goes to the hint pool at once.
	QueueWait time.Duration

	// MaxPendingWrites bounds how many background writes may wait for a
	// worker. Default 4096. When the queue is full, a remote write waits
	// at most QueueWait for room and then becomes a hint (and a read repair
	// is dropped, left to anti-entropy repair), so memory stays bounded and
	// callers are never blocked for long by a slow remote region.
	MaxPendingWrites int

	// MaxPendingBytes bounds the keys and values held by waiting background
	// writes. Default 64 MiB. Overflow is handled as for MaxPendingWrites.
	MaxPendingBytes int64

	// HintTimeout bounds one call to the hint sink. Default 5s.
	HintTimeout time.Duration

	// HintConcurrency is how many hints of background writes are stored at
	// once (default 64): a remote write that fails, or meets an open
	// breaker or an unconnected region, queues its hint for one of these
	// workers, so that neither the remote-write workers nor callers wait
	// for the hint sink. Durable hint sinks (Kafka with acks=all) batch
	// better the more hints wait at once.
	HintConcurrency int

	// MaxPendingHints bounds the hints waiting for a hint worker (default
	// 16384; their keys and values are bounded by MaxPendingBytes too). It
	// absorbs a burst and a slow sink (the first hints to a new topic wait
	// for the topic); when it is full — the sink hanging for long — a
	// missed write is left to anti-entropy repair at once and counted
	// (hints_failed_total{reason="pool_full"}), so no caller waits.
	MaxPendingHints int

	// MaxPendingDebt bounds the repair debt entries waiting to be written
	// to the home region (docs/repair.md, "Repair debt"): every missed
	// write that no hint will bring its region — counted in
	// hints_failed_total or hints_uncertain_total — is recorded there so
	// that repaird repairs that key within seconds. Default 16384. An
	// entry that does not fit, or cannot be written, is counted
	// (debt_overflow_total) and the namespace gets an overflow entry, for
	// which repaird runs a full repair. Negative: no debt is recorded.
	MaxPendingDebt int

	// MaxClockDrift is how far ahead of this process's wall clock a version
	// read from another writer may be and still advance this process's
	// hybrid logical clock. Default 1 minute. Versions further ahead are
	// still returned but do not move the clock.
	MaxClockDrift time.Duration

	// WriterID makes this process's timestamps unique among writers: the
	// lowest WriterIDBits bits of every timestamp it issues are this id, so
	// two processes with different ids never issue the same timestamp and
	// their writes never tie (docs/design.md, "The clock"). 1 to
	// MaxWriterID (63); give each process writing the keyspace its own.
	// Default 0: a random id is drawn at Open and logged (two processes
	// that draw the same one can tie; ties are still resolved exactly as
	// Cassandra resolves them).
	WriterID int

	// Breaker configures the per-region circuit breakers.
	Breaker BreakerConfig

	// Conflicts configures conflict detection in read repair
	// (docs/repair.md, "Conflicts"): when a multi-region Get finds that a
	// region's live version — a value or a deletion marker — lost to a
	// version another writer made within Conflicts.Window of it, the
	// losing version is recorded in the conflict log and counted
	// (tidemark_conflicts_total). On by default; Conflicts.Disabled turns
	// it off. Conflicts.Window defaults to MaxClockDrift; the record TTL
	// to 7 days; at most Conflicts.PerSecond records a second (default
	// 20, bursts of Conflicts.Burst, 100) are written by this Store, the
	// rest counted as dropped.
	Conflicts ConflictConfig

	// Watermark configures the Store's part in the convergence watermark
	// (docs/design.md, "The convergence watermark"): with a HintSink that
	// is also a HeartbeatSink (hints.Producer), the Store registers itself
	// in every region and heartbeats each region's hint topic every
	// Watermark.Interval (default 500ms), so that repaird can say up to
	// which version each region holds every write. See WatermarkConfig.
	Watermark WatermarkConfig

	// ConflictSink is where read repair records conflicts. Default: the
	// conflict table (tidemark_conflicts, created by CreateNamespace) in the
	// home region's keyspace, through the default CQL executor; with
	// NewExecutor set and no ConflictSink, nothing is recorded.
	ConflictSink ConflictSink

	// Logger receives the Store's logs. Default: discard.
	Logger *slog.Logger

	// HintSink receives the writes that regions missed. Default: a sink
	// that stores nothing, logs a warning and counts each missed write as
	// left to repair (see ErrNoHintSink). Production deployments use the
	// Kafka producer from package hints.
	HintSink HintSink

	// NewExecutor makes each region's executor (package store/driver).
	// Default: CQL over one gocql session per region, restricted to the
	// region's data center. Tests and simulations set it, for example to
	// driver.MemoryFactory.
	NewExecutor driver.Factory

	// Now is the wall clock the hybrid logical clock and TTL arithmetic
	// read. Default time.Now. Tests set it to simulate clock skew.
	Now func() time.Time

	// ConfigureCQL, when set, adjusts the gocql cluster configuration of
	// each region before the default executor connects to it (it is not
	// called when NewExecutor is set): observers for tracing and per-query
	// metrics (QueryObserver, BatchObserver, ConnectObserver), retry and
	// speculative-execution policies, compression, an authenticator other
	// than a password. It runs after Tidemark's own settings; it must keep
	// the host selection policy and host filter, which keep a region's
	// traffic inside its data center (and behind a proxy in front of it).
	//
	// Retries: every statement the store sends is marked idempotent — each
	// write carries its own timestamp (USING TIMESTAMP), so running it twice
	// writes the same cells, and reads change nothing — so a RetryPolicy or
	// a SpeculativeExecutionPolicy the driver applies to idempotent
	// statements is safe for all of them. Tidemark sets none (0 retries):
	// a region that fails is hinted and, for calls that wait on it, counted
	// against its breaker; a retry policy trades that fast failure for a
	// chance to ride out a blip. Default nil.
	ConfigureCQL func(region string, c *gocql.ClusterConfig)
}

// RegionConfig describes how to reach one region.
type RegionConfig struct {
	// Name is the region's name, used in hints, errors and metrics.
	// Required; unique within Config.Regions.
	Name string
	// ContactPoints are "host" or "host:port" addresses of some of the
	// region's nodes. Required.
	ContactPoints []string
	// LocalDC is the region's Cassandra data center. The session talks only
	// to nodes in it. Required when CreateKeyspace is set (it names the data
	// center in the replication settings).
	LocalDC string
	// Username and Password enable password authentication when Username is
	// set.
	Username, Password string
	// TLS, when non-nil, is used for every connection to the region.
	TLS *tls.Config
	// AddressMap rewrites "ip:port" addresses that nodes announce to the
	// "ip:port" the client dials (NAT, proxies).
	AddressMap map[string]string
	// ReplicationFactor is used by CreateKeyspace. Default 3.
	ReplicationFactor int
	// NumConns is the number of connections per node. Default: the
	// driver's (2).
	NumConns int
}

// BreakerConfig configures the circuit breaker of each region. A region's
// breaker opens after ConsecutiveFailures availability failures in a row
// (timeouts, unavailable replicas, connection errors; not validation errors
// or ErrNotFound). While open, the region is not waited on: its writes
// become hints at once and reads skip it. After OpenTimeout the breaker lets
// HalfOpenRequests requests through as probes; if they succeed the region is
// used again.
type BreakerConfig struct {
	// Disabled turns the breakers off: every request goes to its region.
	Disabled bool
	// ConsecutiveFailures opens the breaker. Default
	// DefaultBreakerFailures (5). Lower sheds a dead
	// region faster but can trip on a brief blip.
	ConsecutiveFailures uint32
	// OpenTimeout is how long the breaker stays open before probing.
	// Default DefaultBreakerOpenTimeout (5s). Shorter brings a healed region back sooner but sends more
	// probes to a dead one.
	OpenTimeout time.Duration
	// HalfOpenRequests is how many probe requests may run while half open.
	// Default DefaultBreakerHalfOpenRequests (1).
	HalfOpenRequests uint32
}

// withDefaults returns c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.DefaultLevel == 0 {
		c.DefaultLevel = quorum.LocalQuorum
	}
	c.Timeout = orDuration(c.Timeout, DefaultTimeout)
	c.ConnectTimeout = orDuration(c.ConnectTimeout, DefaultConnectTimeout)
	c.HintTimeout = orDuration(c.HintTimeout, DefaultHintTimeout)
	c.HintConcurrency = orInt(c.HintConcurrency, DefaultHintConcurrency)
	c.MaxPendingHints = orInt(c.MaxPendingHints, DefaultMaxPendingHints)
	c.MaxPendingDebt = orInt(c.MaxPendingDebt, DefaultMaxPendingDebt)
	c.MaxClockDrift = orDuration(c.MaxClockDrift, DefaultMaxClockDrift)
	c.MaxValueSize = orInt(c.MaxValueSize, DefaultMaxValueSize)
	c.MaxBatchBytes = orInt(c.MaxBatchBytes, DefaultMaxBatchBytes)
	c.RemoteConcurrency = orInt(c.RemoteConcurrency, DefaultRemoteConcurrency)
	c.MaxPendingWrites = orInt(c.MaxPendingWrites, DefaultMaxPendingWrites)
	c.QueueWait = orDuration(c.QueueWait, DefaultQueueWait)
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	c.Watermark.Interval = orDuration(c.Watermark.Interval, DefaultHeartbeatInterval)
	c.Watermark.RegistrationTTL = orDuration(c.Watermark.RegistrationTTL, DefaultRegistrationTTL)
	if c.Conflicts.Window == 0 {
		c.Conflicts.Window = c.MaxClockDrift
	}
	c.Conflicts = c.Conflicts.WithDefaults()
	if c.Breaker.ConsecutiveFailures == 0 {
		c.Breaker.ConsecutiveFailures = DefaultBreakerFailures
	}
	c.Breaker.OpenTimeout = orDuration(c.Breaker.OpenTimeout, DefaultBreakerOpenTimeout)
	if c.Breaker.HalfOpenRequests == 0 {
		c.Breaker.HalfOpenRequests = DefaultBreakerHalfOpenRequests
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HintSink == nil {
		c.HintSink = discardSink{log: c.Logger}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.WriterID == 0 {
		c.WriterID = 1 + rand.IntN(MaxWriterID)
		c.Logger.LogAttrs(context.Background(), slog.LevelInfo, "store: drew a writer id (set Config.WriterID to choose one)",
			slog.Int("writer_id", c.WriterID))
	}
	regions := make([]RegionConfig, len(c.Regions))
	copy(regions, c.Regions)
	for i := range regions {
		if regions[i].ReplicationFactor == 0 {
			regions[i].ReplicationFactor = DefaultReplicationFactor
		}
	}
	c.Regions = regions
	return c
}

// validate checks a Config with defaults applied. Every problem found is
// reported, joined, each wrapping ErrInvalidConfig.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(c.Regions) == 0 {
		bad("no regions: list at least the home region in Config.Regions")
	}
	seen := make(map[string]bool, len(c.Regions))
	for i, r := range c.Regions {
		switch {
		case r.Name == "":
			bad("region %d has no name", i)
		case seen[r.Name]:
			bad("region %q is listed twice", r.Name)
		}
		seen[r.Name] = true
		if len(r.ContactPoints) == 0 {
			bad("region %q has no contact points", r.Name)
		}
		if c.CreateKeyspace && r.LocalDC == "" {
			bad("region %q has no LocalDC, which CreateKeyspace needs to name the data center", r.Name)
		}
		if r.ReplicationFactor < 0 {
			bad("region %q: negative replication factor %d", r.Name, r.ReplicationFactor)
		}
	}
	if c.Home == "" {
		bad("no home region: set Config.Home to one of the region names")
	} else if !seen[c.Home] {
		bad("home region %q is not one of the regions %v", c.Home, regionNames(c.Regions))
	}
	if err := schema.ValidateName("keyspace", c.Keyspace); err != nil {
		bad("%w", err)
	}
	if !c.DefaultLevel.Valid() {
		bad("default level: %w: %v", ErrInvalidLevel, c.DefaultLevel)
	}
	if c.MaxValueSize < 0 || c.MaxBatchBytes < 0 || c.RemoteConcurrency < 0 || c.MaxPendingWrites < 0 ||
		c.HintConcurrency < 0 || c.MaxPendingHints < 0 {
		bad("negative size or count limit")
	}
	if c.Timeout < 0 || c.ConnectTimeout < 0 || c.HintTimeout < 0 {
		bad("negative timeout")
	}
	if c.MaxClockDrift < 0 || c.Breaker.OpenTimeout < 0 {
		bad("negative MaxClockDrift or Breaker.OpenTimeout")
	}
	if !c.Watermark.Disabled {
		if c.Watermark.Interval < 0 {
			bad("Watermark.Interval %v is negative", c.Watermark.Interval)
		}
		if ttl := c.Watermark.RegistrationTTL; ttl < MinRegistrationTTL || ttl > MaxRegistrationTTL {
			bad("Watermark.RegistrationTTL %v is not in [%v, %v] (refreshed every sixth of it, at least a second apart, the registration must outlive its refreshes)",
				ttl, MinRegistrationTTL, MaxRegistrationTTL)
		}
	}
	if c.WriterID < 1 || c.WriterID > MaxWriterID {
		bad("writer id %d is not in [1, %d] (leave Config.WriterID 0 to draw one)", c.WriterID, MaxWriterID)
	}
	for _, msg := range c.Conflicts.Validate() {
		bad("Config.Conflicts: %s", msg)
	}
	return errors.Join(errs...)
}

func regionNames(rs []RegionConfig) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}
