package hints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
)

// Heartbeats, the replayer's side: a heartbeat in a partition becomes a
// Mark once every record before it there is applied or dead-lettered
// (docs/hints.md, "Heartbeats and marks").

// Mark is a heartbeat the replayer has passed: every record before it in
// its partition has been applied or dead-lettered. With the heartbeat's
// promise (see [record.Heartbeat]: every write its producer acknowledged
// below Before was applied in the region, or is a hint earlier in the
// partition, or is repair debt), a mark for every partition of the topic
// says the producer's writes below Before have reached the region, except
// for hints dead-lettered on the way (ReplayerConfig.Debt records the
// rejected ones as repair debt).
type Mark struct {
	// Producer names the store process that sent the heartbeat.
	Producer string
	// Partition is the Kafka partition the heartbeat was read from (not
	// the partition the heartbeat names), and Partitions how many
	// partitions the producer sent that round of heartbeats to.
	Partition, Partitions int
	// Before is the heartbeat's promise, a version in µs.
	Before int64
	// Registered is a version below every write the producer makes.
	Registered int64
	// Closing is set on the last heartbeat of a store that is closing.
	Closing bool
	// SentAt is when the producer sent the heartbeat.
	SentAt time.Time
	// Offset is the heartbeat's offset in its partition.
	Offset int64
}

// MarkRecorder keeps the marks a replayer passes (ReplayerConfig.Marks),
// for the process that combines them into the region's watermark.
type MarkRecorder interface {
	// RecordMarks records marks, read from region's hint topic: at most
	// one per (Producer, Partition), the newest the replayer passed in one
	// batch. It is called once per batch that held valid heartbeats, after
	// the batch was applied and before its offsets are committed; a batch
	// replayed again (after a crash or a rebalance) records its marks
	// again, and marks of one partition may arrive from two replayers
	// during a rebalance, so a recorder should keep the newest (highest
	// Offset, or latest Before) and ignore older ones. An error is counted
	// and logged; replay goes on, and the next heartbeat brings a newer
	// mark.
	RecordMarks(ctx context.Context, region string, marks []Mark) error
}

// Reasons a heartbeat is skipped, the reason label of
// tidemark_hints_heartbeats_skipped_total. They are also dead-letter
// reasons of hints; a heartbeat is never dead-lettered.
var heartbeatSkipReasons = []string{ReasonCorrupt, ReasonUnauthenticated, ReasonMisrouted}

// markTimeout bounds one RecordMarks call: a recorder that hangs must not
// stop replay.
const markTimeout = 10 * time.Second

// heartbeat decodes the heartbeat m and returns its mark, or counts and
// logs why it is skipped.
func (r *Replayer) heartbeat(m kafka.Message) (Mark, bool) {
	hb, err := record.DecodeHeartbeat(m.Value, r.cfg.Keyring)
	reason := ""
	switch {
	case errors.Is(err, record.ErrUnauthenticated):
		reason = ReasonUnauthenticated
	case err != nil:
		reason = ReasonCorrupt
	case hb.Target != r.cfg.Region:
		reason = ReasonMisrouted
		err = fmt.Errorf("heartbeat is for region %q, this replayer applies region %q", hb.Target, r.cfg.Region)
	}
	if reason != "" {
		r.metrics.heartbeatsSkipped.WithLabelValues(reason).Inc()
		r.logSkip.Do(func() {
			r.log.Warn("hints: heartbeat skipped", "reason", reason, "partition", m.Partition, "offset", m.Offset, "err", err)
		})
		return Mark{}, false
	}
	return Mark{
		Producer:   hb.Producer,
		Partition:  m.Partition,
		Partitions: hb.Partitions,
		Before:     hb.Before,
		Registered: hb.Registered,
		Closing:    hb.Closing,
		SentAt:     hb.SentAt,
		Offset:     m.Offset,
	}, true
}

// newestMarks keeps, of marks, the one with the highest offset per
// (Producer, Partition), ordered by partition and producer.
func newestMarks(marks []Mark) []Mark {
	type key struct {
		producer  string
		partition int
	}
	at := make(map[key]int, len(marks))
	var out []Mark
	for _, mk := range marks {
		k := key{mk.Producer, mk.Partition}
		if i, ok := at[k]; ok {
			if mk.Offset > out[i].Offset {
				out[i] = mk
			}
			continue
		}
		at[k] = len(out)
		out = append(out, mk)
	}
	slices.SortFunc(out, func(a, b Mark) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Producer, b.Producer))
	})
	return out
}

// recordMarks passes the marks of a batch that was applied and
// dead-lettered to the MarkRecorder.
func (r *Replayer) recordMarks(ctx context.Context, marks []Mark) {
	if r.cfg.Marks == nil || len(marks) == 0 || ctx.Err() != nil {
		return
	}
	marks = newestMarks(marks)
	mctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	err := r.cfg.Marks.RecordMarks(mctx, r.cfg.Region, marks)
	switch {
	case err == nil:
		r.metrics.marksRecorded.Add(float64(len(marks)))
	case ctx.Err() != nil:
		// Stopping: not the recorder's failure.
	default:
		r.metrics.marksFailed.Add(float64(len(marks)))
		r.logMarks.Do(func() {
			r.log.Warn("hints: marks not recorded; the next heartbeats bring newer ones", "marks", len(marks), "err", err)
		})
	}
}
