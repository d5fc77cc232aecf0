package hints

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/schema"
)

// blackHole accepts TCP connections and never answers, like a broker that
// hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	t.Cleanup(func() { close(done); ln.Close() })
	return ln.Addr().String()
}

// refused returns an address nothing listens on.
func refused(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newTestProducer(t *testing.T, cfg ProducerConfig) *Producer {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestNewProducerRejectsBadConfig(t *testing.T) {
	cases := map[string]ProducerConfig{
		"no brokers":            {},
		"buffer below max hint": {Brokers: []string{"x:1"}, MaxBufferedBytes: 10, MaxHintBytes: 100},
		"zero partitions":       {Brokers: []string{"x:1"}, Partitions: -1},
		"bad replication":       {Brokers: []string{"x:1"}, ReplicationFactor: -2},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := NewProducer(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewProducer = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestProducerRefusesBadHintsWithoutKafka(t *testing.T) {
	p := newTestProducer(t, ProducerConfig{Brokers: []string{refused(t)}, MaxHintBytes: 1024, MaxBufferedBytes: 4096})
	ctx := context.Background()
	if err := p.Hint(ctx, record.Hint{Target: "", Namespace: "users", PK: []byte("p")}); !errors.Is(err, record.ErrInvalidHint) {
		t.Fatalf("Hint(no target) = %v, want record.ErrInvalidHint", err)
	}
	big := record.Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: make([]byte, 2000)}
	if err := p.Hint(ctx, big); !errors.Is(err, ErrHintTooLarge) {
		t.Fatalf("Hint(2000-byte value) = %v, want ErrHintTooLarge", err)
	}
	if got := metricValue(p.failed.WithLabelValues("b", failTooLarge)); got != 1 {
		t.Errorf("failures{reason=too_large} = %v, want 1", got)
	}
}

// TestProducerUnavailableFailsFast: with nothing listening, record.Hint fails with
// ErrUnavailable well before ProduceTimeout, and once the breaker is open,
// at once.
func TestProducerUnavailableFailsFast(t *testing.T) {
	p := newTestProducer(t, ProducerConfig{Brokers: []string{refused(t)}, ProduceTimeout: 20 * time.Second, BreakerOpenFor: time.Minute})
	h := record.Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: []byte("v")}
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		begin := time.Now()
		err := p.Hint(ctx, h)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Hint #%d = %v, want ErrUnavailable", i, err)
		}
		if d := time.Since(begin); d > 3500*time.Millisecond {
			t.Fatalf("Hint #%d took %v, longer than its context allowed", i, d)
		}
	}
	// The breaker is open now: refusal without any network round trip.
	begin := time.Now()
	err := p.Hint(context.Background(), h)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "recently") {
		t.Fatalf("Hint with open breaker = %v, want ErrUnavailable (breaker)", err)
	}
	if d := time.Since(begin); d > 100*time.Millisecond {
		t.Errorf("Hint with open breaker took %v", d)
	}
	if got := metricValue(p.failed.WithLabelValues("b", failUnavailable)); got != 7 {
		t.Errorf("failures{reason=unavailable} = %v, want 7", got)
	}
	if got := metricValue(p.produced); got != 0 {
		t.Errorf("produced = %v, want 0", got)
	}
}

