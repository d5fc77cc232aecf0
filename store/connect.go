package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/store/driver"
)

// Connecting. Open connects to every region at once; a region it cannot
// reach for availability (the region is down, its network is cut) does not
// fail Open: the region starts unconnected — every request to it fails at
// once with ErrNotConnected, as if its breaker were open, so its share of
// writes becomes hints — and is connected in the background with back-off
// until it answers. Only what waiting cannot heal fails Open: a bad
// configuration, credentials or certificate the region refuses, a keyspace
// that does not exist.

// Back-off of the background connection attempts of a region Open could
// not reach.
const (
	reconnectFirst   = 500 * time.Millisecond
	reconnectCeiling = 30 * time.Second
)

// execHolder boxes a region's executor for an atomic pointer.
type execHolder struct{ driver.Executor }

// connState is what Health reports of a region's connection.
type connState struct {
	mu      sync.Mutex
	lastErr error
	since   time.Time // when the region was connected, or first failed to be
}

// executor returns the region's executor, or ErrNotConnected while the
// region is being connected in the background.
func (r *region) executor() (driver.Executor, error) {
	if h := r.exec.Load(); h != nil {
		return h.Executor, nil
	}
	r.conn.mu.Lock()
	defer r.conn.mu.Unlock()
	return nil, fmt.Errorf("%w: region %q (unreachable since %s, reconnecting in the background): %w",
		ErrNotConnected, r.name, r.conn.since.UTC().Format(time.RFC3339), r.conn.lastErr)
}

// awaitExecutor is executor, waiting up to bound (or ctx, or Close) for a
// region still connecting in the background.
func (s *Store) awaitExecutor(ctx context.Context, r *region, bound time.Duration) (driver.Executor, error) {
	deadline := time.Now().Add(bound)
	for {
		ex, err := r.executor()
		if err == nil || !time.Now().Before(deadline) || s.lifeCtx.Err() != nil {
			return ex, err
		}
		if !wait.Sleep(ctx, 50*time.Millisecond) {
			return ex, err
		}
	}
}

// connected records that the region's executor is ex.
func (s *Store) connected(r *region, ex driver.Executor) {
	r.exec.Store(&execHolder{ex})
	r.conn.mu.Lock()
	r.conn.lastErr, r.conn.since = nil, s.cfg.Now()
	r.conn.mu.Unlock()
	s.metrics.setConnected(r.name, true)
	if r.breaker != nil {
		s.metrics.setBreaker(r.name, r.breaker.State())
	} else {
		s.metrics.setBreaker(r.name, gobreaker.StateClosed)
	}
}

// connectAll starts every region's connection, each attempt bounded by
// Config.ConnectTimeout, and waits for the home region's first attempt and
// for every other region that answers (driver.Reach): a region still
// silent when the home region is done goes on connecting in the
// background, as does one whose first attempt failed for availability
// (its error recorded for Health). It returns the first error that
// waiting cannot heal; the caller then stops the background attempts and
// closes what was connected.
func (s *Store) connectAll(ctx context.Context, ordered []RegionConfig) error {
	type attempt struct {
		reach *driver.Reach
		done  chan struct{}
		err   error // the first attempt's, once done is closed
	}
	atts := make([]*attempt, len(ordered))
	var detaches []func() bool
	defer func() {
		for _, detach := range detaches {
			detach()
		}
	}()
	for i, rc := range ordered {
		a := &attempt{reach: driver.NewReach(), done: make(chan struct{})}
		atts[i] = a
		r := s.regions[i]
		// The attempt lives on the Store's lifetime, not Open's context,
		// so that a region left connecting when Open returns keeps going;
		// while Open waits, its context cancels the attempt too.
		actx, cancel := context.WithTimeout(s.lifeCtx, s.cfg.ConnectTimeout)
		detaches = append(detaches, context.AfterFunc(ctx, cancel))
		if s.cfg.NewExecutor == nil {
			a.reach.Watching() // the CQL executor reports the region's first byte
		}
		s.reconnectors.Add(1)
		go func() {
			defer s.reconnectors.Done()
			ex, err := s.connectRegion(actx, rc, a.reach)
			cancel()
			if err == nil && s.lifeCtx.Err() != nil { // the Store closed, or Open failed
				s.closeQuietly(r.name, ex)
				err = s.lifeCtx.Err()
			}
			if err == nil {
				s.connected(r, ex)
			} else {
				r.conn.mu.Lock()
				r.conn.lastErr, r.conn.since = err, s.cfg.Now()
				r.conn.mu.Unlock()
			}
			a.err = err
			close(a.done)
			if err != nil && s.lifeCtx.Err() == nil {
				s.reconnectLoop(r, rc)
			}
		}()
	}
	waitFor := func(a *attempt) error {
		select {
		case <-a.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("store: open: %w", ctx.Err())
		}
	}
	if err := waitFor(atts[0]); err != nil {
		return err
	}
	// A region is waited for until its attempt is over, unless its
	// Factory watches (or starts watching) and it is silent at that
	// moment. A Factory that never watches is waited for.
	left := make([]bool, len(atts))
	for i, a := range atts[1:] {
		select {
		case <-a.done:
			continue
		case <-a.reach.WatchedChan():
		case <-ctx.Done():
			return fmt.Errorf("store: open: %w", ctx.Err())
		}
		if a.reach.Silent() {
			left[i+1] = true
			continue
		}
		if err := waitFor(a); err != nil {
			return err
		}
	}
	for i, a := range atts {
		r := s.regions[i]
		if left[i] {
			s.log.LogAttrs(ctx, slog.LevelWarn, "store: region silent at Open; its requests fail fast and its writes are hinted until it is connected in the background",
				slog.String("region", r.name), slog.Duration("connect_timeout", s.cfg.ConnectTimeout))
			r.conn.mu.Lock()
			r.conn.lastErr, r.conn.since = fmt.Errorf("%w: region %q has not answered yet (still connecting)", ErrUnavailable, r.name), s.cfg.Now()
			r.conn.mu.Unlock()
			continue
		}
		switch err := a.err; {
		case err == nil:
		case isAvailability(err):
			s.log.LogAttrs(ctx, slog.LevelWarn, "store: region unreachable at Open; its requests fail fast and its writes are hinted until it is connected in the background",
				slog.String("region", r.name), slog.Any("error", err))
		default:
			return fmt.Errorf("store: open region %q: %w", r.name, err)
		}
	}
	return nil
}

