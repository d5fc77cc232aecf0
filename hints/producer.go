package hints

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/metrics"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
)

var (
	// ErrUnavailable reports that Kafka did not take the hint: the brokers
	// cannot be reached, did not acknowledge in time, or failed recently
	// enough that the producer is refusing hints without trying (its circuit
	// breaker is open). The hint is not stored; anti-entropy repair will
	// bring the region up to date. Retrying at once rarely helps.
	ErrUnavailable = errors.New("hints: Kafka unavailable, hint not stored")

	// ErrBufferFull reports that the producer already holds
	// MaxBufferedBytes of hints waiting for Kafka's acknowledgement. The hint
	// is not stored. Raise MaxBufferedBytes or make Kafka faster.
	ErrBufferFull = errors.New("hints: producer buffer full, hint not stored")

	// ErrHintTooLarge reports a hint whose record exceeds MaxHintBytes, or
	// that Kafka refused as larger than the topic's max.message.bytes
	// (raise it; see docs/hints.md, "Sizes"). The hint is not stored.
	ErrHintTooLarge = errors.New("hints: hint record too large")

	// ErrClosed reports a call on a closed Producer or Replayer.
	ErrClosed = errors.New("hints: closed")

	// ErrInvalidConfig reports a configuration that cannot work.
	ErrInvalidConfig = errors.New("hints: invalid configuration")

	// ErrStillClosing is matched (errors.Is) by the error of a Close (of
	// a Producer or Replayer) that gave up waiting for something to stop —
	// hints in flight, Run, or a kafka-go Reader or Writer whose Close
	// blocks (as it can during a rebalance or after a lost connection).
	// Close still released what it could; what did not stop was
	// abandoned, and its goroutine ends whenever kafka-go returns. The
	// error is a *[StillClosingError] naming what did not stop. It is
	// wait.ErrStillClosing, so it is also store.ErrStillClosing.
	ErrStillClosing = wait.ErrStillClosing
)

// StillClosingError is the error of a bounded close that stopped waiting
// (see [ErrStillClosing]); errors.As gives its Stragglers, the names of
// what did not stop. It is the one bounded-close error of every Tidemark
// package (wait.StillClosingError, store.StillClosingError).
type StillClosingError = wait.StillClosingError

// Defaults for the ProducerConfig fields left zero.
const (
	// DefaultBatchSize is the default ProducerConfig.BatchSize. A hint
	// topic a Replayer creates fits a full batch of this many of the
	// largest hints.
	DefaultBatchSize = 100
	// DefaultBatchTimeout is the default ProducerConfig.BatchTimeout.
	DefaultBatchTimeout = 5 * time.Millisecond
	// DefaultMaxBufferedBytes is the default
	// ProducerConfig.MaxBufferedBytes (64 MiB).
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultProduceTimeout is the default ProducerConfig.ProduceTimeout.
	DefaultProduceTimeout = 10 * time.Second
	// DefaultBreakerOpenFor is the default ProducerConfig.BreakerOpenFor.
	DefaultBreakerOpenFor = 5 * time.Second
)

