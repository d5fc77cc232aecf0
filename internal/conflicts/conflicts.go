// Package conflicts is the conflict log: the one place where a detector
// (anti-entropy repair, a store's read repair) that sees two versions of a
// row made by different writers within the conflict window
// (quorum.Conflicting) records the version last-write-wins dropped, counts
// it, and bounds how many it writes (docs/repair.md, "Conflicts").
//
// A Log judges and records; a Sink stores records (CQL in a region's
// keyspace, the table of internal/schema, or Memory in tests); a Source
// lists them. store and repair each own one Log, made with New.
package conflicts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/internal/metrics"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
)

// Who detected a conflict (Record.DetectedBy, the detected_by label).
const (
	// ByRepair: anti-entropy repair (repair.Repairer).
	ByRepair = "repair"
	// ByReadRepair: a Store's read repair after a multi-region Get.
	ByReadRepair = "read_repair"
)

// Defaults of the Config fields left zero.
const (
	// DefaultWindow is the default Config.Window (1 minute: the writers'
	// clock-skew bound, store.DefaultMaxClockDrift).
	DefaultWindow = quorum.DefaultConflictWindow
	// DefaultTTL is the default Config.TTL (7 days).
	DefaultTTL = schema.DefaultConflictTTL
	// DefaultPerSecond is the default Config.PerSecond: records one
	// process writes per second at most, on average.
	DefaultPerSecond = 20
	// DefaultBurst is the default Config.Burst.
	DefaultBurst = 100
)

// Side is one of the two versions of a conflict.
type Side struct {
	// Timestamp is the version's write timestamp (µs since the epoch).
	Timestamp int64
	// Writer is the writer id the timestamp carries (quorum.WriterOf).
	Writer int
	// Deleted marks a deletion marker.
	Deleted bool
}

// Time returns the version's timestamp as a time.
func (s Side) Time() time.Time { return time.UnixMicro(s.Timestamp) }

// Record is one conflict: the version of row (PK, CK) of Namespace that
// won (and every region holds, or will, after the repair) and the version
// that lost, held by LoserRegion when it was detected. No values are kept.
type Record struct {
	Namespace string
	PK, CK    []byte
	Winner    Side
	Loser     Side
	// LoserRegion is the region that held the losing version (the first
	// of them, when several did).
	LoserRegion string
	// DetectedBy is ByRepair or ByReadRepair.
	DetectedBy string
	// DetectedAt is when it was detected (millisecond precision once
	// stored).
	DetectedAt time.Time
}

// String returns a one-line description, for logs and failing tests.
func (r Record) String() string {
	kind := func(s Side) string {
		if s.Deleted {
			return "delete"
		}
		return "put"
	}
	return fmt.Sprintf("%s pk=%x ck=%x: winner %s ts=%d writer=%d, loser %s ts=%d writer=%d in %s (%s at %s)",
		r.Namespace, r.PK, r.CK, kind(r.Winner), r.Winner.Timestamp, r.Winner.Writer,
		kind(r.Loser), r.Loser.Timestamp, r.Loser.Writer, r.LoserRegion, r.DetectedBy, r.DetectedAt.UTC().Format(time.RFC3339Nano))
}

// Sink stores conflict records.
type Sink interface {
	// WriteConflict stores r, to be kept for ttl.
	WriteConflict(ctx context.Context, r Record, ttl time.Duration) error
}

// Query selects records of one namespace by the time of the winning
// write.
type Query struct {
	// Since and Until bound the winning write's time: Since <= t < Until.
	// Zero Since means DefaultTTL before Until; zero Until means now.
	Since, Until time.Time
	// Limit is the most records returned, newest winning write first;
	// 0 means DefaultListLimit.
	Limit int
}

// DefaultListLimit is the default Query.Limit.
const DefaultListLimit = 1000

// ErrInvalidQuery reports a Query that cannot be answered.
var ErrInvalidQuery = errors.New("conflicts: invalid query")

// Resolve returns q with its defaults filled in at now, or an error
// wrapping ErrInvalidQuery.
func (q Query) Resolve(now time.Time) (Query, error) {
	if q.Until.IsZero() {
		q.Until = now
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-DefaultTTL)
	}
	if q.Limit == 0 {
		q.Limit = DefaultListLimit
	}
	switch {
	case q.Limit < 0:
		return q, fmt.Errorf("%w: negative limit %d", ErrInvalidQuery, q.Limit)
	case !q.Since.Before(q.Until):
		return q, fmt.Errorf("%w: since %s is not before until %s", ErrInvalidQuery, q.Since.UTC().Format(time.RFC3339), q.Until.UTC().Format(time.RFC3339))
	case q.Until.Sub(q.Since) > 4*DefaultTTL:
		return q, fmt.Errorf("%w: the range %s to %s spans more than %v (records live %v by default)", ErrInvalidQuery,
			q.Since.UTC().Format(time.RFC3339), q.Until.UTC().Format(time.RFC3339), 4*DefaultTTL, DefaultTTL)
	}
	return q, nil
}

// Source lists conflict records.
type Source interface {
	// ListConflicts returns the records of namespace that q selects.
	ListConflicts(ctx context.Context, namespace string, q Query) ([]Record, error)
}

