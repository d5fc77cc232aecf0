package hints

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
)

// Defaults for the ReplayerConfig fields left zero.
const (
	// DefaultReplayBatchSize is the default ReplayerConfig.BatchSize.
	DefaultReplayBatchSize = 1024
	// DefaultReplayConcurrency is the default ReplayerConfig.Concurrency.
	DefaultReplayConcurrency = 16
	// DefaultMaxBatchBytes is the default ReplayerConfig.MaxBatchBytes
	// (16 MiB).
	DefaultMaxBatchBytes = 16 << 20
	// DefaultBackoffMin is the default ReplayerConfig.BackoffMin.
	DefaultBackoffMin = 100 * time.Millisecond
	// DefaultBackoffMax is the default ReplayerConfig.BackoffMax.
	DefaultBackoffMax = 30 * time.Second
	// DefaultMaxHintAttempts is the default ReplayerConfig.MaxHintAttempts.
	DefaultMaxHintAttempts = 10
)

// ReplayerCloseTimeout bounds each wait of a replayer's shutdown on Kafka
// or on Run. kafka-go's Reader.Close can block for a long time, or forever,
// during a rebalance or after a lost connection, and its Writer.Close waits
// for every queued batch. So:
//
//   - after its context is done, Run waits at most ReplayerCloseTimeout for
//     the Kafka reader to close; past that it logs a warning naming the
//     topic and consumer group, abandons the reader and returns;
//   - [Replayer.Close] waits at most ReplayerCloseTimeout for Run to return
//     and then at most ReplayerCloseTimeout for the dead-letter writer to
//     close, so it returns within twice this.
//
// What is abandoned finishes in its own goroutine whenever kafka-go
// returns; Close reports it with an error wrapping [ErrStillClosing]. It
// equals the bound on one offset commit and on the replayer's topic
// requests, and keeps a stopping replayer within a usual 15–30 s
// termination grace period.
const ReplayerCloseTimeout = 10 * time.Second

// commitTimeout bounds one offset commit, including the last ones Run makes
// after its context is done.
const commitTimeout = 10 * time.Second

