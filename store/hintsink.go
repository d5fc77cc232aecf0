package store

//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -source=driver/driver.go -destination=mock_executor_test.go -package=store
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -source=hintsink.go -destination=mock_hintsink_test.go -package=store

import (
	"context"
	"log/slog"

	"github.com/tidemark/tidemark/hints/record"
)

// HintSink stores hints: writes that a region missed, to be replayed there
// later (docs/design.md, "Hints"). The production implementation is the Kafka
// producer in package hints (hints.NewProducer); tests use fakes.
//
// Hint must return nil only once the hint is durable: a nil return is what
// lets a write at level Any succeed while the home region is down. Hint is
// called concurrently and must honour ctx.
type HintSink interface {
	Hint(ctx context.Context, h record.Hint) error
}

// HintSinkFunc adapts a function to HintSink.
type HintSinkFunc func(ctx context.Context, h record.Hint) error

// Hint calls f.
func (f HintSinkFunc) Hint(ctx context.Context, h record.Hint) error { return f(ctx, h) }

// discardSink is the HintSink used when Config.HintSink is nil. It stores
// nothing and says so: it logs the missed write and returns ErrNoHintSink,
// so the Store counts the write as left to repair and a write at level Any
// does not succeed on its strength.
type discardSink struct {
	log *slog.Logger
}

func (d discardSink) Hint(ctx context.Context, h record.Hint) error {
	d.log.LogAttrs(ctx, slog.LevelWarn, "store: missed write not hinted (no hint sink configured); left to anti-entropy repair",
		slog.String("target", h.Target), slog.String("namespace", h.Namespace), slog.Int64("ts", h.Timestamp))
	return ErrNoHintSink
}