// ProducerConfig configures [NewProducer]. Zero values pick the documented
// defaults.
type ProducerConfig struct {
	// Brokers are the "host:port" bootstrap addresses of the Kafka cluster.
	// Required.
	Brokers []string
	// TLS, when non-nil, encrypts every connection to the brokers and
	// verifies their certificates with it: RootCAs (nil: the system's
	// roots), and the broker's address as the name its certificate must
	// carry when ServerName is empty — so the certificates must name the
	// addresses the brokers advertise, IP addresses included. The config
	// is cloned by NewProducer. Default nil: plaintext, for a listener
	// without TLS (PLAINTEXT, SASL_PLAINTEXT). The handshake adds a round
	// trip to every new connection, not to every hint: connections are
	// kept open.
	TLS *tls.Config
	// SASL, when non-nil, authenticates every connection with these
	// credentials (see [SASL]; default mechanism SCRAM-SHA-512), for a
	// SASL_SSL or SASL_PLAINTEXT listener. Without TLS it is allowed but
	// the credentials cross the network in clear (PLAIN sends the
	// password itself; SCRAM sends only a proof, but everything after it,
	// hints included, is unencrypted and unauthenticated): use it only on
	// a network you trust. Default nil: no SASL. Bad credentials or an
	// untrusted certificate make hints fail with [ErrAuthentication].
	SASL *SASL
	// TopicPrefix names the topics: region r's hints go to TopicPrefix + r.
	// Default DefaultTopicPrefix ("tidemark.hints.").
	TopicPrefix string
	// Partitions of a topic the producer creates. Default 8. More partitions
	// let more replayers of one region work in parallel.
	Partitions int
	// ReplicationFactor of a topic the producer creates. Default -1: the
	// brokers' default.replication.factor. Use 3 in production.
	ReplicationFactor int
	// MinInSyncReplicas sets min.insync.replicas on a topic the producer
	// creates; 0 leaves the brokers' default. With acks=all, 2 (of 3
	// replicas) means an acknowledged hint survives one broker's loss.
	MinInSyncReplicas int
	// Retention is the retention.ms of a topic the producer creates. Default
	// schema.DefaultRetention (the tombstone retention, 10 days): a hint
	// older than that is never applied, so keeping it longer only costs
	// disk. Existing topics are left as they are.
	Retention time.Duration
	// Keyring, when set, signs every record with its current key.
	Keyring *record.Keyring
	// BatchSize is the most records sent to one partition in one request.
	// Default DefaultBatchSize (100).
	BatchSize int
	// BatchTimeout is how long a record waits for more to fill its batch.
	// It adds to every hint's latency. Default DefaultBatchTimeout (5ms).
	BatchTimeout time.Duration
	// MaxBufferedBytes bounds the bytes of records handed to Kafka and not
	// yet acknowledged (or given up on). A hint that would exceed it fails
	// at once with ErrBufferFull. Default DefaultMaxBufferedBytes (64 MiB).
	MaxBufferedBytes int64
	// MaxHintBytes bounds one record. Default record.DefaultMaxHintBytes (about
	// 1.13 MiB): the largest row a store with default limits accepts. A
	// topic the producer creates gets a max.message.bytes that fits
	// records this large; a topic that already exists must have it too
	// (see docs/hints.md, "Sizing"), or large hints fail with
	// ErrHintTooLarge.
	MaxHintBytes int
	// ProduceTimeout bounds one hint's trip to Kafka, whatever the caller's
	// context allows; past it the hint fails with ErrUnavailable. Default
	// DefaultProduceTimeout (10s).
	ProduceTimeout time.Duration
	// BreakerOpenFor is how long the producer refuses hints at once (with
	// ErrUnavailable) after Kafka failed several times in a row, before it
	// lets one through to probe. Default DefaultBreakerOpenFor (5s).
	BreakerOpenFor time.Duration
	// Logger receives failures (rate-limited) and topic creation; nil
	// discards.
	Logger *slog.Logger
}