// ReplayerConfig configures [NewReplayer]. Zero values pick the documented
// defaults.
type ReplayerConfig struct {
	// Brokers are the "host:port" bootstrap addresses of the Kafka cluster.
	// Required.
	Brokers []string
	// TLS, when non-nil, encrypts every connection to the brokers — the
	// consumer group's, the dead-letter writer's and the topic requests' —
	// and verifies the brokers' certificates with it, as
	// ProducerConfig.TLS does (cloned; an empty ServerName means the
	// broker's address). Default nil: plaintext.
	TLS *tls.Config
	// SASL, when non-nil, authenticates every connection with these
	// credentials (see [SASL]; default mechanism SCRAM-SHA-512). Without
	// TLS it is allowed, but the credentials and the hints cross the
	// network in clear (see ProducerConfig.SASL). Default nil: no SASL.
	// Kafka refusing them does not stop Run (it retries, and logs the
	// cause, which wraps [ErrAuthentication]); [Replayer.EnsureTopics]
	// returns it, for a check at start-up.
	SASL *SASL
	// TopicPrefix must match the producers'. Default DefaultTopicPrefix.
	TopicPrefix string
	// Region is the region this replayer applies hints to; it consumes
	// TopicPrefix + Region. Required.
	Region string
	// GroupID is the Kafka consumer group. Replayers of one region with the
	// same GroupID share the topic's partitions. Default
	// "tidemark-replayer-" + Region.
	GroupID string
	// InstanceID names this replayer among the group's members, stable
	// across its restarts: a host name, a StatefulSet pod name, a
	// repaird's instance. With it, Run first removes from the group the
	// member an earlier incarnation left behind (a process that crashed,
	// whose session has not timed out), so replay resumes as soon as the
	// reader joins instead of after SessionTimeout. Kafka-go has no static
	// membership (group.instance.id); this is its equivalent at start-up.
	// Two live replayers given the same InstanceID are safe — one removes
	// the other once, at its start, and the removed one rejoins — but they
	// cost a rebalance each time one starts. Default "": no removal.
	InstanceID string
	// SessionTimeout is how long the group coordinator waits without a
	// heartbeat before it drops a member and reassigns its partitions:
	// the stall after a replayer crashes without an InstanceID. Default
	// DefaultSessionTimeout (6 s, the least brokers accept by default;
	// raise it if group.min.session.timeout.ms is higher).
	SessionTimeout time.Duration
	// Applier writes a hint into the region. Required.
	Applier Applier
	// Keyring, when set, is used to authenticate every record (see
	// record.KeyringConfig.AcceptUnsigned). Nil accepts any record that decodes.
	Keyring *record.Keyring
	// Retention is the upper bound on a hint's age: a hint older than this
	// — measured from the earlier of its CreatedAt and its Timestamp — is
	// dead-lettered as expired, never applied. The Applier enforces each
	// table's own tombstone retention, which may be shorter
	// (NewCQLApplier reads it from the table). Default
	// schema.DefaultRetention (10 days). It is also the consumer group's
	// offset retention.
	Retention time.Duration
	// DeadLetterTopic receives records that are never applied. Default
	// TopicPrefix + "dead".
	DeadLetterTopic string
	// Debt, when set, records the key of every hint dead-lettered as
	// rejected (the region refused it for good) as repair debt
	// (docs/repair.md, "Repair debt"), once its dead letter is written, so
	// that repaird keeps trying that key and reports it pending; repaird
	// sets it. Expired hints are not debt: a hint older than the retention
	// is covered by the full runs the retention requires, one whose row
	// expired needs nothing. A failure is logged; the dead letter remains.
	Debt DebtRecorder
	// Marks, when set, receives the heartbeats (record.Heartbeat) the
	// replayer has passed, as Marks: once per batch, after every record
	// of the batch was applied or dead-lettered (see [MarkRecorder]).
	// Heartbeats are never applied or dead-lettered; one that does not
	// decode, authenticate (Keyring) or name this Region is skipped and
	// counted. Nil: heartbeats are read, checked and ignored. Marks needs
	// Debt, and with Marks a rejected hint is retried into Debt until it
	// is recorded (replay pauses meanwhile).
	Marks MarkRecorder
	// Partitions and ReplicationFactor are used if the replayer has to
	// create the hint or dead-letter topic. Defaults 8 and -1 (the brokers'
	// default).
	Partitions, ReplicationFactor int
	// MaxHintsPerSecond throttles applies; 0 means no limit.
	MaxHintsPerSecond float64
	// MaxBytesPerSecond throttles applies by record size; 0 means no limit.
	MaxBytesPerSecond int
	// BatchSize is the most records processed (and committed) together.
	// Default DefaultReplayBatchSize (1024). Larger batches amortize the
	// commit round trip.
	BatchSize int
	// MaxBatchBytes stops filling a batch once its records reach this many
	// bytes. Default DefaultMaxBatchBytes (16 MiB). Memory held by a
	// replayer is about two batches (one applying, one committing offsets
	// only) plus 2×256 prefetched records.
	MaxBatchBytes int
	// Concurrency is the most applies in flight. Default
	// DefaultReplayConcurrency (16).
	Concurrency int
	// BackoffMin and BackoffMax bound the exponential back-off, jittered
	// (wait.Backoff: each delay about twice the last, within ±50 %, never
	// above BackoffMax), while the region is unreachable (or Kafka fails),
	// and between the attempts at a hint that fails while the region is
	// reachable. Defaults DefaultBackoffMin (100ms) and DefaultBackoffMax
	// (30s).
	BackoffMin, BackoffMax time.Duration
	// MaxHintAttempts is how many times a hint may fail while the region
	// is reachable — the Applier's Probe of the hint succeeds, or (an
	// Applier without Probe) other hints were applied in the same round or
	// the hint applied last applies again — before it is dead-lettered as
	// rejected with the last error. Failures while the region is
	// unreachable never count: then replay pauses as long as it takes.
	// Default DefaultMaxHintAttempts (10; with the default back-off, about
	// a minute of retries); a
	// negative value never gives up, so one bad hint can stop its
	// partitions.
	MaxHintAttempts int
	// MaxHintBytes is the largest record the producers write
	// (ProducerConfig.MaxHintBytes). It sizes max.message.bytes of the
	// topics the replayer creates and the dead-letter writer's batches.
	// Default record.DefaultMaxHintBytes.
	MaxHintBytes int
	// Logger receives pauses, resumes, dead letters and Kafka errors
	// (rate-limited); nil discards.
	Logger *slog.Logger
}

