package hints

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/hints/record"
)

// Heartbeats, the producer's side: one copy of a record.Heartbeat to every
// partition of a region's hint topic (docs/hints.md, "Heartbeats and
// marks").

// partitionHeader is the Kafka header that names the partition a record
// must be written to (decimal). Heartbeat sets it on every copy and
// windowBalancer honours it: kafka-go's Writer ignores Message.Partition.
const partitionHeader = "tidemark-partition"

// partitionCountTTL is how long Heartbeat uses a topic's partition count
// before it reads the metadata again. A failed heartbeat forgets the count
// at once.
const partitionCountTTL = 30 * time.Second

// partitionCount is a topic's partition count as Heartbeat learned it.
type partitionCount struct {
	n  int
	at time.Time
}

// headerPartition returns the partition m's partitionHeader names, if it
// has one that is among partitions.
func headerPartition(m kafka.Message, partitions []int) (int, bool) {
	for _, h := range m.Headers {
		if h.Key != partitionHeader {
			continue
		}
		p, err := strconv.Atoi(string(h.Value))
		if err != nil || p < 0 {
			return 0, false
		}
		// kafka-go offers 0..n-1 in order; look further only if not.
		if p < len(partitions) && partitions[p] == p {
			return p, true
		}
		for _, q := range partitions {
			if q == p {
				return p, true
			}
		}
		return 0, false
	}
	return 0, false
}

// Heartbeat results, the result label of tidemark_hints_heartbeats_total.
const (
	heartbeatOK    = "ok"
	heartbeatError = "error"
)

