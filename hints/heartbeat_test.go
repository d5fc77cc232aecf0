package hints

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/hints/record"
)

// fakeBroker answers kafka-go's metadata and produce requests for one
// topic, so that a real kafka.Writer — its balancer included — runs
// against it. It keeps every record produced, with its partition.
type fakeBroker struct {
	topic string

	mu         sync.Mutex
	partitions int
	produced   []producedRecord
}

type producedRecord struct {
	partition int
	key       []byte
	value     []byte
	headers   []protocol.Header
}

// view is one client's connection to the broker; it counts the metadata
// requests made through it.
type brokerView struct {
	b        *fakeBroker
	metadata atomic.Int64
}

func (v *brokerView) RoundTrip(ctx context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	b := v.b
	b.mu.Lock()
	defer b.mu.Unlock()
	switch req := req.(type) {
	case *metadataAPI.Request:
		v.metadata.Add(1)
		res := &metadataAPI.Response{Brokers: []metadataAPI.ResponseBroker{{NodeID: 1, Host: "fake", Port: 9092}}}
		for _, name := range req.TopicNames {
			t := metadataAPI.ResponseTopic{Name: name}
			if name != b.topic {
				t.ErrorCode = int16(kafka.UnknownTopicOrPartition)
			}
			for i := range b.partitions {
				if name == b.topic {
					t.Partitions = append(t.Partitions, metadataAPI.ResponsePartition{PartitionIndex: int32(i), LeaderID: 1})
				}
			}
			res.Topics = append(res.Topics, t)
		}
		return res, nil
	case *produceAPI.Request:
		res := &produceAPI.Response{}
		for _, t := range req.Topics {
			rt := produceAPI.ResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				for {
					r, err := p.RecordSet.Records.ReadRecord()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						return nil, err
					}
					key, _ := protocol.ReadAll(r.Key)
					value, _ := protocol.ReadAll(r.Value)
					b.produced = append(b.produced, producedRecord{partition: int(p.Partition), key: key, value: value, headers: r.Headers})
				}
				rt.Partitions = append(rt.Partitions, produceAPI.ResponsePartition{Partition: p.Partition})
			}
			res.Topics = append(res.Topics, rt)
		}
		return res, nil
	}
	return nil, fmt.Errorf("fakeBroker: unexpected request %T", req)
}

func (b *fakeBroker) setPartitions(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partitions = n
}

// take returns the records produced since the last take.
func (b *fakeBroker) take() []producedRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.produced
	b.produced = nil
	return out
}

// countingWriter counts the WriteMessages calls of the writer it wraps
// and the messages of each.
type countingWriter struct {
	messageWriter
	mu    sync.Mutex
	sizes []int
}

func (w *countingWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(msgs))
	w.mu.Unlock()
	return w.messageWriter.WriteMessages(ctx, msgs...)
}

func (w *countingWriter) calls() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.sizes...)
}

// fakeBrokerProducer returns a producer whose real kafka-go writer and
// metadata client talk to b (through views of their own), with region
// "b"'s topic already created.
func fakeBrokerProducer(t *testing.T, cfg ProducerConfig, b *fakeBroker) (p *Producer, client *brokerView, w *countingWriter) {
	t.Helper()
	cfg.Brokers = []string{refused(t)}
	p = newTestProducer(t, cfg)
	b.topic = p.Topic("b")
	kw := p.writer.(*kafka.Writer)
	kw.Transport = &brokerView{b: b}
	client = &brokerView{b: b}
	p.client = &kafka.Client{Addr: kw.Addr, Transport: client, Timeout: time.Second}
	p.hbClient = p.client
	hw := p.hbWriter.(*kafka.Writer)
	hw.Transport = kw.Transport
	// w counts the heartbeats' writes (their writer of their own).
	w = &countingWriter{messageWriter: hw}
	p.hbWriter = w
	ti := &topicInit{done: make(chan struct{})}
	close(ti.done)
	p.topics["b"] = ti
	return p, client, w
}