// fetcher is the consumer side of Kafka, satisfied by *kafka.Reader.
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// messageWriter is the producer side used for dead letters, satisfied by
// *kafka.Writer.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// Replayer consumes one region's hint topic and applies the hints there.
// Create it with [NewReplayer], start it with [Replayer.Run], stop it by
// canceling Run's context or with [Replayer.Close]. Register it with a
// prometheus.Registerer to export its metrics.
type Replayer struct {
	cfg    ReplayerConfig
	topic  string
	log    *slog.Logger
	logErr *rate.Sometimes
	// logSkip and logMarks limit the logs of skipped heartbeats and of
	// marks not recorded.
	logSkip, logMarks *rate.Sometimes
	now               func() time.Time

	// I/O edges, replaced in tests.
	newFetcher   func() fetcher
	dead         messageWriter
	ensureTopics func(ctx context.Context) error
	// measureLag and evictPrevious are groupAdmin's, asking Kafka.
	measureLag    func(ctx context.Context) (int64, error)
	evictPrevious func(ctx context.Context) (int, error)
	// transport (dead letters, topic requests) and dialer (the reader)
	// carry the config's TLS and SASL (kafkaDialing).
	transport *kafka.Transport
	dialer    *kafka.Dialer

	hintLimit *rate.Limiter
	byteLimit *rate.Limiter

	// closeTimeout bounds each wait of the shutdown
	// (ReplayerCloseTimeout; shorter in tests).
	closeTimeout time.Duration

	mu      sync.Mutex
	closed  bool
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
	// stopErr records what Run abandoned while stopping (a Kafka reader
	// whose Close did not return); Close reports it.
	stopErr error
	// phase says what Run is doing (a string), for Close to name what
	// did not stop.
	phase atomic.Value

	lagValue atomic.Uint64 // float64 bits of the last lag measured; NaN unknown
	oldest   atomic.Int64  // birth (unix µs, Hint.Birth) of the oldest hint in the batch being replayed; 0 none
	paused   atomic.Bool
	// witness is the hint applied last: applying it again tells whether
	// the region is reachable when the Applier has no Probe.
	witness atomic.Pointer[record.Hint]

	metrics *replayerMetrics
}

