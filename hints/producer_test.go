package hints

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
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
	if err := p.Hint(ctx, Hint{Target: "", Namespace: "users", PK: []byte("p")}); !errors.Is(err, ErrInvalidHint) {
		t.Fatalf("Hint(no target) = %v, want ErrInvalidHint", err)
	}
	big := Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: make([]byte, 2000)}
	if err := p.Hint(ctx, big); !errors.Is(err, ErrHintTooLarge) {
		t.Fatalf("Hint(2000-byte value) = %v, want ErrHintTooLarge", err)
	}
	if got := metricValue(p.failed.WithLabelValues("b", failTooLarge)); got != 1 {
		t.Errorf("failures{reason=too_large} = %v, want 1", got)
	}
}

// TestProducerUnavailableFailsFast: with nothing listening, Hint fails with
// ErrUnavailable well before ProduceTimeout, and once the breaker is open,
// at once.
func TestProducerUnavailableFailsFast(t *testing.T) {
	p := newTestProducer(t, ProducerConfig{Brokers: []string{refused(t)}, ProduceTimeout: 20 * time.Second, BreakerOpenFor: time.Minute})
	h := Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: []byte("v")}
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

	h := Hint{Target: "b", Namespace: "users", PK: []byte("p"), Value: make([]byte, 600)}
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
		t.Fatalf("second Hint = %v, want ErrBufferFull", err)
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