// Config configures a Log. The zero value records with the defaults.
type Config struct {
	// Disabled turns detection and recording off.
	Disabled bool
	// Window is how far apart two versions by different writers may be
	// and still conflict (quorum.Conflicting). Default DefaultWindow (1m);
	// set it to the bound on the writers' clock skew.
	Window time.Duration
	// TTL is how long a record is kept. Default DefaultTTL (7 days).
	TTL time.Duration
	// PerSecond and Burst bound the records this process writes (a
	// token bucket, golang.org/x/time/rate): conflicts beyond are
	// counted (tidemark_conflicts_dropped_total{reason="rate_limited"})
	// and not written, so a storm of conflicts cannot load the cluster.
	// Defaults DefaultPerSecond (20) and DefaultBurst (100).
	PerSecond float64
	Burst     int
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.PerSecond == 0 {
		c.PerSecond = DefaultPerSecond
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	return c
}

// Validate returns what is wrong with c (after WithDefaults), one message
// per problem, or nil.
func (c Config) Validate() []string {
	var bad []string
	if c.Window < 0 {
		bad = append(bad, fmt.Sprintf("conflict window %v is negative", c.Window))
	}
	if c.TTL < time.Second || c.TTL > 20*365*24*time.Hour {
		bad = append(bad, fmt.Sprintf("conflict record TTL %v is not between 1s and 20 years", c.TTL))
	}
	if c.PerSecond < 0 {
		bad = append(bad, fmt.Sprintf("conflict records per second %v is negative", c.PerSecond))
	}
	if c.Burst < 0 {
		bad = append(bad, fmt.Sprintf("conflict record burst %d is negative", c.Burst))
	}
	return bad
}

// Counters are one detector's conflict metrics; store.Metrics (read
// repair) and repair.Metrics (repair) each include one. The detector is a
// constant label, so that a Store's and a Repairer's metrics can share a
// registry: tidemark_conflicts_total{detected_by,namespace} and
// tidemark_conflicts_dropped_total{detected_by,namespace,reason}.
type Counters struct {
	by       string
	recorded *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

// NewCounters makes the counters of detector by (ByRepair, ByReadRepair).
func NewCounters(by string) *Counters {
	cl := prometheus.Labels{"detected_by": by}
	return &Counters{
		by: by,
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_conflicts_total", ConstLabels: cl,
			Help: "Conflicts detected: a version LWW dropped that another writer wrote within the conflict window, per detector (repair, read_repair) and namespace. Includes those dropped from the log."},
			[]string{"namespace"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_conflicts_dropped_total", ConstLabels: cl,
			Help: "Conflicts detected but not written to the conflict log, per detector, namespace and reason (rate_limited, write_failed)."},
			[]string{"namespace", "reason"}),
	}
}

// Collectors returns the counters, for a metrics type's collector set.
func (c *Counters) Collectors() metrics.Set { return metrics.Set{c.recorded, c.dropped} }

// Log detects conflicts and records them in a Sink. A nil *Log detects
// nothing. It is safe for concurrent use.
type Log struct {
	by       string
	sink     Sink
	cfg      Config
	lim      *rate.Limiter
	counters *Counters
	log      *slog.Logger
	warn     *rate.Sometimes
	now      func() time.Time
}

// New returns the Log of detector by (ByRepair, ByReadRepair), recording
// in sink with cfg (defaults filled in), counting in counters (nil: not
// counted; they must be by's) and logging write failures to logger (nil:
// discarded). It returns nil when cfg.Disabled or sink is nil: nothing is
// detected. now is the clock of DetectedAt (nil: time.Now).
func New(by string, sink Sink, cfg Config, counters *Counters, logger *slog.Logger, now func() time.Time) *Log {
	if cfg.Disabled || sink == nil {
		return nil
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Log{by: by, sink: sink, cfg: cfg, lim: rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst),
		counters: counters, log: logger, warn: &rate.Sometimes{Interval: 10 * time.Second}, now: now}
}

// Window returns the conflict window the Log judges with (0 for nil).
func (l *Log) Window() time.Duration {
	if l == nil {
		return 0
	}
	return l.cfg.Window
}

// Observe judges a row's loser against its winner (quorum.Conflicting
// over the Log's window) and, when they conflict, counts the conflict and
// writes its record, unless the rate limit is spent (counted as dropped).
// It reports whether they conflict. The record is written synchronously,
// bounded by ctx; a failed write is counted and logged, never returned.
func (l *Log) Observe(ctx context.Context, namespace string, pk, ck []byte, winner, loser quorum.Version, loserRegion string) bool {
	if l == nil || !quorum.Conflicting(winner, loser, l.cfg.Window) {
		return false
	}
	if l.counters != nil {
		l.counters.recorded.WithLabelValues(namespace).Inc()
	}
	if !l.lim.Allow() {
		l.drop(namespace, "rate_limited")
		return true
	}
	r := Record{Namespace: namespace, PK: pk, CK: ck,
		Winner:      Side{Timestamp: winner.Timestamp, Writer: quorum.WriterOf(winner.Timestamp), Deleted: winner.Deleted},
		Loser:       Side{Timestamp: loser.Timestamp, Writer: quorum.WriterOf(loser.Timestamp), Deleted: loser.Deleted},
		LoserRegion: loserRegion, DetectedBy: l.by, DetectedAt: l.now()}
	if err := l.sink.WriteConflict(ctx, r, l.cfg.TTL); err != nil {
		l.drop(namespace, "write_failed")
		l.warn.Do(func() {
			l.log.Warn("conflicts: could not record a conflict (counted in tidemark_conflicts_dropped_total)",
				"namespace", namespace, "detected_by", l.by, "err", err)
		})
	}
	return true
}

func (l *Log) drop(namespace, reason string) {
	if l.counters != nil {
		l.counters.dropped.WithLabelValues(namespace, reason).Inc()
	}
}