// checkHeartbeatRound checks that recs are one copy of a heartbeat of
// producer per partition of n, each in its own partition, naming it,
// signed with kr.
func checkHeartbeatRound(t *testing.T, recs []producedRecord, n int, kr *record.Keyring, want record.Heartbeat) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%d records produced, want one per partition (%d)", len(recs), n)
	}
	seen := map[int]bool{}
	for _, r := range recs {
		if !record.IsHeartbeat(r.value) {
			t.Fatalf("partition %d got a record that is not a heartbeat", r.partition)
		}
		hb, err := record.DecodeHeartbeat(r.value, kr)
		if err != nil {
			t.Fatalf("heartbeat in partition %d does not decode with the producer's keyring: %v", r.partition, err)
		}
		if hb.Partition != r.partition || hb.Partitions != n {
			t.Errorf("the copy in partition %d says partition %d of %d, want %d of %d", r.partition, hb.Partition, hb.Partitions, r.partition, n)
		}
		if hb.Producer != want.Producer || hb.Target != want.Target || hb.Before != want.Before || hb.Registered != want.Registered || hb.Closing != want.Closing {
			t.Errorf("copy in partition %d = %+v, want the fields of %+v", r.partition, hb, want)
		}
		if hb.SentAt.IsZero() {
			t.Errorf("copy in partition %d has no SentAt", r.partition)
		}
		if seen[r.partition] {
			t.Errorf("two copies in partition %d", r.partition)
		}
		seen[r.partition] = true
	}
}

// TestProducerHeartbeatOneCopyPerPartition: Heartbeat writes, in one
// WriteMessages call, one signed copy per partition; kafka-go's writer,
// through the producer's balancer, puts every copy in the partition it
// names (without the header they would all share the window's
// partition). Heartbeats do not count as hints.
func TestProducerHeartbeatOneCopyPerPartition(t *testing.T) {
	kr := mustKeyring(t, record.KeyringConfig{Current: testKey("k1")})
	b := &fakeBroker{partitions: 5}
	p, client, w := fakeBrokerProducer(t, ProducerConfig{Keyring: kr}, b)

	hb := record.Heartbeat{Producer: "store-1", Target: "b", Before: 1_000_000, Registered: 500, Closing: true,
		Partition: 3, Partitions: 1} // ignored: the producer sets them
	if err := p.Heartbeat(context.Background(), hb); err != nil {
		t.Fatalf("Heartbeat = %v", err)
	}
	checkHeartbeatRound(t, b.take(), 5, kr, hb)
	if got := w.calls(); len(got) != 1 || got[0] != 5 {
		t.Errorf("WriteMessages calls (messages each) = %v, want one call of 5", got)
	}
	if n := client.metadata.Load(); n != 1 {
		t.Errorf("%d metadata requests, want 1", n)
	}
	if got := metricValue(p.heartbeats.WithLabelValues("b", heartbeatOK)); got != 1 {
		t.Errorf("heartbeats{result=ok} = %v, want 1", got)
	}
	if got := metricValue(p.produced); got != 0 {
		t.Errorf("produced (hints) = %v after a heartbeat, want 0", got)
	}
	if got := metricValue(p.failed); got != 0 {
		t.Errorf("produce failures = %v, want 0", got)
	}
	if got := p.buffered.Load(); got != 0 {
		t.Errorf("buffered = %d after the heartbeat, want 0", got)
	}

	// Another key cannot have signed it.
	other := mustKeyring(t, record.KeyringConfig{Current: record.Key{ID: "k1", Secret: []byte("another-secret-0123456789")}})
	if err := p.Heartbeat(context.Background(), hb); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.take() {
		if _, err := record.DecodeHeartbeat(r.value, other); !errors.Is(err, record.ErrUnauthenticated) {
			t.Fatalf("heartbeat decoded with another secret: %v, want ErrUnauthenticated", err)
		}
	}
}

// TestProducerHeartbeatPartitionCount: the partition count is read once
// and reused; a topic that gains partitions gets heartbeats on the new
// ones as soon as a record (here a hint) was balanced over them, without
// waiting for the count's 30 s; an expired count is read again.
func TestProducerHeartbeatPartitionCount(t *testing.T) {
	b := &fakeBroker{partitions: 3}
	p, client, _ := fakeBrokerProducer(t, ProducerConfig{}, b)
	ctx := context.Background()
	hb := record.Heartbeat{Producer: "s", Target: "b", Before: 10}
	for range 2 {
		if err := p.Heartbeat(ctx, hb); err != nil {
			t.Fatal(err)
		}
		checkHeartbeatRound(t, b.take(), 3, nil, hb)
	}
	if n := client.metadata.Load(); n != 1 {
		t.Fatalf("%d metadata requests for two heartbeats within 30 s, want 1", n)
	}

	b.setPartitions(4)
	if err := p.Hint(ctx, smallHint(1)); err != nil {
		t.Fatal(err)
	}
	b.take()
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	checkHeartbeatRound(t, b.take(), 4, nil, hb)
	if n := client.metadata.Load(); n != 2 {
		t.Fatalf("%d metadata requests, want 2: the writer offered a new partition count", n)
	}

	p.partCountsTTL = 0 // every count is stale
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatal(err)
	}
	if n := client.metadata.Load(); n != 3 {
		t.Fatalf("%d metadata requests, want 3 after the count went stale", n)
	}
}