// NewReplayer checks cfg and returns a replayer. It does not contact Kafka
// until Run.
func NewReplayer(cfg ReplayerConfig) (*Replayer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, fmt.Errorf("%w: ReplayerConfig.Brokers is empty", ErrInvalidConfig)
	case cfg.Region == "":
		return nil, fmt.Errorf("%w: ReplayerConfig.Region is empty; name the region this replayer writes to", ErrInvalidConfig)
	case cfg.Applier == nil:
		return nil, fmt.Errorf("%w: ReplayerConfig.Applier is nil; use NewCQLApplier with a session of region %q", ErrInvalidConfig, cfg.Region)
	case cfg.Marks != nil && cfg.Debt == nil:
		return nil, fmt.Errorf("%w: ReplayerConfig.Marks needs ReplayerConfig.Debt: a mark promises that every hint before it was applied, or rejected and recorded as repair debt", ErrInvalidConfig)
	case cfg.MaxHintsPerSecond < 0 || cfg.MaxBytesPerSecond < 0:
		return nil, fmt.Errorf("%w: negative throttle", ErrInvalidConfig)
	}
	setDefault(&cfg.TopicPrefix, DefaultTopicPrefix)
	setDefault(&cfg.GroupID, "tidemark-replayer-"+cfg.Region)
	setDefault(&cfg.Retention, schema.DefaultRetention)
	setDefault(&cfg.DeadLetterTopic, cfg.TopicPrefix+DeadLetterSuffix)
	setDefault(&cfg.Partitions, DefaultPartitions)
	setDefault(&cfg.ReplicationFactor, DefaultReplicationFactor)
	setDefault(&cfg.BatchSize, DefaultReplayBatchSize)
	setDefault(&cfg.MaxBatchBytes, DefaultMaxBatchBytes)
	setDefault(&cfg.Concurrency, DefaultReplayConcurrency)
	setDefault(&cfg.BackoffMin, DefaultBackoffMin)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.MaxHintAttempts, DefaultMaxHintAttempts)
	setDefault(&cfg.MaxHintBytes, record.DefaultMaxHintBytes)
	setDefault(&cfg.SessionTimeout, DefaultSessionTimeout)
	if cfg.MaxHintBytes < 0 {
		return nil, fmt.Errorf("%w: negative MaxHintBytes", ErrInvalidConfig)
	}
	if cfg.SessionTimeout < 2*heartbeatInterval {
		return nil, fmt.Errorf("%w: SessionTimeout %v is below two heartbeats (%v)", ErrInvalidConfig, cfg.SessionTimeout, 2*heartbeatInterval)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return nil, fmt.Errorf("%w: BackoffMax %v < BackoffMin %v", ErrInvalidConfig, cfg.BackoffMax, cfg.BackoffMin)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("region", cfg.Region)
	r := &Replayer{
		cfg:    cfg,
		topic:  cfg.TopicPrefix + cfg.Region,
		log:    log,
		logErr: &rate.Sometimes{First: 1, Interval: 10 * time.Second},
		now:    time.Now,

		logSkip:  &rate.Sometimes{First: 1, Interval: 10 * time.Second},
		logMarks: &rate.Sometimes{First: 1, Interval: 10 * time.Second},

		closeTimeout: ReplayerCloseTimeout,
	}
	if cfg.MaxHintsPerSecond > 0 {
		r.hintLimit = rate.NewLimiter(rate.Limit(cfg.MaxHintsPerSecond), max(1, int(cfg.MaxHintsPerSecond)))
	}
	if cfg.MaxBytesPerSecond > 0 {
		r.byteLimit = rate.NewLimiter(rate.Limit(cfg.MaxBytesPerSecond), cfg.MaxBytesPerSecond)
	}
	r.metrics = newReplayerMetrics(cfg.Region, r.oldestAge, r.paused.Load)
	r.setLag(math.NaN())

	clientID := replayerClientID(cfg.InstanceID)
	transport, dialer, err := kafkaDialing(clientID, 5*time.Second, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, err
	}
	r.transport, r.dialer = transport, dialer
	addr := kafka.TCP(cfg.Brokers...)
	client := &kafka.Client{Addr: addr, Transport: r.transport, Timeout: 10 * time.Second}
	admin := &groupAdmin{client: client, topic: r.topic, group: cfg.GroupID, clientID: clientID}
	r.measureLag, r.evictPrevious = admin.lag, admin.evictPrevious
	// A dead letter is the original record plus headers. Batches stay
	// within one such record (or hold just one), and the topics fit them.
	deadBytes := kafkaMessageBytes(cfg.MaxHintBytes, deadLetterHeaderBytes)
	r.dead = &kafka.Writer{
		Addr:         addr,
		Topic:        cfg.DeadLetterTopic,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   deadBytes,
		MaxAttempts:  3,
		Transport:    r.transport,
	}
	r.ensureTopics = func(ctx context.Context) error {
		for _, spec := range []topicSpec{
			{name: r.topic, partitions: cfg.Partitions, replicationFactor: cfg.ReplicationFactor, retention: cfg.Retention,
				maxMessageBytes: topicMaxMessageBytes(kafkaMessageBytes(cfg.MaxHintBytes, 0), DefaultBatchSize)},
			{name: cfg.DeadLetterTopic, partitions: cfg.Partitions, replicationFactor: cfg.ReplicationFactor, retention: 4 * cfg.Retention,
				maxMessageBytes: topicMaxMessageBytes(deadBytes, cfg.BatchSize)},
		} {
			if err := ensureTopic(ctx, client, spec); err != nil {
				return err
			}
		}
		return nil
	}
	r.newFetcher = func() fetcher { return kafka.NewReader(r.readerConfig()) }
	return r, nil
}