// Producer writes hints to Kafka, one topic per target region. It is safe
// for concurrent use; concurrent hints are batched together. Register it
// with a prometheus.Registerer to export its metrics.
type Producer struct {
	cfg       ProducerConfig
	transport *kafka.Transport
	client    *kafka.Client
	writer    messageWriter // *kafka.Writer; a fake in tests
	// hbWriter writes the heartbeats: a writer of its own, so that hints
	// never queue behind heartbeats in kafka-go's per-partition batches
	// (a heartbeat goes to every partition of every region's topic).
	hbWriter messageWriter
	// hbClient reads the topics' partition counts, over hbTransport.
	hbClient    *kafka.Client
	hbTransport *kafka.Transport
	// hbInFlight holds, per region, whether a heartbeat is being written.
	hbInFlight sync.Map
	balancer   *windowBalancer // the kafka.Writer's
	breaker    *gobreaker.TwoStepCircuitBreaker[struct{}]
	log        *slog.Logger
	logEvery   *rate.Sometimes

	topicsMu sync.Mutex
	topics   map[string]*topicInit // region -> creation, done or under way

	// partCountsMu guards partCounts: per topic, the partition count
	// heartbeats last learned (see Heartbeat).
	partCountsMu sync.Mutex
	partCounts   map[string]partitionCount
	// partCountsTTL is how long a partition count is used before it is
	// asked again (partitionCountTTL; changed in tests).
	partCountsTTL time.Duration
	hbLogEvery    *rate.Sometimes

	buffered atomic.Int64

	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
	stop   context.CancelFunc
	ctx    context.Context

	produced *prometheus.CounterVec
	failed   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	bufGauge prometheus.GaugeFunc

	heartbeats *prometheus.CounterVec
}

// Failure reasons used in the tidemark_hints_produce_failures_total metric.
const (
	failUnavailable = "unavailable"
	failBufferFull  = "buffer_full"
	failTooLarge    = "too_large"
	failInvalid     = "invalid"
	failCanceled    = "canceled"
	failClosed      = "closed"
	failError       = "error"
)