// TestProducerBoundedBuffer: while Kafka hangs, bytes waiting for an
// acknowledgement stay counted even after the caller gave up, and a hint
// that would go past MaxBufferedBytes fails at once.
func TestProducerBoundedBuffer(t *testing.T) {
	p := newTestProducer(t, ProducerConfig{
		Brokers:          []string{blackHole(t)},
		MaxHintBytes:     1024,
		MaxBufferedBytes: 1024,
		ProduceTimeout:   3 * time.Second,
	})
	// Pretend the topic exists so that the hint goes straight to the writer.
	ti := &topicInit{done: make(chan struct{})}
	close(ti.done)
	p.topics["b"] = ti

	h := record.Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: make([]byte, 600)}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := p.Hint(ctx, h)
	cancel()
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hint against a hanging broker = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	if b := p.buffered.Load(); b < 600 {
		t.Fatalf("buffered = %d after the caller gave up, want the record still counted", b)
	}
	begin := time.Now()
	err = p.Hint(context.Background(), h)
	if !errors.Is(err, ErrBufferFull) {
		t.Fatalf("second record.Hint = %v, want ErrBufferFull", err)
	}
	if d := time.Since(begin); d > 100*time.Millisecond {
		t.Errorf("ErrBufferFull took %v, want immediate", d)
	}
	// Close waits for the stuck write to give up (ProduceTimeout) and
	// releases everything.
	if err := p.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	if b := p.buffered.Load(); b != 0 {
		t.Fatalf("buffered = %d after Close, want 0", b)
	}
	if err := p.Hint(context.Background(), h); !errors.Is(err, ErrClosed) {
		t.Fatalf("Hint after Close = %v, want ErrClosed", err)
	}
}

// fakeWriter stands in for the kafka-go Writer: every write takes delay,
// then fails with the error fail returns (nil: success).
type fakeWriter struct {
	delay time.Duration
	fail  func(n int) error // n counts writes from 0
	calls atomic.Int64
	got   chan kafka.Message // if not nil, receives every message written
}

func (w *fakeWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	n := int(w.calls.Add(1) - 1)
	if w.delay > 0 {
		select {
		case <-time.After(w.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := w.fail(n); err != nil {
		return err
	}
	if w.got != nil {
		for _, m := range msgs {
			w.got <- m
		}
	}
	return nil
}

func (w *fakeWriter) Close() error { return nil }

// errBrokerDown is what a write to a dead broker returns.
var errBrokerDown = fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)

// fakeWriterProducer returns a producer whose topic for region "b" exists
// and whose writes go to w.
func fakeWriterProducer(t *testing.T, cfg ProducerConfig, w *fakeWriter) *Producer {
	t.Helper()
	cfg.Brokers = []string{refused(t)}
	p := newTestProducer(t, cfg)
	p.writer, p.hbWriter = w, w
	ti := &topicInit{done: make(chan struct{})}
	close(ti.done)
	p.topics["b"] = ti
	return p
}

func smallHint(i int) record.Hint {
	return record.Hint{Target: "b", Namespace: "users", PK: fmt.Appendf(nil, "p%d", i), Value: []byte("v"), Timestamp: int64(i + 1)}
}

// TestProducerBreakerScatteredFailures: failures separated by successes
// never open the breaker, however many there are: a success resets the
// count of consecutive failures.
func TestProducerBreakerScatteredFailures(t *testing.T) {
	cases := []struct {
		name    string
		pattern string // one character per write: x fails, . succeeds
	}{
		{"two failures then a success", "xx.xx.xx.xx.xx.xx.xx.xx.xx.xx."},
		{"alternating", "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x."},
		{"rare failures", "..x.....x.....x.....x.....x..."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &fakeWriter{fail: func(n int) error {
				if c.pattern[n%len(c.pattern)] == 'x' {
					return errBrokerDown
				}
				return nil
			}}
			p := fakeWriterProducer(t, ProducerConfig{BreakerOpenFor: time.Hour}, w)
			for i := range len(c.pattern) {
				err := p.Hint(context.Background(), smallHint(i))
				wantFail := c.pattern[i] == 'x'
				switch {
				case wantFail && !errors.Is(err, ErrUnavailable):
					t.Fatalf("hint %d = %v, want ErrUnavailable from the writer", i, err)
				case !wantFail && err != nil:
					t.Fatalf("hint %d = %v, want success (breaker %v)", i, err, p.breaker.State())
				}
			}
			if got := w.calls.Load(); got != int64(len(c.pattern)) {
				t.Errorf("writer saw %d hints, want %d: the breaker refused some", got, len(c.pattern))
			}
			if s := p.breaker.State(); s != gobreaker.StateClosed {
				t.Errorf("breaker %v after scattered failures, want closed", s)
			}
		})
	}
}

// TestProducerBreakerRecoversForConcurrentHints: after an outage opens the
// breaker, the first successful probe closes it, so that concurrent hints
// go through again (a half-open breaker lets one at a time).
func TestProducerBreakerRecoversForConcurrentHints(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	w := &fakeWriter{delay: 20 * time.Millisecond, fail: func(int) error {
		if down.Load() {
			return errBrokerDown
		}
		return nil
	}}
	p := fakeWriterProducer(t, ProducerConfig{BreakerOpenFor: 50 * time.Millisecond}, w)
	ctx := context.Background()
	for i := range 3 {
		if err := p.Hint(ctx, smallHint(i)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("hint %d during the outage = %v, want ErrUnavailable", i, err)
		}
	}
	if s := p.breaker.State(); s != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 3 failures in a row, want open", s)
	}
	down.Store(false)
	waitFor(t, "a probe through the half-open breaker", func() bool { return p.Hint(ctx, smallHint(100)) == nil })
	if s := p.breaker.State(); s != gobreaker.StateClosed {
		t.Fatalf("breaker %v after a successful probe, want closed", s)
	}
	const n = 32
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Hint(ctx, smallHint(200+i))
		}()
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d concurrent hints failed after recovery, first: %v", len(failed), n, failed[0])
	}
}