// readerConfig is the configuration of the replayer's consumer-group
// reader.
func (r *Replayer) readerConfig() kafka.ReaderConfig {
	cfg, log := r.cfg, r.log
	return kafka.ReaderConfig{
		Brokers:               cfg.Brokers,
		Dialer:                r.dialer,
		GroupID:               cfg.GroupID,
		Topic:                 r.topic,
		QueueCapacity:         prefetch(cfg.BatchSize),
		MinBytes:              1,
		MaxBytes:              16 << 20,
		MaxWait:               250 * time.Millisecond,
		CommitInterval:        0, // explicit synchronous commits only
		StartOffset:           kafka.FirstOffset,
		RetentionTime:         cfg.Retention,
		WatchPartitionChanges: true,
		JoinGroupBackoff:      time.Second,
		SessionTimeout:        cfg.SessionTimeout,
		HeartbeatInterval:     heartbeatInterval,
		RebalanceTimeout:      rebalanceTimeout,
		ReadBackoffMin:        cfg.BackoffMin,
		ReadBackoffMax:        min(cfg.BackoffMax, 5*time.Second),
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			r.logErr.Do(func() { log.Warn("hints: kafka reader: " + fmt.Sprintf(msg, args...)) })
		}),
	}
}

// Topic returns the hint topic the replayer consumes.
func (r *Replayer) Topic() string { return r.topic }

// EnsureTopics creates the replayer's hint topic and dead-letter topic if
// they do not exist yet. Run does this by itself (retrying while Kafka
// fails); call EnsureTopics to check, at start-up, that the brokers are
// reachable and take the configured TLS and SASL: its error wraps
// [ErrAuthentication] when Kafka refused them.
func (r *Replayer) EnsureTopics(ctx context.Context) error {
	if err := r.ensureTopics(ctx); err != nil {
		return fmt.Errorf("hints: replayer of region %q: %w", r.cfg.Region, refusal(err))
	}
	return nil
}