// NewProducer checks cfg and returns a producer. It does not contact Kafka:
// topics are created on first use, and an unreachable Kafka shows up as
// errors from [Producer.Hint].
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: ProducerConfig.Brokers is empty; give at least one host:port", ErrInvalidConfig)
	}
	setDefault(&cfg.TopicPrefix, DefaultTopicPrefix)
	setDefault(&cfg.Partitions, DefaultPartitions)
	setDefault(&cfg.ReplicationFactor, DefaultReplicationFactor)
	setDefault(&cfg.Retention, schema.DefaultRetention)
	setDefault(&cfg.BatchSize, DefaultBatchSize)
	setDefault(&cfg.BatchTimeout, DefaultBatchTimeout)
	setDefault(&cfg.MaxBufferedBytes, DefaultMaxBufferedBytes)
	setDefault(&cfg.MaxHintBytes, record.DefaultMaxHintBytes)
	setDefault(&cfg.ProduceTimeout, DefaultProduceTimeout)
	setDefault(&cfg.BreakerOpenFor, DefaultBreakerOpenFor)
	if cfg.MaxBufferedBytes < int64(cfg.MaxHintBytes) {
		return nil, fmt.Errorf("%w: MaxBufferedBytes (%d) is smaller than MaxHintBytes (%d)", ErrInvalidConfig, cfg.MaxBufferedBytes, cfg.MaxHintBytes)
	}
	if cfg.Partitions < 1 || cfg.ReplicationFactor == 0 || cfg.ReplicationFactor < -1 {
		return nil, fmt.Errorf("%w: Partitions must be >= 1 and ReplicationFactor >= 1 or -1", ErrInvalidConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	transport, _, err := kafkaDialing("tidemark-hints-producer", min(cfg.ProduceTimeout, 5*time.Second), cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, err
	}
	// The heartbeats have a transport of their own (connections and
	// metadata cache): a heartbeat round goes to every partition of every
	// region's topic, and sharing kafka-go's connections with the hints
	// kept hints failing for up to a minute after a Kafka restart in the
	// chaos suite.
	hbTransport, _, err := kafkaDialing("tidemark-hints-heartbeats", min(cfg.ProduceTimeout, 5*time.Second), cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	transport.Context, hbTransport.Context = ctx, ctx
	addr := kafka.TCP(cfg.Brokers...)
	balancer := &windowBalancer{window: cfg.BatchTimeout}
	p := &Producer{
		cfg:       cfg,
		transport: transport,
		client:    &kafka.Client{Addr: addr, Transport: transport, Timeout: cfg.ProduceTimeout},
		balancer:  balancer,
		writer:    newHintWriter(addr, balancer, cfg, transport),
		// The heartbeats' writer balances on a balancer of its own: its
		// copies name their partitions, and what it offers must not stand
		// for what the hints' writer offers (partitionsOf).
		hbWriter:    newHintWriter(addr, &windowBalancer{window: cfg.BatchTimeout}, cfg, hbTransport),
		hbClient:    &kafka.Client{Addr: addr, Transport: hbTransport, Timeout: cfg.ProduceTimeout},
		hbTransport: hbTransport,
		topics:      map[string]*topicInit{},
		log:         log,
		logEvery:    &rate.Sometimes{First: 1, Interval: 10 * time.Second},

		partCounts:    map[string]partitionCount{},
		partCountsTTL: partitionCountTTL,
		hbLogEvery:    &rate.Sometimes{First: 1, Interval: 10 * time.Second},
		ctx:           ctx,
		stop:          stop,
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_hints_produced_total",
			Help: "Hints acknowledged by Kafka (acks=all), by target region.",
		}, []string{"region"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_hints_produce_failures_total",
			Help: "Hints that were not stored in Kafka, by target region and reason (unavailable, buffer_full, too_large, invalid, canceled, closed, error). Their writes are left to repair.",
		}, []string{"region", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidemark_hints_produce_latency_seconds",
			Help:    "Time from Hint to Kafka's acknowledgement, successful hints only, by target region.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"region"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_hints_heartbeats_total",
			Help: "Heartbeat rounds (one copy of the heartbeat to every partition of the region's hint topic), by target region and result: ok once Kafka acknowledged every copy (acks=all), error otherwise.",
		}, []string{"region", "result"}),
	}
	p.bufGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tidemark_hints_producer_buffered_bytes",
		Help: "Bytes of hint records handed to Kafka and not yet acknowledged.",
	}, func() float64 { return float64(p.buffered.Load()) })
	p.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    "kafka",
		Timeout: cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 3
		},
		// Only ErrUnavailable counts against Kafka. Other errors (buffer
		// full, canceled callers) are neutral; nil is a success, which
		// resets the count of consecutive failures and closes a
		// half-open breaker.
		IsExcluded: func(err error) bool { return err != nil && !errors.Is(err, ErrUnavailable) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Warn("hints: Kafka circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	return p, nil
}

// Topic returns the topic that holds the hints for region.
func (p *Producer) Topic(region string) string { return p.cfg.TopicPrefix + region }

// EnsureTopic creates region's hint topic if it does not exist yet. Hint
// does this by itself on first use; call EnsureTopic to create topics ahead
// of time (at start-up, for every region).
func (p *Producer) EnsureTopic(ctx context.Context, region string) error {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrClosed
	}
	p.wg.Add(1)
	p.mu.RUnlock()
	defer p.wg.Done()
	return p.ensureTopic(ctx, region)
}

// ensureTopic is EnsureTopic for a caller that holds a p.wg token.
func (p *Producer) ensureTopic(ctx context.Context, region string) error {
	p.topicsMu.Lock()
	ti, ok := p.topics[region]
	if !ok {
		ti = &topicInit{done: make(chan struct{})}
		p.topics[region] = ti
		p.wg.Add(1)
		go p.createTopic(region, ti)
	}
	p.topicsMu.Unlock()
	select {
	case <-ti.done:
		return ti.err
	case <-ctx.Done():
		err := context.Cause(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: creating topic %q: %w", ErrUnavailable, p.Topic(region), err)
		}
		return fmt.Errorf("hints: creating topic %q: %w", p.Topic(region), err)
	}
}

// topicInit is one creation of a region's topic; waiters block on done.
type topicInit struct {
	done chan struct{}
	err  error
}