// Heartbeat writes hb to every partition of the hint topic of hb.Target —
// one copy per partition, with Partition set to that partition and
// Partitions to the topic's partition count, signed with the producer's
// Keyring — in one write, and returns nil only once Kafka has acknowledged
// every copy with acks=all. The caller's hb.Partition and hb.Partitions
// are ignored; a zero hb.SentAt is set to now. It creates the topic if
// needed, as [Producer.Hint] does.
//
// The partition count comes from the Kafka metadata the producer's writer
// also uses, and is kept for 30 s (forgotten after a failure), so a
// topic's new partitions get heartbeats within about 30 s.
//
// Heartbeat shares Hint's bounds: it never blocks past ctx's deadline or
// ProduceTimeout, its bytes count against MaxBufferedBytes until Kafka is
// done with them. It is refused at once while the producer's circuit
// breaker is open, but its outcome does not count for the breaker (the
// hints' do), it is written by a kafka-go writer of its own (hints never
// wait behind heartbeats), and while one heartbeat for a region waits for
// Kafka the next fails at once with ErrUnavailable. Errors: [record.ErrInvalidHint] (hb cannot be
// encoded), [ErrBufferFull], [ErrUnavailable] (Kafka did not take every
// copy, including a ctx deadline that passed first; [ErrAuthentication]
// when Kafka refused the TLS or SASL of ProducerConfig), [ErrClosed], or
// ctx's error if ctx was canceled. After an error some copies may have
// been stored: a heartbeat is a promise, and a repeated or partial one
// promises nothing false.
//
// Heartbeats are counted in tidemark_hints_heartbeats_total{region,result},
// not in the hint metrics.
func (p *Producer) Heartbeat(ctx context.Context, hb record.Heartbeat) error {
	region := hb.Target
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return p.heartbeatFailed(region, ErrClosed)
	}
	p.wg.Add(1)
	p.mu.RUnlock()
	defer p.wg.Done()

	if hb.SentAt.IsZero() {
		hb.SentAt = time.Now()
	}
	// Check hb before Kafka is asked anything.
	probe := hb
	probe.Partition, probe.Partitions = 0, 1
	if _, err := record.EncodeHeartbeat(probe, p.cfg.Keyring); err != nil {
		return p.heartbeatFailed(region, err)
	}
	if err := ctx.Err(); err != nil {
		return p.heartbeatFailed(region, fmt.Errorf("hints: heartbeat for region %q not sent: %w", region, err))
	}
	// Heartbeats respect the breaker but do not count for it: they are
	// the most frequent writes, and a slow heartbeat round (every
	// partition of the topic) must neither trip it nor take the one probe
	// a half-open breaker lets through — the hints' outcomes decide.
	if st := p.breaker.State(); st == gobreaker.StateOpen {
		return p.heartbeatFailed(region, fmt.Errorf("%w: region %q: Kafka failed recently, not retrying for up to %v", ErrUnavailable, region, p.cfg.BreakerOpenFor))
	}
	// One heartbeat per topic in flight: one that Kafka has not answered
	// yet is not joined by the next round.
	busy, _ := p.hbInFlight.LoadOrStore(region, new(atomic.Bool))
	if !busy.(*atomic.Bool).CompareAndSwap(false, true) {
		return p.heartbeatFailed(region, fmt.Errorf("%w: region %q: the previous heartbeat is still waiting for Kafka", ErrUnavailable, region))
	}
	inFlight := busy.(*atomic.Bool)
	handed := false // to the writing goroutine, which clears the flag when Kafka answers
	defer func() {
		if !handed {
			inFlight.Store(false)
		}
	}()
	if err := p.ensureTopic(ctx, region); err != nil {
		return p.heartbeatFailed(region, err)
	}
	topic := p.Topic(region)
	n, err := p.partitionsOf(ctx, region)
	if err != nil {
		return p.heartbeatFailed(region, err)
	}
	msgs := make([]kafka.Message, n)
	var size int64
	for i := range msgs {
		hb.Partition, hb.Partitions = i, n
		rec, err := record.EncodeHeartbeat(hb, p.cfg.Keyring)
		if err != nil { // n out of the record's range
			err = fmt.Errorf("hints: heartbeat for topic %q of %d partitions: %w", topic, n, err)
			return p.heartbeatFailed(region, err)
		}
		msgs[i] = kafka.Message{
			Topic:   topic,
			Key:     []byte(hb.Producer),
			Value:   rec,
			Headers: []kafka.Header{{Key: partitionHeader, Value: strconv.AppendInt(nil, int64(i), 10)}},
		}
		size += int64(len(rec))
	}
	if p.buffered.Add(size) > p.cfg.MaxBufferedBytes {
		p.buffered.Add(-size)
		err := fmt.Errorf("%w: region %q: %d bytes waiting for Kafka, limit %d", ErrBufferFull, region, p.buffered.Load(), p.cfg.MaxBufferedBytes)
		return p.heartbeatFailed(region, err)
	}

	// As in Hint: the write has its own context, bounded by
	// ProduceTimeout, so that its bytes stay counted until Kafka is done
	// with it.
	result := make(chan error, 1)
	p.wg.Add(1)
	handed = true
	go func() {
		defer p.wg.Done()
		wctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProduceTimeout)
		defer cancel()
		err := p.hbWriter.WriteMessages(wctx, msgs...)
		p.buffered.Add(-size)
		if err != nil {
			err = classifyCopies(region, err, n)
		}
		inFlight.Store(false) // before the answer: the caller's next heartbeat may follow at once
		result <- err
	}()
	select {
	case err := <-result:
		if err != nil {
			return p.heartbeatFailed(region, err)
		}
		p.heartbeats.WithLabelValues(region, heartbeatOK).Inc()
		return nil
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: region %q: Kafka did not acknowledge the heartbeat before the deadline: %w", ErrUnavailable, region, err)
		} else {
			err = fmt.Errorf("hints: heartbeat for region %q abandoned before Kafka acknowledged it: %w", region, err)
		}
		return p.heartbeatFailed(region, err)
	}
}