// TestProducerBufferFullIsNeutral: ErrBufferFull neither counts against
// Kafka nor as a success that would close a half-open breaker.
func TestProducerBufferFullIsNeutral(t *testing.T) {
	w := &fakeWriter{fail: func(int) error { return errBrokerDown }}
	p := fakeWriterProducer(t, ProducerConfig{BreakerOpenFor: time.Hour, MaxHintBytes: 1024, MaxBufferedBytes: 1024}, w)
	p.buffered.Store(1024) // as if a record were waiting for Kafka
	for i := range 5 {
		if err := p.Hint(context.Background(), smallHint(i)); !errors.Is(err, ErrBufferFull) {
			t.Fatalf("hint %d = %v, want ErrBufferFull", i, err)
		}
	}
	if c := p.breaker.Counts(); c.TotalFailures != 0 || c.TotalSuccesses != 0 {
		t.Fatalf("breaker counted buffer-full hints: %+v", c)
	}
	p.buffered.Store(0)
}

// TestProducerTooLargeForKafkaIsNotAnOutage: Kafka refusing a record as too
// large is ErrHintTooLarge and does not open the breaker.
func TestProducerTooLargeForKafkaIsNotAnOutage(t *testing.T) {
	w := &fakeWriter{fail: func(int) error { return kafka.MessageSizeTooLarge }}
	p := fakeWriterProducer(t, ProducerConfig{BreakerOpenFor: time.Hour}, w)
	for i := range 5 {
		if err := p.Hint(context.Background(), smallHint(i)); !errors.Is(err, ErrHintTooLarge) {
			t.Fatalf("hint %d = %v, want ErrHintTooLarge", i, err)
		}
	}
	if s := p.breaker.State(); s != gobreaker.StateClosed {
		t.Fatalf("breaker %v, want closed", s)
	}
	if got := metricValue(p.failed.WithLabelValues("b", failTooLarge)); got != 5 {
		t.Errorf("failures{reason=too_large} = %v, want 5", got)
	}
}

// largestHint is the largest row a store with default limits writes, with
// every other field at its longest.
func largestHint() record.Hint {
	return record.Hint{
		Target:    strings.Repeat("t", record.MaxRegionLen),
		Origin:    strings.Repeat("o", record.MaxRegionLen),
		Namespace: "n" + strings.Repeat("x", schema.MaxNameLen-1),
		PK:        bytes.Repeat([]byte{0xff}, schema.MaxPartitionKey),
		CK:        bytes.Repeat([]byte{0xfe}, schema.MaxClusteringKey),
		Value:     bytes.Repeat([]byte{0xfd}, schema.DefaultMaxValueSize),
		Timestamp: math.MinInt64,
		ExpiresAt: time.UnixMicro(math.MaxInt64),
		CreatedAt: time.UnixMicro(math.MinInt64),
	}
}

