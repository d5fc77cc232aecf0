package hints

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Dead letters: records the replayer never applies go to the dead-letter
// topic with headers that say why.

// Dead-letter reasons, carried in the [HeaderReason] header of every
// dead-letter record and in the reason label of
// tidemark_hints_dead_lettered_total.
const (
	// ReasonCorrupt: the record does not decode (record.ErrCorrupt).
	ReasonCorrupt = "corrupt"
	// ReasonUnauthenticated: the MAC is missing, wrong, or made with a key
	// the keyring does not accept (record.ErrUnauthenticated).
	ReasonUnauthenticated = "unauthenticated"
	// ReasonExpired: the hint's ExpiresAt has passed, or it is older than
	// the retention (ReplayerConfig.Retention, or its table's tombstone
	// retention as the Applier reads it); applying it could resurrect data.
	ReasonExpired = "expired"
	// ReasonMisrouted: the hint's Target is not the replayer's region.
	ReasonMisrouted = "misrouted"
	// ReasonRejected: the region refused the write permanently (the
	// Applier returned an error wrapping ErrPermanent), or applying it
	// failed MaxHintAttempts times while the region was reachable.
	ReasonRejected = "rejected"
)

// Headers of a dead-letter record. Its key and value are the original
// record's.
const (
	HeaderReason    = "tidemark-dead-reason"
	HeaderError     = "tidemark-dead-error"
	HeaderRegion    = "tidemark-dead-region"
	HeaderTopic     = "tidemark-source-topic"
	HeaderPartition = "tidemark-source-partition"
	HeaderOffset    = "tidemark-source-offset"
	HeaderDeadAt    = "tidemark-dead-at"
	// HeaderDeadTruncated is set, to the original record's value size in
	// bytes, on a dead letter written without its value: the record was
	// too large for the dead-letter topic (a record that large is not a
	// hint the producer could have written). The original is still in
	// its topic, at the partition and offset the other headers name,
	// while the topic's retention keeps it.
	HeaderDeadTruncated = "tidemark-dead-truncated"
)

// deadLetter writes items to the dead-letter topic, retrying with back-off
// until it succeeds or ctx is done.
func (r *Replayer) deadLetter(ctx context.Context, items []*item) error {
	if len(items) == 0 {
		return nil
	}
	now := r.now().UTC().Format(time.RFC3339Nano)
	msgs := make([]kafka.Message, len(items))
	for i, it := range items {
		errText := it.err.Error()
		if len(errText) > 1024 {
			errText = errText[:1024]
		}
		msgs[i] = kafka.Message{
			Key:   it.msg.Key,
			Value: it.msg.Value,
			Headers: []kafka.Header{
				{Key: HeaderReason, Value: []byte(it.reason)},
				{Key: HeaderError, Value: []byte(errText)},
				{Key: HeaderRegion, Value: []byte(r.cfg.Region)},
				{Key: HeaderTopic, Value: []byte(it.msg.Topic)},
				{Key: HeaderPartition, Value: []byte(strconv.Itoa(it.msg.Partition))},
				{Key: HeaderOffset, Value: []byte(strconv.FormatInt(it.msg.Offset, 10))},
				{Key: HeaderDeadAt, Value: []byte(now)},
			},
		}
	}
	for b := r.backoff(); ; {
		err := r.dead.WriteMessages(ctx, msgs...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Too large for the dead-letter writer or topic: retrying cannot
		// help, so the values refused go and the records are written
		// without them (one record must never stop the replay).
		if n := dropTooLarge(msgs, err); n > 0 {
			r.metrics.deadTruncated.Add(float64(n))
			r.log.Warn("hints: dead letter too large for the dead-letter topic; written without its value", "records", n, "err", err)
			continue
		}
		r.paused.Store(true)
		r.logErr.Do(func() {
			r.log.Warn("hints: cannot write to the dead-letter topic; replay paused", "topic", r.cfg.DeadLetterTopic, "err", err)
		})
		if !b.Sleep(ctx) {
			return ctx.Err()
		}
	}
	r.paused.Store(false)
	for _, it := range items {
		r.metrics.deadLettered.WithLabelValues(it.reason).Inc()
		r.log.Warn("hints: hint dead-lettered", "reason", it.reason, "partition", it.msg.Partition, "offset", it.msg.Offset, "err", it.err)
		if it.reason == ReasonRejected && r.cfg.Debt != nil {
			if err := r.recordDebt(ctx, it); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordDebt records a rejected hint as repair debt. Without a
// MarkRecorder a failure is logged and a full run covers the key. With one,
// the batch's marks would promise the key to the watermark: the replayer
// retries (paused, as for the dead-letter topic) until the debt is
// recorded or ctx ends — then the batch is not committed, and is replayed.
func (r *Replayer) recordDebt(ctx context.Context, it *item) error {
	for b := r.backoff(); ; {
		err := r.cfg.Debt.RecordDebt(ctx, it.hint, "dead_"+it.reason)
		switch {
		case err == nil:
			r.paused.Store(false)
			return nil
		case r.cfg.Marks == nil:
			r.log.Warn("hints: dead-lettered hint not recorded as repair debt; a full run covers it", "namespace", it.hint.Namespace, "err", err)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		r.paused.Store(true)
		r.logErr.Do(func() {
			r.log.Warn("hints: cannot record a rejected hint as repair debt; replay paused (the watermark's marks depend on it)", "namespace", it.hint.Namespace, "err", err)
		})
		if !b.Sleep(ctx) {
			return ctx.Err()
		}
	}
}

// dropTooLarge drops the values of the messages that err (from a
// WriteMessages of msgs) says are too large — refused by kafka-go before
// any I/O (MessageTooLargeError names one), or by the broker
// (MessageSizeTooLarge, RecordListTooLarge, for the batch or per message
// in WriteErrors) — recording their size in HeaderDeadTruncated. It
// returns how many it dropped: 0 when err is not about size, or names
// only messages without a value left.
func dropTooLarge(msgs []kafka.Message, err error) int {
	tooLarge := func(err error) bool {
		return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
	}
	drop := func(i int) int {
		if msgs[i].Value == nil {
			return 0
		}
		msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: HeaderDeadTruncated, Value: []byte(strconv.Itoa(len(msgs[i].Value)))})
		msgs[i].Value = nil
		return 1
	}
	n := 0
	var one kafka.MessageTooLargeError
	var each kafka.WriteErrors
	switch {
	case errors.As(err, &one):
		// The message refused is a copy: find it by where it came from.
		for i := range msgs {
			if sameSource(msgs[i], one.Message) {
				n += drop(i)
			}
		}
	case errors.As(err, &each) && len(each) == len(msgs):
		for i, e := range each {
			if e != nil && tooLarge(e) {
				n += drop(i)
			}
		}
	case tooLarge(err):
		for i := range msgs {
			n += drop(i)
		}
	}
	return n
}

// sameSource reports whether two dead letters stand for the same
// original record (their source topic, partition and offset headers).
func sameSource(a, b kafka.Message) bool {
	source := func(m kafka.Message) string {
		var s string
		for _, h := range m.Headers {
			switch h.Key {
			case HeaderTopic, HeaderPartition, HeaderOffset:
				s += h.Key + "=" + string(h.Value) + ";"
			}
		}
		return s
	}
	return source(a) == source(b)
}
