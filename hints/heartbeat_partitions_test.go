package hints

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
)

// TestHeartbeatWaitsForItsMetadata: the hints' writer and the heartbeats
// have a kafka.Transport each (p.transport, p.hbTransport), each with its
// own metadata cache refreshed on its own timer (kafka-go's MetadataTTL).
// Right after a topic gains a partition, the hints' transport can know it
// while the heartbeats' does not yet: here the hints' view says 4
// partitions, the heartbeats' view (hbClient and hbWriter, as in
// production) still 3. A hint acknowledged in partition 3 must be covered
// by the next heartbeat round (docs/design.md, "Heartbeats"), or the
// watermark, which takes the partition count from the marks, counts 3
// partitions and passes the hint: the round is refused until the
// heartbeats' metadata lists the partition, and then covers it. Before
// the fix the round went to 3 partitions, and the heartbeats' writer,
// sharing the hints' balancer, reset the count it had offered to 3. A
// topic re-created with fewer partitions, with both transports agreeing,
// is not refused.
func TestHeartbeatWaitsForItsMetadata(t *testing.T) {
	fresh := &fakeBroker{partitions: 4} // what the hints' transport knows
	stale := &fakeBroker{partitions: 3} // what the heartbeats' transport knows
	cfg := ProducerConfig{Brokers: []string{refused(t)}}
	p := newTestProducer(t, cfg)
	fresh.topic, stale.topic = p.Topic("b"), p.Topic("b")

	kw := p.writer.(*kafka.Writer)
	kw.Transport = &brokerView{b: fresh}
	p.client = &kafka.Client{Addr: kw.Addr, Transport: &brokerView{b: fresh}, Timeout: time.Second}
	hw := p.hbWriter.(*kafka.Writer)
	hw.Transport = &brokerView{b: stale}
	p.hbClient = &kafka.Client{Addr: hw.Addr, Transport: &brokerView{b: stale}, Timeout: time.Second}
	ti := &topicInit{done: make(chan struct{})}
	close(ti.done)
	p.topics["b"] = ti
	ctx := context.Background()
	hb := record.Heartbeat{Producer: "s", Target: "b", Before: 10}

	// A round before the topic grew: 3 partitions, the count cached.
	fresh.setPartitions(3)
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if got := len(stale.take()); got != 3 {
		t.Fatalf("first round: %d copies, want 3", got)
	}
	fresh.setPartitions(4) // the hints' transport has refreshed, the heartbeats' not yet

	// Hints until one is acknowledged in the new partition 3.
	acked := -1
	for i := 0; i < 2000 && acked != 3; i++ {
		if err := p.Hint(ctx, smallHint(i)); err != nil {
			t.Fatal(err)
		}
		for _, r := range fresh.take() {
			acked = r.partition
		}
		if acked != 3 {
			time.Sleep(time.Millisecond) // the balancer moves on with time
		}
	}
	if acked != 3 {
		t.Fatalf("no hint landed in partition 3 of 4 in 2000 tries")
	}

	// Rounds computed after that hint was acknowledged, while the
	// heartbeats' metadata still lists 3: refused, twice (the count the
	// hints' writer offered is not overwritten by a round).
	for i := range 2 {
		err := p.Heartbeat(ctx, hb)
		if recs := stale.take(); len(recs) > 0 {
			for _, r := range recs {
				got, derr := record.DecodeHeartbeat(r.value, nil)
				if derr != nil {
					t.Fatal(derr)
				}
				t.Errorf("round %d: a copy in partition %d says the round went to %d partitions, but a hint was acknowledged in partition 3 before it", i+2, r.partition, got.Partitions)
			}
		}
		if err == nil || !strings.Contains(err.Error(), "lists 3 partitions, the hints' writer offered 4") {
			t.Fatalf("round %d with stale metadata: err %v, want it refused naming both counts", i+2, err)
		}
	}

	// The heartbeats' metadata catches up: the round covers all 4.
	stale.setPartitions(4)
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	recs := stale.take()
	seen := map[int]bool{}
	for _, r := range recs {
		got, err := record.DecodeHeartbeat(r.value, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Partitions != 4 || got.Partition != r.partition {
			t.Errorf("copy in partition %d says partition %d of %d, want its own of 4", r.partition, got.Partition, got.Partitions)
		}
		seen[r.partition] = true
	}
	if len(seen) != 4 {
		t.Errorf("round after the metadata caught up reached partitions %v, want 0-3", seen)
	}

	// The topic re-created with 2 partitions and no hint written since:
	// the hints' writer's count (4) is stale, its own metadata says 2 as
	// the heartbeats' does, and the rounds go on (to 2 partitions) rather
	// than waiting for a hint that may not come.
	p.partCountsTTL = 0
	fresh.setPartitions(2)
	stale.setPartitions(2)
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatalf("round after the topic shrank: %v", err)
	}
	for _, r := range stale.take() {
		got, err := record.DecodeHeartbeat(r.value, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Partitions != 2 {
			t.Errorf("copy in partition %d after the topic shrank says %d partitions, want 2", r.partition, got.Partitions)
		}
	}
}
