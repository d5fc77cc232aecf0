package hints

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/internal/syncbuf"
)

// Shutdown bounds used by these tests instead of ReplayerCloseTimeout and
// the default ProduceTimeout; giveUp is how long a test waits for a call
// that must return within those bounds before it declares it hung.
const (
	testCloseTimeout = 100 * time.Millisecond
	giveUp           = 3 * time.Second
)

// stuckFetcher is a fetcher whose Close blocks until release is closed,
// like a kafka-go Reader closing during a rebalance.
type stuckFetcher struct {
	fetcher
	release <-chan struct{}
}

func (f *stuckFetcher) Close() error {
	<-f.release
	return nil
}

// stuckWriter is a messageWriter whose Close blocks until release is
// closed, like a kafka-go Writer waiting for batches to a dead broker.
type stuckWriter struct {
	messageWriter
	release <-chan struct{}
}

func (w *stuckWriter) Close() error {
	<-w.release
	return nil
}

// releaseOnCleanup returns a channel closed when the test ends, so that
// every stuck fake (and the goroutine abandoned in it) finishes.
func releaseOnCleanup(t *testing.T) <-chan struct{} {
	c := make(chan struct{})
	t.Cleanup(func() { close(c) })
	return c
}

// returnsWithin runs fn and fails the test if it has not returned within
// giveUp; it returns how long fn took and its error.
func returnsWithin(t *testing.T, what string, fn func() error) (time.Duration, error) {
	t.Helper()
	begin := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	select {
	case err := <-errc:
		return time.Since(begin), err
	case <-time.After(giveUp):
		t.Fatalf("%s did not return within %v", what, giveUp)
		return 0, nil
	}
}

// runInBackground starts r.Run(ctx) and returns its result channel; it
// waits until Run has created its fetcher (via fetched).
func runInBackground(t *testing.T, ctx context.Context, r *Replayer, fetched <-chan struct{}) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case <-fetched:
	case <-time.After(giveUp):
		t.Fatal("Run did not create its Kafka reader")
	}
	return errc
}