// Run consumes and applies hints until ctx is done or Close is called, then
// returns nil. It returns an error only if it cannot run at all (already
// running, closed). Kafka or the region being unreachable is not an error:
// Run waits, backs off and resumes by itself.
//
// Once ctx is done, Run stops applying, commits the offsets of the batches
// already settled (each commit bounded to 10 s) and closes the Kafka
// reader, waiting at most [ReplayerCloseTimeout] for it: a reader that does
// not close in time is abandoned with a warning naming the topic and
// consumer group, and reported by Close.
func (r *Replayer) Run(ctx context.Context) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return ErrClosed
	case r.running:
		r.mu.Unlock()
		return fmt.Errorf("hints: replayer for region %q is already running; start another Replayer to share the partitions", r.cfg.Region)
	}
	ctx, cancel := context.WithCancel(ctx)
	r.running, r.cancel, r.done = true, cancel, make(chan struct{})
	done := r.done
	r.mu.Unlock()
	r.setPhase("creating its topics")
	defer func() {
		cancel()
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
		close(done)
	}()

	for b := r.backoff(); ; {
		err := r.ensureTopics(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.logErr.Do(func() { r.log.Warn("hints: cannot create topics, retrying", "err", refusal(err)) })
		if !b.Sleep(ctx) {
			return nil
		}
	}
	if r.cfg.InstanceID != "" {
		r.setPhase("removing an earlier incarnation from the consumer group")
		switch n, err := r.evictPrevious(ctx); {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("hints: cannot look for an earlier incarnation in the consumer group; its partitions wait for its session to time out",
				"group", r.cfg.GroupID, "instance", r.cfg.InstanceID, "session_timeout", r.cfg.SessionTimeout, "err", err)
		case n > 0:
			r.log.Info("hints: removed the consumer-group members an earlier incarnation left behind",
				"group", r.cfg.GroupID, "instance", r.cfg.InstanceID, "members", n)
		}
	}
	f := r.newFetcher()
	defer r.closeFetcher(f)
	r.setPhase("replaying hints")
	r.log.Info("hints: replayer started", "topic", r.topic, "group", r.cfg.GroupID)

	msgs := make(chan kafka.Message, prefetch(r.cfg.BatchSize))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.fetchLoop(ctx, f, msgs)
	}()
	go func() {
		defer wg.Done()
		r.lagLoop(ctx)
	}()
	// On return: cancel, wait for fetchLoop, close the fetcher (LIFO).
	defer wg.Wait()
	defer r.setPhase("waiting for the Kafka fetch to return")
	defer cancel()

	// Commits run in their own goroutine, in order, so that the next batch
	// is applied while the previous one is being committed. At most one
	// applied batch waits for its commit; on return the committer drains.
	commits := make(chan []kafka.Message, 1)
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for offsets := range commits {
			r.commit(ctx, f, offsets)
		}
	}()
	defer cwg.Wait()
	defer close(commits)
	defer r.setPhase("committing the last offsets")

	batch := make([]kafka.Message, 0, r.cfg.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			batch = append(batch, m)
		}
		size := len(batch[0].Value)
	fill:
		for len(batch) < r.cfg.BatchSize && size < r.cfg.MaxBatchBytes {
			select {
			case m := <-msgs:
				batch = append(batch, m)
				size += len(m.Value)
			default:
				break fill
			}
		}
		if err := r.process(ctx, batch); err != nil {
			return nil // ctx is done; the batch is not committed and will be replayed
		}
		select {
		case commits <- lastOffsets(batch):
		case <-ctx.Done():
			// Still commit what was applied: the committer ignores ctx.
			r.setPhase("committing the last offsets")
			commits <- lastOffsets(batch)
			return nil
		}
	}
}

// closeFetcher closes f, waiting at most closeTimeout (wait.Within):
// kafka-go's Reader.Close can block for a long time, or forever, during a
// rebalance or after a lost connection. A reader that does not close in
// time is abandoned (its goroutine ends whenever Close returns), logged,
// and recorded for Close to report.
func (r *Replayer) closeFetcher(f fetcher) {
	r.setPhase("closing the Kafka reader")
	err := wait.Within(r.closeTimeout, r.closing(), wait.Closer{Name: "the Kafka reader", Close: f.Close})
	switch {
	case errors.Is(err, ErrStillClosing):
		r.log.Warn("hints: Kafka reader did not close in time; abandoned", "topic", r.topic, "group", r.cfg.GroupID, "timeout", r.closeTimeout)
		r.mu.Lock()
		r.stopErr = errors.Join(r.stopErr, err)
		r.mu.Unlock()
	case err != nil:
		r.log.Warn("hints: closing the Kafka reader failed", "topic", r.topic, "group", r.cfg.GroupID, "err", err)
	}
}

// closing names the replayer in the errors of its bounded closes.
func (r *Replayer) closing() string {
	return fmt.Sprintf("hints: replayer of topic %q, consumer group %q", r.topic, r.cfg.GroupID)
}

func (r *Replayer) setPhase(p string) { r.phase.Store(p) }

func (r *Replayer) currentPhase() string {
	p, _ := r.phase.Load().(string)
	return p
}

// prefetch is how many records the reader's queue and the fetch channel
// each hold ahead of the batch being processed.
func prefetch(batchSize int) int { return min(batchSize, 256) }

// lastOffsets returns, per topic partition, the last message of batch,
// stripped of key and value: all a commit needs.
func lastOffsets(batch []kafka.Message) []kafka.Message {
	type tp struct {
		topic     string
		partition int
	}
	last := map[tp]int64{}
	for _, m := range batch {
		k := tp{m.Topic, m.Partition}
		if off, ok := last[k]; !ok || m.Offset > off {
			last[k] = m.Offset
		}
	}
	out := make([]kafka.Message, 0, len(last))
	for k, off := range last {
		out = append(out, kafka.Message{Topic: k.topic, Partition: k.partition, Offset: off})
	}
	return out
}