func (p *Producer) createTopic(region string, ti *topicInit) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProduceTimeout)
	defer cancel()
	err := ensureTopic(ctx, p.client, topicSpec{
		name:              p.Topic(region),
		partitions:        p.cfg.Partitions,
		replicationFactor: p.cfg.ReplicationFactor,
		retention:         p.cfg.Retention,
		minInSync:         p.cfg.MinInSyncReplicas,
		maxMessageBytes:   topicMaxMessageBytes(kafkaMessageBytes(p.cfg.MaxHintBytes, 0), p.cfg.BatchSize),
	})
	if err != nil {
		ti.err = classify(region, err)
		p.topicsMu.Lock()
		delete(p.topics, region) // the next hint tries again
		p.topicsMu.Unlock()
	} else {
		p.log.Info("hints: topic ready", "topic", p.Topic(region))
	}
	close(ti.done)
}

// Hint stores h in the Kafka topic of h.Target and returns nil once Kafka
// has acknowledged it with acks=all: then the hint is durable. It never
// blocks past ctx's deadline or ProduceTimeout. A zero h.CreatedAt is set to
// now.
//
// Errors: [record.ErrInvalidHint] (the hint could never be applied),
// [ErrHintTooLarge], [ErrBufferFull] (too many bytes already waiting),
// [ErrUnavailable] (Kafka did not take it, including a ctx deadline that
// passed first; [ErrAuthentication], which wraps it, when Kafka refused the
// TLS or SASL of ProducerConfig), [ErrClosed], or ctx's error if ctx was
// canceled. In every
// error case the hint may or may not reach Kafka later; replaying it twice
// is harmless.
func (p *Producer) Hint(ctx context.Context, h record.Hint) error {
	start := time.Now()
	region := h.Target
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return p.fail(region, failClosed, ErrClosed)
	}
	p.wg.Add(1)
	p.mu.RUnlock()
	defer p.wg.Done()

	if h.CreatedAt.IsZero() {
		h.CreatedAt = start
	}
	rec, err := record.Encode(h, p.cfg.Keyring)
	if err != nil {
		return p.fail(region, failInvalid, err)
	}
	if len(rec) > p.cfg.MaxHintBytes {
		return p.fail(region, failTooLarge, fmt.Errorf("%w: %d bytes, MaxHintBytes is %d", ErrHintTooLarge, len(rec), p.cfg.MaxHintBytes))
	}
	if err := ctx.Err(); err != nil {
		return p.fail(region, failCanceled, fmt.Errorf("hints: hint for region %q not sent: %w", region, err))
	}
	done, err := p.breaker.Allow()
	if err != nil {
		return p.fail(region, failUnavailable, fmt.Errorf("%w: region %q: Kafka failed recently, not retrying for up to %v (%v)", ErrUnavailable, region, p.cfg.BreakerOpenFor, err))
	}
	if err := p.ensureTopic(ctx, region); err != nil {
		done(err)
		return p.fail(region, reasonOf(ctx, err), err)
	}
	n := int64(len(rec))
	if p.buffered.Add(n) > p.cfg.MaxBufferedBytes {
		p.buffered.Add(-n)
		err := fmt.Errorf("%w: region %q: %d bytes waiting for Kafka, limit %d", ErrBufferFull, region, p.buffered.Load(), p.cfg.MaxBufferedBytes)
		done(err) // neutral: Kafka was not tried
		return p.fail(region, failBufferFull, err)
	}

	// The write runs on its own context, bounded by ProduceTimeout, so that
	// its bytes stay counted until Kafka is done with the record even if
	// the caller stops waiting.
	result := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		wctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProduceTimeout)
		defer cancel()
		err := p.writer.WriteMessages(wctx, kafka.Message{Topic: p.Topic(region), Key: h.PK, Value: rec})
		p.buffered.Add(-n)
		if err != nil {
			err = classify(region, err)
		}
		done(err)
		result <- err
	}()
	select {
	case err := <-result:
		if err != nil {
			return p.fail(region, reasonOf(ctx, err), err)
		}
		p.produced.WithLabelValues(region).Inc()
		p.latency.WithLabelValues(region).Observe(time.Since(start).Seconds())
		return nil
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: region %q: Kafka did not acknowledge before the deadline: %w", ErrUnavailable, region, err)
		} else {
			err = fmt.Errorf("hints: hint for region %q abandoned before Kafka acknowledged it: %w", region, err)
		}
		return p.fail(region, reasonOf(ctx, err), err)
	}
}