// TestProducerHeartbeatFailure: a write Kafka does not acknowledge fails
// with ErrUnavailable, is counted as a heartbeat error (not as a hint
// failure), and makes the next heartbeat read the partition count again.
func TestProducerHeartbeatFailure(t *testing.T) {
	fw := &fakeWriter{fail: func(n int) error {
		if n == 0 {
			return kafka.WriteErrors{nil, errBrokerDown}
		}
		return nil
	}, got: make(chan kafka.Message, 16)}
	p := fakeWriterProducer(t, ProducerConfig{}, fw)
	b := &fakeBroker{topic: p.Topic("b"), partitions: 2}
	client := &brokerView{b: b}
	p.client = &kafka.Client{Addr: kafka.TCP("fake:1"), Transport: client, Timeout: time.Second}
	p.hbClient = p.client
	ctx := context.Background()
	hb := record.Heartbeat{Producer: "s", Target: "b", Before: 10}

	err := p.Heartbeat(ctx, hb)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Heartbeat with a copy not acknowledged = %v, want ErrUnavailable", err)
	}
	if got := metricValue(p.heartbeats.WithLabelValues("b", heartbeatError)); got != 1 {
		t.Errorf("heartbeats{result=error} = %v, want 1", got)
	}
	if got := metricValue(p.failed); got != 0 {
		t.Errorf("hint failures = %v after a heartbeat failure, want 0", got)
	}
	if err := p.Heartbeat(ctx, hb); err != nil {
		t.Fatalf("second Heartbeat = %v", err)
	}
	if n := client.metadata.Load(); n != 2 {
		t.Errorf("%d metadata requests, want 2: a failure forgets the count", n)
	}
	// The copies carry the header that routes them.
	for range 2 { // the second write's (the fake keeps none of a failed one)
		var m kafka.Message
		select {
		case m = <-fw.got:
		default:
			t.Fatal("the second heartbeat wrote fewer than 2 copies")
		}
		hb, err := record.DecodeHeartbeat(m.Value, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := header(m, partitionHeader); got != fmt.Sprint(hb.Partition) {
			t.Errorf("copy of partition %d has %s header %q", hb.Partition, partitionHeader, got)
		}
	}
	if got := p.buffered.Load(); got != 0 {
		t.Errorf("buffered = %d, want 0", got)
	}
}