// connectRegion makes a region's executor and, when CreateKeyspace is
// set, creates the keyspace there; otherwise it checks that the keyspace
// exists (when the executor can tell, driver.KeyspaceChecker).
func (s *Store) connectRegion(ctx context.Context, rc RegionConfig, reach *driver.Reach) (driver.Executor, error) {
	ex, err := s.connect(ctx, rc, reach)
	if err != nil {
		return nil, err
	}
	if s.cfg.CreateKeyspace {
		err = ex.CreateKeyspace(ctx, s.cfg.Keyspace, rc.ReplicationFactor)
		if err != nil {
			err = fmt.Errorf("create keyspace %q: %w", s.cfg.Keyspace, err)
		}
	} else if kc, ok := ex.(driver.KeyspaceChecker); ok {
		var exists bool
		if exists, err = kc.KeyspaceExists(ctx, s.cfg.Keyspace); err == nil && !exists {
			err = fmt.Errorf("%w: keyspace %q does not exist in region %q: create it (or set Config.CreateKeyspace)", ErrInvalidConfig, s.cfg.Keyspace, rc.Name)
		}
	}
	if err != nil {
		s.closeQuietly(rc.Name, ex)
		return nil, err
	}
	return ex, nil
}

// closeQuietly closes an executor that will not be used, bounded by
// ConnectionCloseTimeout, logging a failure.
func (s *Store) closeQuietly(name string, ex driver.Executor) {
	s.closers.Add(1)
	go func() {
		defer s.closers.Done()
		if err := wait.Within(ConnectionCloseTimeout, "store: region connections", wait.Closer{Name: fmt.Sprintf("region %q", name), Close: ex.Close}); err != nil {
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "store: closing an unused region connection failed",
				slog.String("region", name), slog.Any("error", err))
		}
	}()
}

// reconnectLoop connects an unconnected region in the background, with
// back-off, until it is connected or the Store closes. A region that
// answers and refuses (credentials, certificate, keyspace) is logged at
// error level each time: waiting will not fix it, but an operator may.
func (s *Store) reconnectLoop(r *region, rc RegionConfig) {
	b := wait.NewBackoff(reconnectFirst, reconnectCeiling)
	for attempt := 2; ; attempt++ {
		if !b.Sleep(s.lifeCtx) {
			return
		}
		ctx, cancel := context.WithTimeout(s.lifeCtx, s.cfg.ConnectTimeout)
		ex, err := s.connectRegion(ctx, rc, nil)
		cancel()
		if err == nil {
			if s.lifeCtx.Err() != nil { // closing: nobody will close it later
				s.closeQuietly(r.name, ex)
				return
			}
			s.connected(r, ex)
			s.log.LogAttrs(context.Background(), slog.LevelInfo, "store: region connected",
				slog.String("region", r.name), slog.Int("attempts", attempt))
			return
		}
		if s.lifeCtx.Err() != nil {
			return
		}
		r.conn.mu.Lock()
		r.conn.lastErr = err
		r.conn.mu.Unlock()
		level := slog.LevelDebug
		if !isAvailability(err) {
			level = slog.LevelError // the region answers and refuses: waiting will not fix it
		}
		s.log.LogAttrs(context.Background(), level, "store: region still not connected",
			slog.String("region", r.name), slog.Int("attempt", attempt), slog.Any("error", err))
	}
}

// RegionHealth is one region's state as Health reports it.
type RegionHealth struct {
	// Region is the region's name.
	Region string
	// Connected is false while the Store is still connecting to the region
	// in the background (it was unreachable at Open): its requests fail
	// at once and its writes are hinted.
	Connected bool
	// Breaker is the region's circuit breaker state: "closed",
	// "half-open", "open", or "disabled". An unconnected region reports
	// "open".
	Breaker string
	// Since is when the region was connected or, while unconnected, when
	// connecting to it first failed.
	Since time.Time
	// LastError is the last connection error of an unconnected region.
	LastError error
}

// Health reports every region's connection and breaker, home first.
func (s *Store) Health() []RegionHealth {
	out := make([]RegionHealth, len(s.regions))
	for i, r := range s.regions {
		h := RegionHealth{Region: r.name, Connected: r.exec.Load() != nil, Breaker: "disabled"}
		r.conn.mu.Lock()
		h.Since, h.LastError = r.conn.since, r.conn.lastErr
		r.conn.mu.Unlock()
		switch {
		case !h.Connected:
			h.Breaker = "open"
		case r.breaker != nil:
			h.Breaker = r.breaker.State().String()
		}
		out[i] = h
	}
	return out
}

// lifecycle of the background connections: stopped by Close.
type lifecycle struct {
	lifeCtx      context.Context
	lifeStop     context.CancelFunc
	reconnectors sync.WaitGroup
}