// classify turns a kafka-go error into an error wrapping ErrUnavailable when
// it means the brokers are unreachable or not acknowledging.
func classify(region string, err error) error {
	var kerr kafka.Error
	var netErr net.Error
	var tooLarge kafka.MessageTooLargeError
	switch {
	case errors.Is(err, ErrUnavailable):
		return err
	case authFailure(err):
		// ErrAuthentication is also ErrUnavailable.
		return fmt.Errorf("%w: region %q: %w", ErrAuthentication, region, err)
	case errors.As(err, &tooLarge),
		errors.Is(err, kafka.MessageSizeTooLarge),
		errors.Is(err, kafka.RecordListTooLarge):
		// Kafka is up; the topic's max.message.bytes (or the writer's
		// BatchBytes) is below this record. Not a reason to open the
		// breaker.
		return fmt.Errorf("%w: region %q: Kafka refused the record as too large; raise max.message.bytes of the hint topic: %w", ErrHintTooLarge, region, err)
	case errors.As(err, &kerr) && kerr.Temporary(),
		errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: region %q: %w", ErrUnavailable, region, err)
	default:
		var werr kafka.WriteErrors
		if errors.As(err, &werr) && len(werr) == 1 && werr[0] != nil {
			return classify(region, werr[0])
		}
		// Anything else from the transport layer (EOF, broken pipe, ...)
		// also means Kafka did not take the record.
		return fmt.Errorf("%w: region %q: %w", ErrUnavailable, region, err)
	}
}

func reasonOf(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, ErrUnavailable):
		return failUnavailable
	case errors.Is(err, ErrHintTooLarge):
		return failTooLarge
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return failCanceled
	default:
		return failError
	}
}

func (p *Producer) fail(region, reason string, err error) error {
	p.failed.WithLabelValues(region, reason).Inc()
	p.logEvery.Do(func() {
		p.log.Warn("hints: hint not stored; the write is left to repair", "region", region, "reason", reason, "err", err)
	})
	return err
}

// Close stops accepting hints and releases the producer, returning within
// 2 × ProduceTimeout (default 20 s) whatever Kafka does:
//
//  1. it waits at most ProduceTimeout for the hints and topic creations in
//     flight to be acknowledged or to fail; past that it cancels them;
//  2. it waits at most ProduceTimeout for the kafka-go writer to flush and
//     close (its Close waits for every queued batch, which can take
//     MaxAttempts × WriteTimeout);
//  3. whatever happened, it cancels the producer's context and closes idle
//     connections.
//
// A step that does not finish in time is abandoned (its goroutine ends
// whenever kafka-go returns) and reported by an error wrapping
// [ErrStillClosing] (a *[StillClosingError]) that names it. Close is safe
// to call more than once and concurrently; every call after the first
// returns nil at once.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	defer p.transport.CloseIdleConnections()
	defer p.hbTransport.CloseIdleConnections()
	defer p.stop()

	const what = "hints: producer"
	inFlight := wait.Closer{Name: "the hints in flight", Close: func() error { p.wg.Wait(); return nil }}
	errInFlight := wait.Within(p.cfg.ProduceTimeout, what, inFlight)
	if errInFlight != nil {
		// Cancel them now, so that they stop holding the writer.
		p.stop()
	}
	errWriter := errors.Join(wait.Within(p.cfg.ProduceTimeout, what, wait.Closer{Name: "the Kafka writer", Close: p.writer.Close}),
		wait.Within(p.cfg.ProduceTimeout, what, wait.Closer{Name: "the Kafka heartbeat writer", Close: p.hbWriter.Close}))
	return errors.Join(errInFlight, errWriter)
}