// classifyCopies is classify for a write of n copies: kafka-go reports a
// failed write as WriteErrors, one per message (nil for those written).
func classifyCopies(region string, err error, n int) error {
	var werr kafka.WriteErrors
	if !errors.As(err, &werr) {
		return classify(region, err)
	}
	var first error
	failed := 0
	for _, e := range werr {
		if e != nil {
			failed++
			if first == nil {
				first = e
			}
		}
	}
	if first == nil {
		return classify(region, err)
	}
	return fmt.Errorf("hints: %d of %d heartbeat copies not acknowledged: %w", failed, n, classify(region, first))
}

// partitionsOf returns the partition count of region's topic: the one
// learned last if it is younger than partCountsTTL and the hints' writer
// has not offered the balancer another count since, otherwise read from
// the metadata of the heartbeats' transport, whose writer writes the round.
//
// The balancer's count matters when a topic gains partitions: a hint can
// go to a new partition only once the hints' writer offers it, which it
// does before the hint is acknowledged; the next heartbeat then sees the
// change and covers the new partition, instead of promising, for up to
// partCountsTTL, that fewer partitions are all there is. The two writers
// have a transport each, and each transport refreshes its metadata cache
// on its own timer (kafka-go: within MetadataTTL), so for a few seconds
// the heartbeats' metadata can list fewer partitions than the hints'
// writer offered: the round is then refused (a failed heartbeat promises
// nothing) until it catches up, since its copies would miss a partition
// that may already hold an acknowledged hint.
func (p *Producer) partitionsOf(ctx context.Context, region string) (int, error) {
	topic := p.Topic(region)
	p.partCountsMu.Lock()
	c, ok := p.partCounts[topic]
	p.partCountsMu.Unlock()
	if ok && time.Since(c.at) < p.partCountsTTL {
		if seen := p.balancer.offered(topic); seen == 0 || seen == c.n {
			return c.n, nil
		}
	}
	n, err := topicPartitions(ctx, p.hbClient, topic, p.cfg.ProduceTimeout)
	if err != nil {
		return 0, classify(region, fmt.Errorf("read the partitions of topic %q: %w", topic, err))
	}
	if n <= 0 {
		return 0, fmt.Errorf("%w: region %q: the metadata of topic %q lists no partitions", ErrUnavailable, region, topic)
	}
	if seen := p.balancer.offered(topic); seen > n {
		// The hints' writer offered more. Its own transport's metadata
		// says whether that is the heartbeats' cache lagging or a topic
		// re-created with fewer partitions since (the writer's count is
		// then stale until its next hint, which may be a long way off).
		m, err := topicPartitions(ctx, p.client, topic, p.cfg.ProduceTimeout)
		if err != nil {
			return 0, classify(region, fmt.Errorf("read the partitions of topic %q: %w", topic, err))
		}
		if m > n {
			return 0, fmt.Errorf("hints: region %q: the heartbeats' metadata of topic %q lists %d partitions, the hints' writer offered %d: no round until it catches up", region, topic, n, seen)
		}
	}
	p.partCountsMu.Lock()
	p.partCounts[topic] = partitionCount{n: n, at: time.Now()}
	p.partCountsMu.Unlock()
	return n, nil
}

// topicPartitions reads topic's partition count from c's metadata (its
// transport's cache), -1 when the answer does not list the topic.
func topicPartitions(ctx context.Context, c *kafka.Client, topic string, timeout time.Duration) (int, error) {
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	md, err := c.Metadata(mctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	n := -1
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, t.Error
		}
		n = len(t.Partitions)
	}
	return n, nil
}

// heartbeatFailed counts and logs (rate-limited) a heartbeat that was not
// stored, forgets the partition count of its topic, and returns err.
func (p *Producer) heartbeatFailed(region string, err error) error {
	p.heartbeats.WithLabelValues(region, heartbeatError).Inc()
	p.partCountsMu.Lock()
	delete(p.partCounts, p.Topic(region))
	p.partCountsMu.Unlock()
	p.hbLogEvery.Do(func() {
		p.log.Warn("hints: heartbeat not stored; the region's watermark waits for the next one", "region", region, "err", err)
	})
	return err
}