// TestProducerHeartbeatRefusals: a closed producer answers ErrClosed, an
// invalid heartbeat record.ErrInvalidHint before Kafka is asked, and a
// deadline that passes first ErrUnavailable.
func TestProducerHeartbeatRefusals(t *testing.T) {
	fw := &fakeWriter{delay: time.Hour, fail: func(int) error { return nil }}
	p := fakeWriterProducer(t, ProducerConfig{ProduceTimeout: 200 * time.Millisecond}, fw)
	b := &fakeBroker{topic: p.Topic("b"), partitions: 2}
	client := &brokerView{b: b}
	p.client = &kafka.Client{Addr: kafka.TCP("fake:1"), Transport: client, Timeout: time.Second}
	p.hbClient = p.client

	if err := p.Heartbeat(context.Background(), record.Heartbeat{Target: "b"}); !errors.Is(err, record.ErrInvalidHint) {
		t.Fatalf("Heartbeat without Producer = %v, want record.ErrInvalidHint", err)
	}
	if fw.calls.Load() != 0 || client.metadata.Load() != 0 {
		t.Fatal("an invalid heartbeat reached Kafka")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := p.Heartbeat(ctx, record.Heartbeat{Producer: "s", Target: "b"})
	cancel()
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Heartbeat past its deadline = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}

	if err := p.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	if err := p.Heartbeat(context.Background(), record.Heartbeat{Producer: "s", Target: "b"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Heartbeat after Close = %v, want ErrClosed", err)
	}
	if got := metricValue(p.heartbeats.WithLabelValues("b", heartbeatError)); got != 3 {
		t.Errorf("heartbeats{region=b,result=error} = %v, want 3", got)
	}
	if got := p.buffered.Load(); got != 0 {
		t.Errorf("buffered = %d after Close, want 0", got)
	}
}

// TestWindowBalancerHonoursPartitionHeader: a record naming an offered
// partition goes there, whatever the window; anything else is balanced
// by window.
func TestWindowBalancerHonoursPartitionHeader(t *testing.T) {
	b := &windowBalancer{window: time.Hour}
	parts := []int{0, 1, 2, 3, 4, 5, 6, 7}
	win := b.Balance(kafka.Message{}, parts...)
	with := func(v string) kafka.Message {
		return kafka.Message{Headers: []kafka.Header{{Key: "other", Value: []byte("5")}, {Key: partitionHeader, Value: []byte(v)}}}
	}
	for p := range parts {
		if got := b.Balance(with(fmt.Sprint(p)), parts...); got != p {
			t.Errorf("record naming partition %d went to %d", p, got)
		}
	}
	for _, v := range []string{"8", "-1", "x", ""} {
		if got := b.Balance(with(v), parts...); got != win {
			t.Errorf("record naming %q went to %d, want the window's partition %d", v, got, win)
		}
	}
	if got := b.Balance(with("4"), 0, 2, 4); got != 4 {
		t.Errorf("record naming 4 of [0 2 4] went to %d", got)
	}
	if got := b.Balance(with("1"), 0, 2, 4); got == 1 {
		t.Error("record naming a partition not offered went there")
	}
	if got := b.Balance(kafka.Message{Topic: "x"}, 0, 1, 2); got < 0 || got > 2 {
		t.Errorf("Balance = %d", got)
	}
	if n := b.offered("x"); n != 3 {
		t.Errorf("offered(x) = %d, want 3", n)
	}
}

// TestProducerHeartbeatsAndTheBreaker: heartbeats that fail do not open
// the breaker (they are the most frequent writes; in the chaos suite a
// Kafka restart left every half-open probe to a heartbeat round and hints
// failed for a minute), they write through a writer of their own, and an
// open breaker refuses them at once; one heartbeat per region at a time.
func TestProducerHeartbeatsAndTheBreaker(t *testing.T) {
	down := errors.New("broker down")
	hbw := &fakeWriter{fail: func(int) error { return down }}
	hw := &fakeWriter{fail: func(int) error { return nil }}
	p := fakeWriterProducer(t, ProducerConfig{}, hw)
	p.hbWriter = hbw
	b := &fakeBroker{topic: p.Topic("b"), partitions: 2}
	p.client = &kafka.Client{Addr: kafka.TCP("fake:1"), Transport: &brokerView{b: b}, Timeout: time.Second}
	p.hbClient = p.client
	ctx := context.Background()
	hb := record.Heartbeat{Producer: "s", Target: "b", Before: 10}
	for range 5 {
		if err := p.Heartbeat(ctx, hb); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("failing heartbeat = %v", err)
		}
	}
	if st := p.breaker.State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %v after failed heartbeats, want closed", st)
	}
	if hw.calls.Load() != 0 || hbw.calls.Load() != 5 {
		t.Fatalf("hint writer %d calls, heartbeat writer %d: heartbeats must use their own", hw.calls.Load(), hbw.calls.Load())
	}
	// Hints that fail open it; then heartbeats are refused without a write.
	hw.fail = func(int) error { return down }
	for i := range 3 {
		_ = p.Hint(ctx, smallHint(i))
	}
	if st := p.breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 3 failed hints, want open", st)
	}
	if err := p.Heartbeat(ctx, hb); !errors.Is(err, ErrUnavailable) || hbw.calls.Load() != 5 {
		t.Fatalf("heartbeat with the breaker open = %v after %d writes", err, hbw.calls.Load())
	}
}

// A heartbeat Kafka has not answered is not joined by the next round.
func TestProducerOneHeartbeatInFlight(t *testing.T) {
	slow := &fakeWriter{delay: 300 * time.Millisecond, fail: func(int) error { return nil }}
	p := fakeWriterProducer(t, ProducerConfig{}, slow)
	b := &fakeBroker{topic: p.Topic("b"), partitions: 2}
	p.client = &kafka.Client{Addr: kafka.TCP("fake:1"), Transport: &brokerView{b: b}, Timeout: time.Second}
	p.hbClient = p.client
	hb := record.Heartbeat{Producer: "s", Target: "b", Before: 10}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Heartbeat(ctx, hb); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("heartbeat past its deadline = %v", err)
	}
	if err := p.Heartbeat(context.Background(), hb); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "still waiting") {
		t.Fatalf("heartbeat while the last is in flight = %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := p.Heartbeat(context.Background(), hb); err != nil {
		t.Fatalf("heartbeat once the last was answered = %v", err)
	}
	if n := slow.calls.Load(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
}