// TestProducerTakesLargestStoreRow: the record of the largest legal row,
// signed with the longest key id, fits record.DefaultMaxHintBytes; its overhead
// fits record.MaxRecordOverhead; the Writer's batches and the topics the producer
// creates take it with its key.
func TestProducerTakesLargestStoreRow(t *testing.T) {
	kr := mustKeyring(t, record.KeyringConfig{Current: record.Key{ID: strings.Repeat("k", record.MaxKeyIDLen), Secret: []byte("0123456789abcdef0123456789abcdef")}})
	h := largestHint()
	rec, err := record.Encode(h, kr)
	if err != nil {
		t.Fatal(err)
	}
	if overhead := len(rec) - len(h.PK) - len(h.CK) - len(h.Value); overhead > record.MaxRecordOverhead {
		t.Fatalf("record overhead %d > record.MaxRecordOverhead %d", overhead, record.MaxRecordOverhead)
	}
	if len(rec) > record.DefaultMaxHintBytes {
		t.Fatalf("largest record is %d bytes, record.DefaultMaxHintBytes %d", len(rec), record.DefaultMaxHintBytes)
	}

	p := newTestProducer(t, ProducerConfig{Brokers: []string{refused(t)}, Keyring: kr})
	kw, ok := p.writer.(*kafka.Writer)
	if !ok {
		t.Fatalf("writer is %T", p.writer)
	}
	msg := kafka.Message{Key: h.PK, Value: rec}
	msgBytes := int64(len(msg.Key) + len(msg.Value) + kafkaRecordOverhead)
	if kw.BatchBytes < msgBytes {
		t.Errorf("Writer.BatchBytes %d < %d, the largest hint with its key", kw.BatchBytes, msgBytes)
	}
	if m := topicMaxMessageBytes(kw.BatchBytes, p.cfg.BatchSize); m < kw.BatchBytes+kafkaBatchHeader {
		t.Errorf("topics get max.message.bytes %d, below a full batch %d", m, kw.BatchBytes+kafkaBatchHeader)
	}

	w := &fakeWriter{fail: func(int) error { return nil }, got: make(chan kafka.Message, 1)}
	p.writer = w
	ti := &topicInit{done: make(chan struct{})}
	close(ti.done)
	p.topics[h.Target] = ti
	if err := p.Hint(context.Background(), h); err != nil {
		t.Fatalf("Hint(largest row) = %v", err)
	}
	got := <-w.got
	back, err := record.Decode(got.Value, kr)
	if err != nil || !bytes.Equal(back.Value, h.Value) || !bytes.Equal(back.CK, h.CK) {
		t.Fatalf("largest hint did not round-trip: %v", err)
	}
}

// TestWindowBalancerSharesAPartitionPerWindow: the records of one batch
// window go to one partition (one produce request), and successive windows
// move on through the partitions.
func TestWindowBalancerSharesAPartitionPerWindow(t *testing.T) {
	b := &windowBalancer{window: time.Hour} // one window for the whole test
	parts := []int{0, 1, 2, 3, 4, 5, 6, 7}
	first := b.Balance(kafka.Message{Key: []byte("a")}, parts...)
	for i := range 100 {
		if got := b.Balance(kafka.Message{Key: fmt.Appendf(nil, "k%d", i)}, parts...); got != first {
			t.Fatalf("record %d went to partition %d, the window's partition is %d", i, got, first)
		}
	}
	b = &windowBalancer{window: time.Millisecond}
	seen := map[int]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < len(parts) && time.Now().Before(deadline) {
		seen[b.Balance(kafka.Message{}, parts...)] = true
		time.Sleep(time.Millisecond)
	}
	if len(seen) != len(parts) {
		t.Errorf("1ms windows over 5s used partitions %v, want all %d", seen, len(parts))
	}
}
