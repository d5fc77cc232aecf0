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

// connectAll connects every region concurrently, each attempt bounded by
// Config.ConnectTimeout. It returns the first error that waiting cannot
// heal (the regions connected so far are left for the caller to close);
// regions unreachable for availability are left unconnected, and their
// errors recorded.
func (s *Store) connectAll(ctx context.Context, ordered []RegionConfig) error {
	errs := make([]error, len(ordered))
	var wg sync.WaitGroup
	for i, rc := range ordered {
		r := s.regions[i]
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
			defer cancel()
			ex, err := s.connectRegion(cctx, rc)
			if err != nil {
				errs[i] = err
				return
			}
			s.connected(r, ex)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	for i, err := range errs {
		r := s.regions[i]
		switch {
		case err == nil:
		case isAvailability(err):
			r.conn.mu.Lock()
			r.conn.lastErr, r.conn.since = err, s.cfg.Now()
			r.conn.mu.Unlock()
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
func (s *Store) connectRegion(ctx context.Context, rc RegionConfig) (driver.Executor, error) {
	ex, err := s.connect(ctx, rc)
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

// reconnect connects an unconnected region in the background, with
// back-off, until it is connected or the Store closes.
func (s *Store) reconnect(r *region, rc RegionConfig) {
	defer s.reconnectors.Done()
	b := wait.NewBackoff(reconnectFirst, reconnectCeiling)
	for attempt := 1; ; attempt++ {
		if !b.Sleep(s.lifeCtx) {
			return
		}
		ctx, cancel := context.WithTimeout(s.lifeCtx, s.cfg.ConnectTimeout)
		ex, err := s.connectRegion(ctx, rc)
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