// stuckReaderReplayer returns a replayer whose Kafka reader never closes
// (until the test ends) and whose log goes to logs, and a channel closed
// once Run has created the reader.
func stuckReaderReplayer(t *testing.T, logs *syncbuf.Buffer) (*Replayer, <-chan struct{}) {
	h := newHarness(t)
	r := h.replayer(func(c *ReplayerConfig) {
		c.GroupID = "group-stuck"
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	r.closeTimeout = testCloseTimeout
	release := releaseOnCleanup(t)
	fetched := make(chan struct{})
	var once sync.Once
	r.newFetcher = func() fetcher {
		defer once.Do(func() { close(fetched) })
		return &stuckFetcher{fetcher: h.topic.fetcher(), release: release}
	}
	return r, fetched
}

// TestReplayerRunAbandonsStuckReader: a Kafka reader whose Close never
// returns does not keep Run from returning after its context is canceled;
// Run logs a warning naming the topic and group, and Close reports the
// abandoned reader.
func TestReplayerRunAbandonsStuckReader(t *testing.T) {
	var logs syncbuf.Buffer
	r, fetched := stuckReaderReplayer(t, &logs)
	ctx, cancel := context.WithCancel(context.Background())
	errc := runInBackground(t, ctx, r, fetched)

	cancel()
	took, err := returnsWithin(t, "Run after cancel, with a Kafka reader that never closes", func() error { return <-errc })
	if err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
	if took < testCloseTimeout/2 {
		t.Errorf("Run returned after %v, before its reader's close timeout (%v)", took, testCloseTimeout)
	}
	out := logs.String()
	for _, want := range []string{"did not close", r.Topic(), "group-stuck"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	_, err = returnsWithin(t, "Close", r.Close)
	if !errors.Is(err, ErrStillClosing) {
		t.Fatalf("Close = %v, want ErrStillClosing for the abandoned reader", err)
	}
	for _, want := range []string{"Kafka reader", r.Topic(), "group-stuck"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close error %q does not name %q", err, want)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

// TestReplayerCloseWithStuckReader: Close of a running replayer whose Kafka
// reader never closes returns within its bound, with an error naming the
// reader; Run returns as well.
func TestReplayerCloseWithStuckReader(t *testing.T) {
	var logs syncbuf.Buffer
	r, fetched := stuckReaderReplayer(t, &logs)
	errc := runInBackground(t, context.Background(), r, fetched)

	_, err := returnsWithin(t, "Close with a Kafka reader that never closes", r.Close)
	if !errors.Is(err, ErrStillClosing) || !strings.Contains(err.Error(), "Kafka reader") {
		t.Fatalf("Close = %v, want ErrStillClosing naming the Kafka reader", err)
	}
	if _, err := returnsWithin(t, "Run after Close", func() error { return <-errc }); err != nil {
		t.Fatalf("Run = %v after Close, want nil", err)
	}
}

// TestReplayerCloseWithRunStuckInApply: an Apply that ignores cancellation
// keeps Run from returning; Close gives up on it within its bound and says
// what Run was doing.
func TestReplayerCloseWithRunStuckInApply(t *testing.T) {
	h := newHarness(t)
	h.addHint(0, goodHint(0), nil)
	release := make(chan struct{})
	applying := make(chan struct{})
	var once sync.Once
	r := h.replayer(func(c *ReplayerConfig) {
		c.Applier = ApplierFunc(func(context.Context, record.Hint) error {
			once.Do(func() { close(applying) })
			<-release // ignores ctx
			return nil
		})
	})
	r.closeTimeout = testCloseTimeout
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		close(release) // Apply returns, so Run ends
		select {
		case <-errc:
		case <-time.After(giveUp):
			t.Error("Run did not return once Apply returned")
		}
	})
	select {
	case <-applying:
	case <-time.After(giveUp):
		t.Fatal("the hint was never applied")
	}

	took, err := returnsWithin(t, "Close with Run stuck in Apply", r.Close)
	if !errors.Is(err, ErrStillClosing) {
		t.Fatalf("Close = %v, want ErrStillClosing", err)
	}
	for _, want := range []string{"stopped waiting for Run", "replaying hints", r.Topic()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close error %q does not say %q", err, want)
		}
	}
	if still, ok := errors.AsType[*StillClosingError](err); !ok || len(still.Stragglers) != 1 || !strings.HasPrefix(still.Stragglers[0], "Run") {
		t.Errorf("Close error %q is not a StillClosingError naming Run alone", err)
	}
	if took < testCloseTimeout/2 {
		t.Errorf("Close returned after %v, before its bound (%v): it did not wait for Run", took, testCloseTimeout)
	}
}

// TestReplayerCloseBoundsDeadLetterWriter: a dead-letter writer whose Close
// never returns does not hang Replayer.Close.
func TestReplayerCloseBoundsDeadLetterWriter(t *testing.T) {
	h := newHarness(t)
	r := h.replayer(nil)
	r.closeTimeout = testCloseTimeout
	r.dead = &stuckWriter{messageWriter: h.dead, release: releaseOnCleanup(t)}

	_, err := returnsWithin(t, "Close with a dead-letter writer that never closes", r.Close)
	if !errors.Is(err, ErrStillClosing) {
		t.Fatalf("Close = %v, want ErrStillClosing", err)
	}
	for _, want := range []string{"dead-letter writer", r.cfg.DeadLetterTopic} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close error %q does not name %q", err, want)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// TestProducerCloseBoundsStuckWriter: a Kafka writer whose Close never
// returns does not hang Producer.Close: it returns within 2 × ProduceTimeout
// with an error naming the writer, and still cancels the producer's context.
func TestProducerCloseBoundsStuckWriter(t *testing.T) {
	const produceTimeout = testCloseTimeout
	fw := &fakeWriter{fail: func(int) error { return nil }}
	p := fakeWriterProducer(t, ProducerConfig{ProduceTimeout: produceTimeout}, nil)
	p.writer = &stuckWriter{messageWriter: fw, release: releaseOnCleanup(t)}
	if err := p.Hint(context.Background(), smallHint(0)); err != nil {
		t.Fatal(err)
	}

	took, err := returnsWithin(t, "Producer.Close with a writer that never closes", p.Close)
	if !errors.Is(err, ErrStillClosing) || !strings.Contains(err.Error(), "Kafka writer") {
		t.Fatalf("Close = %v, want ErrStillClosing naming the Kafka writer", err)
	}
	if took > 2*produceTimeout+time.Second {
		t.Errorf("Close took %v, want at most 2 × ProduceTimeout (%v)", took, 2*produceTimeout)
	}
	if p.ctx.Err() == nil {
		t.Error("Close left the producer's context (and its transport) running")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := p.Hint(context.Background(), smallHint(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Hint after Close = %v, want ErrClosed", err)
	}
}

// blockingWriter is a messageWriter whose writes ignore their context and
// block until release is closed.
type blockingWriter struct {
	release <-chan struct{}
}

func (w *blockingWriter) WriteMessages(context.Context, ...kafka.Message) error {
	<-w.release
	return nil
}

func (w *blockingWriter) Close() error { return nil }

// TestProducerCloseBoundsHintsInFlight: a write that never finishes does
// not hang Producer.Close: it gives up on the hints in flight after
// ProduceTimeout, with an error saying so.
func TestProducerCloseBoundsHintsInFlight(t *testing.T) {
	const produceTimeout = testCloseTimeout
	release := releaseOnCleanup(t)
	p := fakeWriterProducer(t, ProducerConfig{ProduceTimeout: produceTimeout}, nil)
	p.writer = &blockingWriter{release: release}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Hint(ctx, smallHint(0)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Hint with a hanging writer = %v, want ErrUnavailable", err)
	}

	took, err := returnsWithin(t, "Producer.Close with a write that never finishes", p.Close)
	if !errors.Is(err, ErrStillClosing) || !strings.Contains(err.Error(), "hints in flight") {
		t.Fatalf("Close = %v, want ErrStillClosing naming the hints in flight", err)
	}
	if took < produceTimeout/2 || took > 2*produceTimeout+time.Second {
		t.Errorf("Close took %v, want about ProduceTimeout (%v)", took, produceTimeout)
	}
	if p.ctx.Err() == nil {
		t.Error("Close did not cancel the writes it abandoned")
	}
}