// fetchLoop feeds msgs until ctx is done, backing off on Kafka errors.
func (r *Replayer) fetchLoop(ctx context.Context, f fetcher, msgs chan<- kafka.Message) {
	for b := r.backoff(); ; {
		m, err := f.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.logErr.Do(func() { r.log.Warn("hints: fetching hints failed, retrying", "err", err) })
			if !b.Sleep(ctx) {
				return
			}
			continue
		}
		b.Reset()
		select {
		case msgs <- m:
		case <-ctx.Done():
			return
		}
	}
}

// commit commits the batch's offsets synchronously. A failed commit is
// logged and counted: the hints will be replayed again, which is harmless.
// The commit gets its own deadline so that a batch finished just as ctx is
// canceled is still committed.
func (r *Replayer) commit(ctx context.Context, f fetcher, batch []kafka.Message) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := f.CommitMessages(cctx, batch...); err != nil {
		r.metrics.commitErrors.Inc()
		r.logErr.Do(func() { r.log.Warn("hints: offset commit failed; these hints will be replayed again", "err", err) })
	}
}

// backoff returns a new back-off from BackoffMin to BackoffMax, jittered
// (wait.Backoff); each retry loop has its own.
func (r *Replayer) backoff() *wait.Backoff {
	return wait.NewBackoff(r.cfg.BackoffMin, r.cfg.BackoffMax)
}

// oldestAge is the age of the oldest hint of the batch being replayed,
// from its Birth; 0 when there is none.
func (r *Replayer) oldestAge() time.Duration {
	us := r.oldest.Load()
	if us == 0 {
		return 0
	}
	return max(0, r.now().Sub(time.UnixMicro(us)))
}

// Close stops Run, waits for it to return, and releases the dead-letter
// writer. Hints being applied when Close is called are not committed and
// will be replayed by the next replayer.
//
// Close returns within 2 × [ReplayerCloseTimeout] (20 s): it waits at most
// ReplayerCloseTimeout for Run to return, then at most ReplayerCloseTimeout
// for the dead-letter writer to close. If Run does not return in time, if
// the writer does not close in time, or if Run had to abandon its Kafka
// reader, Close returns an error wrapping [ErrStillClosing] (a
// *[StillClosingError]) that names what did not stop — for Run, what it
// was still doing; Run then returns once what blocks it does. Close is
// safe to call more than once and concurrently with Run; calls after the
// first return nil at once.
func (r *Replayer) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	cancel, done := r.cancel, r.done
	running := r.running
	r.mu.Unlock()
	var errs []error
	if running {
		cancel()
		err := wait.Within(r.closeTimeout, r.closing(), wait.Done("Run", done))
		if still, ok := errors.AsType[*StillClosingError](err); ok {
			// Say what Run is doing now that the wait gave up: where it is
			// stuck, not what it was doing when Close began.
			still.Stragglers = []string{"Run, still " + r.currentPhase()}
		}
		errs = append(errs, err)
	}
	r.mu.Lock()
	errs = append(errs, r.stopErr)
	r.mu.Unlock()
	errs = append(errs, wait.Within(r.closeTimeout, r.closing(),
		wait.Closer{Name: fmt.Sprintf("the dead-letter writer (topic %q)", r.cfg.DeadLetterTopic), Close: r.dead.Close}))
	if r.transport != nil {
		r.transport.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Describe implements prometheus.Collector.
func (r *Replayer) Describe(ch chan<- *prometheus.Desc) { r.metrics.collectors().Describe(ch) }

// Collect implements prometheus.Collector.
func (r *Replayer) Collect(ch chan<- prometheus.Metric) { r.metrics.collectors().Collect(ch) }

// DebtRecorder records a dead-lettered hint's key as repair debt
// (ReplayerConfig.Debt).
type DebtRecorder interface {
	// RecordDebt records that h.Target lacks the row of h, for reason.
	RecordDebt(ctx context.Context, h record.Hint, reason string) error
}