// Describe implements prometheus.Collector.
func (p *Producer) Describe(ch chan<- *prometheus.Desc) { p.collectors().Describe(ch) }

// Collect implements prometheus.Collector.
func (p *Producer) Collect(ch chan<- prometheus.Metric) { p.collectors().Collect(ch) }

func (p *Producer) collectors() metrics.Set {
	return metrics.Set{p.produced, p.failed, p.latency, p.bufGauge, p.heartbeats}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// newHintWriter is the kafka-go writer of hints (and, on a transport of
// their own, of heartbeats).
func newHintWriter(addr net.Addr, balancer kafka.Balancer, cfg ProducerConfig, transport *kafka.Transport) *kafka.Writer {
	return &kafka.Writer{
		Addr:     addr,
		Balancer: balancer,
		// Retriable errors (a partition whose leader is moving or not yet
		// elected, a broker restarting) are retried with backoff;
		// ProduceTimeout bounds the whole write, retries included, so
		// more attempts only use that budget better.
		MaxAttempts:     10,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		BatchSize:       cfg.BatchSize,
		BatchBytes:      kafkaMessageBytes(cfg.MaxHintBytes, 0), // at least one record of MaxHintBytes with its key
		BatchTimeout:    cfg.BatchTimeout,
		ReadTimeout:     cfg.ProduceTimeout,
		WriteTimeout:    cfg.ProduceTimeout,
		RequiredAcks:    kafka.RequireAll,
		Transport:       transport,
	}
}

// windowBalancer sends every record of one BatchTimeout window to the same
// partition, and the next window's to the next partition: the hints a
// burst of writes makes share one produce request instead of one per
// partition. With 8 partitions and hints keyed by partition key (the
// Murmur2 balancer), 2,000 hints a second in 5 ms windows took ~1,600
// produce requests a second — each a Kafka fsync-free but acks=all round
// trip on the broker's CPU — and cost the writes of a store with a region
// cut ~15 % of their throughput on a machine where Kafka shares the
// servers' core (docs/benchmarks.md, "Outages"). Hints need no order (each
// carries its version; docs/hints.md), so a partition per window is safe.
//
// A record that names its partition in a [partitionHeader] header — a
// heartbeat's copy, which must reach that very partition — goes there
// when the partition is among those offered (kafka-go's Writer ignores
// Message.Partition and asks the balancer); otherwise it is balanced like
// any record.
//
// It also remembers, per topic, how many partitions the writer offered
// last (offered): the writer offers a topic's new partitions before the
// first hint written to one is acknowledged, and the next Heartbeat then
// reads the partition count again instead of using the one it keeps.
type windowBalancer struct {
	window time.Duration

	mu      sync.Mutex
	counts  map[string]int // topic -> partitions offered last
	counted string         // the topic counted last (a hint topic, usually)
	last    int            // its count
}

// Balance implements kafka.Balancer.
func (b *windowBalancer) Balance(m kafka.Message, partitions ...int) int {
	b.observe(m.Topic, len(partitions))
	if p, ok := headerPartition(m, partitions); ok {
		return p
	}
	w := max(b.window, time.Millisecond)
	return partitions[int(uint64(time.Now().UnixNano()/int64(w))%uint64(len(partitions)))]
}

// observe records that the writer offered n partitions of topic.
func (b *windowBalancer) observe(topic string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic == b.counted && n == b.last {
		return // the common case: no map access
	}
	if b.counts == nil {
		b.counts = map[string]int{}
	}
	b.counts[topic] = n
	b.counted, b.last = topic, n
}

// offered returns how many partitions of topic the writer offered last,
// or 0 if it has balanced no record of topic yet.
func (b *windowBalancer) offered(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[topic]
}
