package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/internal/wait"
)

// ConnectionCloseTimeout bounds how long Close waits for the regions'
// connections to close once the background work has finished. Closing a
// region's driver session can block for tens of seconds when the region is
// unreachable: gocql's Session.Close waits, uncancellably, for a schema
// refresh in flight (one starts a second after any schema change in the
// region and waits up to 10 s for schema agreement, each request up to the
// driver's request timeout) and for a control-connection heartbeat in
// flight (up to the request timeout when the region is a black hole). The
// regions are closed concurrently, and those not closed in this time go on
// closing in the background.
const ConnectionCloseTimeout = 10 * time.Second

// Close closes the Store like CloseContext with a context that never ends,
// except that it waits at most ConnectionCloseTimeout for the regions'
// connections to close.
//
// It waits, however long it takes, for running calls and for all background
// work (writes to the other regions, late synchronous writes, hints, read
// repairs) to finish. Each background write is bounded by Config.Timeout,
// but with a backlog of queued writes to regions that time out (and breakers
// disabled) draining can take many timeouts; use CloseContext to bound it.
// Then it closes every region's connections, all at once, and waits for them
// at most ConnectionCloseTimeout: if some are still closing then, it returns
// a *StillClosingError naming those regions (matching ErrStillClosing and
// context.DeadlineExceeded) and they finish closing in the background.
func (s *Store) Close() error {
	return s.close(context.Background(), ConnectionCloseTimeout)
}

// CloseContext closes the Store. Calls made after it starts return
// ErrClosed. It waits for running calls and for all background work to
// finish, then closes every region's connections, all regions concurrently,
// waits for them, and returns nil (or the errors from closing connections,
// each naming its region).
//
// If ctx ends first, CloseContext stops waiting: every region request still
// in flight is canceled (a write may still have been applied in its region),
// and the writes that were canceled or still queued and never started are
// handed to the hint sink instead, as writes the region missed. Since ctx
// has already ended, those hints are bounded by one Config.HintTimeout in
// total; the writes not hinted in that time are counted in
// hints_failed_total and left to anti-entropy repair. Queued read repairs
// are dropped. The region connections are then closed and CloseContext
// returns an error wrapping ctx's error.
//
// The wait for the region connections is bounded by ctx too: when ctx ends
// (or has ended) before every region has closed its connections,
// CloseContext returns then (if ctx had already ended, after at most
// closeGrace, one second, more for the healthy regions) with a
// *StillClosingError, matching ErrStillClosing and ctx's error, that names
// the regions still closing; those go on closing in the background and
// their goroutines end when the executor's Close returns. So with a ctx that ends, CloseContext returns
// within ctx's deadline plus at most one Config.HintTimeout and a second.
// Every other goroutine the Store started has stopped when CloseContext
// returns.
//
// The executors must honour the cancellation of their requests' contexts for
// this to be prompt. CloseContext is idempotent: later calls return nil at
// once.
func (s *Store) CloseContext(ctx context.Context) error {
	return s.close(ctx, 0)
}

// close is CloseContext; connBound > 0 also bounds the wait for the region
// connections to close (Close's ConnectionCloseTimeout).
func (s *Store) close(ctx context.Context, connBound time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s.calls.Wait()
		s.bg.Wait()
		close(s.queue)
		s.workers.Wait()
		close(s.hintQueue)
		s.hinters.Wait()
		if s.debt != nil {
			close(s.debt.queue)
			<-s.debt.done
		}
	}()
	var ctxErr error
	select {
	case <-drained:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		select {
		case <-drained: // finished at the same moment
		default:
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.HintTimeout)
			defer cancel()
			s.drain.begin(dctx)
			s.abort(errAborted)
			<-drained
		}
	}
	s.abort(nil)    // every request has ended; release the abort context
	s.wm.close(ctx) // every write has settled or never will: retire the Store from the watermark
	var errs []error
	if ctxErr != nil {
		if n := s.drain.lost.Load(); n > 0 {
			s.log.LogAttrs(context.Background(), slog.LevelError,
				"store: closed before some missed writes could be hinted; left to anti-entropy repair",
				slog.Int64("rows", n), slog.Any("error", ctxErr))
		}
		errs = append(errs, fmt.Errorf("store: close: stopped waiting for background work, handing the writes canceled or still queued to the hint sink: %w", ctxErr))
	}
	cctx := ctx
	if connBound > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeoutCause(ctx, connBound,
			fmt.Errorf("%w: Close waits at most %s for the region connections to close", context.DeadlineExceeded, connBound))
		defer cancel()
	}
	if err := s.closeExecutors(cctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeGrace is how long closeExecutors waits for the regions when its ctx
// has already ended, so that only the regions that hang are reported.
const closeGrace = time.Second

// closeExecutors closes every region's executor concurrently and waits for
// them until ctx ends (at most closeGrace if it already has). It returns the
// errors of the closes that finished, each naming its region, and, if ctx
// ended first, a *StillClosingError naming the regions still closing, which
// go on in the background (s.closers counts them).
func (s *Store) closeExecutors(ctx context.Context) error {
	// Background connection attempts stop first (each honours its
	// context), so that no region is connected after this.
	s.lifeStop()
	s.reconnectors.Wait()
	var closers []wait.Closer
	for _, r := range s.regions {
		h := r.exec.Load()
		if h == nil {
			continue // never connected
		}
		s.closers.Add(1)
		closers = append(closers, wait.Closer{
			Name: fmt.Sprintf("region %q", r.name),
			Close: func() error {
				defer s.closers.Done()
				return h.Close()
			},
		})
	}
	return wait.CloseAll(ctx, closeGrace, "store: region connections", closers, func(name string, err error) {
		attrs := []slog.Attr{slog.String("what", name)}
		level := slog.LevelInfo
		if err != nil {
			level = slog.LevelWarn
			attrs = append(attrs, slog.Any("error", err))
		}
		s.log.LogAttrs(context.Background(), level,
			"store: region connections finished closing after Close stopped waiting", attrs...)
	})
}

// closeOpened closes the regions Open has connected to when it fails,
// waiting for them at most ConnectionCloseTimeout.
func (s *Store) closeOpened() {
	ctx, cancel := context.WithTimeout(context.Background(), ConnectionCloseTimeout)
	defer cancel()
	if err := s.closeExecutors(ctx); err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "store: open failed; closing the regions already connected to",
			slog.Any("error", err))
	}
}

// drainState is what CloseContext sets up when it gives up waiting: the
// deadline that bounds every hint made from then on, and the count of the
// writes that could not be hinted within it.
type drainState struct {
	mu   sync.Mutex
	ctx  context.Context // nil until CloseContext gives up waiting
	lost atomic.Int64
}

func (d *drainState) begin(ctx context.Context) {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
}

// current returns the drain deadline, or nil while not draining.
func (d *drainState) current() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}
