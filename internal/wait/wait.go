// Package wait holds Tidemark's waiting mechanisms, each defined once: a
// bounded close of several things at once that names what is still closing
// (CloseAll, StillClosingError), a sleep that a context cuts short (Sleep),
// a bounded exponential back-off with jitter (Backoff, over
// github.com/cenkalti/backoff/v4), and taking any number of tokens from a
// rate limiter (Tokens, over golang.org/x/time/rate).
package wait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"
)

// ErrStillClosing is matched (errors.Is) by every StillClosingError: a
// close that stopped waiting for something that had not finished closing.
// The packages that close things re-export it (store.ErrStillClosing,
// hints.ErrStillClosing, the daemon's ErrStillClosing).
var ErrStillClosing = errors.New("still closing")

// StillClosingError reports that a close stopped waiting for some of the
// things it was closing. They go on closing in the background; the
// goroutines that close them end when their Close returns.
type StillClosingError struct {
	// What says what was being closed ("store: region connections").
	What string
	// Stragglers names each thing that had not finished, in the order
	// given to CloseAll.
	Stragglers []string
	// Cause is why the wait ended: the context's error (or its cause).
	Cause error
}

// Error names what is still closing and why the wait ended.
func (e *StillClosingError) Error() string {
	return fmt.Sprintf("%s: %s: stopped waiting for %s (%s closing in the background): %v",
		e.What, ErrStillClosing, strings.Join(e.Stragglers, ", "), pronoun(len(e.Stragglers)), e.Cause)
}

func pronoun(n int) string {
	if n == 1 {
		return "it goes on"
	}
	return "they go on"
}

// Is makes errors.Is(err, ErrStillClosing) true.
func (e *StillClosingError) Is(target error) bool { return target == ErrStillClosing }

// Unwrap returns the cause, so that errors.Is(err, context.DeadlineExceeded)
// tells a bound that passed.
func (e *StillClosingError) Unwrap() error { return e.Cause }

// Closer is one thing CloseAll closes.
type Closer struct {
	// Name identifies it in errors and logs ("region \"b\"").
	Name string
	// Close closes it; for something that stops by itself, a function
	// that waits for it.
	Close func() error
}

// CloseAll runs every closer's Close in a goroutine of its own and waits
// until they have all returned or ctx ends. When ctx has already ended on
// entry, it still waits up to grace, so that healthy things that close at
// once are not reported. It returns the errors of the closes that
// finished, each prefixed with its closer's name, joined with a
// *StillClosingError (What: what) naming those still running, or nil.
//
// late, if not nil, is called from the straggler's goroutine when a close
// CloseAll stopped waiting for finishes after all, with its error.
func CloseAll(ctx context.Context, grace time.Duration, what string, closers []Closer, late func(name string, err error)) error {
	type outcome struct {
		mu        sync.Mutex
		done      bool
		err       error
		abandoned bool
	}
	outs := make([]*outcome, len(closers))
	finished := make(chan int, len(closers))
	for i, c := range closers {
		o := &outcome{}
		outs[i] = o
		go func() {
			err := c.Close()
			o.mu.Lock()
			o.done, o.err = true, err
			abandoned := o.abandoned
			o.mu.Unlock()
			finished <- i
			if abandoned && late != nil {
				late(c.Name, err)
			}
		}()
	}
	wctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
	}
wait:
	for left := len(closers); left > 0; left-- {
		select {
		case <-finished:
		case <-wctx.Done():
			break wait
		}
	}
	var errs []error
	var stragglers []string
	for i, o := range outs {
		o.mu.Lock()
		switch {
		case !o.done:
			o.abandoned = true
			stragglers = append(stragglers, closers[i].Name)
		case o.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", closers[i].Name, o.err))
		}
		o.mu.Unlock()
	}
	if len(stragglers) > 0 {
		errs = append(errs, &StillClosingError{What: what, Stragglers: stragglers, Cause: Cause(ctx)})
	}
	return errors.Join(errs...)
}

// Within is CloseAll of one closer bounded by d.
func Within(d time.Duration, what string, c Closer) error {
	ctx, cancel := context.WithTimeoutCause(context.Background(), d,
		fmt.Errorf("%w: waited %v", context.DeadlineExceeded, d))
	defer cancel()
	return CloseAll(ctx, 0, what, []Closer{c}, nil)
}

// Done returns a Closer that waits for ch to be closed.
func Done(name string, ch <-chan struct{}) Closer {
	return Closer{Name: name, Close: func() error { <-ch; return nil }}
}

// Cause is ctx's error, or its cause when that says more: the cause itself
// if it wraps the error, both otherwise.
func Cause(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	switch {
	case cause == nil || cause == err:
		return err
	case errors.Is(cause, err):
		return cause
	default:
		return fmt.Errorf("%w: %w", err, cause)
	}
}

// Sleep waits d, or until ctx ends, and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is a bounded exponential back-off with jitter: the first delay
// is about first, each next one about twice the last, never above ceiling, each
// drawn at random within ±50 % of its nominal value so that processes that
// failed together do not retry together. It is not safe for concurrent use:
// give each retry loop its own.
type Backoff struct {
	b       *backoff.ExponentialBackOff
	ceiling time.Duration
}

// NewBackoff returns a back-off from first to ceiling (a ceiling below
// first is taken as first).
func NewBackoff(first, ceiling time.Duration) *Backoff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = first
	b.MaxInterval = max(first, ceiling)
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxElapsedTime = 0 // never gives up: the callers decide when to stop
	b.Reset()
	return &Backoff{b: b, ceiling: b.MaxInterval}
}

// Next returns the next delay.
func (b *Backoff) Next() time.Duration { return min(b.b.NextBackOff(), b.ceiling) }

// Reset starts again from the first delay, after a success.
func (b *Backoff) Reset() { b.b.Reset() }

// Sleep waits the next delay, or until ctx ends, and reports whether ctx is
// still live.
func (b *Backoff) Sleep(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Tokens takes n tokens from lim, waiting as its rate requires, in chunks
// of at most its burst (rate.Limiter.WaitN refuses more than the burst at
// once). A nil limiter or n <= 0 takes nothing.
func Tokens(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	burst := max(lim.Burst(), 1)
	for n > 0 {
		c := min(n, burst)
		if err := lim.WaitN(ctx, c); err != nil {
			return err
		}
		n -= c
	}
	return nil
}
