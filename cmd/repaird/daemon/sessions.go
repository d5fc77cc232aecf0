package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/repair"
)

// Sessions holds one session per configured region, opened on first use
// and kept; a region that cannot be reached is retried on the next use.
type Sessions struct {
	cfg     *config.Config
	connect ConnectFunc
	log     *slog.Logger
	// closeTimeout bounds Close (DefaultSessionCloseTimeout); closeSession
	// closes one session ((*gocql.Session).Close). Tests replace them.
	closeTimeout time.Duration
	closeSession func(*gocql.Session)

	mu       sync.Mutex
	sessions map[string]*gocql.Session
	errs     map[string]string
}

// NewSessions returns sessions for the configuration's regions; connect nil
// means cluster.Connect, log nil discards the logs.
func NewSessions(cfg *config.Config, connect ConnectFunc, log *slog.Logger) *Sessions {
	if connect == nil {
		connect = cluster.Connect
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sessions{cfg: cfg, connect: connect, log: log, closeTimeout: DefaultSessionCloseTimeout,
		closeSession: (*gocql.Session).Close, sessions: map[string]*gocql.Session{}, errs: map[string]string{}}
}

// DefaultSessionCloseTimeout bounds how long Sessions.Close waits for the
// sessions to close: closing a session to an unreachable region can block
// for tens of seconds, and the process should still exit.
const DefaultSessionCloseTimeout = 10 * time.Second

// ErrUnreachable reports regions that could not be connected to because
// they did not answer (down, partitioned, or the wrong contact points).
var ErrUnreachable = errors.New("region unreachable")

// ErrRefused reports regions that answered and refused the connection (bad
// credentials, an untrusted TLS certificate, as cluster.Classify judges
// it): waiting does not help, the configuration must change.
var ErrRefused = errors.New("region refused the connection")

// Get returns the session of one region, connecting if needed.
func (s *Sessions) Get(ctx context.Context, name string) (*gocql.Session, error) {
	s.mu.Lock()
	if ss := s.sessions[name]; ss != nil {
		s.mu.Unlock()
		return ss, nil
	}
	s.mu.Unlock()
	rc, ok := s.cfg.Region(name)
	if !ok {
		return nil, fmt.Errorf("no region %q in the configuration", name)
	}
	cr, err := rc.Cluster()
	if err != nil {
		return nil, err
	}
	cr.Logger = s.log
	ss, err := s.connect(ctx, cr, "")
	s.mu.Lock()
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		s.errs[name] = msg
		s.mu.Unlock()
		sentinel, hint := ErrUnreachable, "check contact_points and that the region is up"
		if cluster.Classify(ctx, err) == cluster.Refused {
			sentinel, hint = ErrRefused, "the region answered and refused: check username/password/TLS (its username, password and tls settings)"
		}
		return nil, fmt.Errorf("%w: region %q (contact points %s): %s; %s",
			sentinel, name, strings.Join(rc.ContactPoints, ","), msg, hint)
	}
	delete(s.errs, name)
	if old := s.sessions[name]; old != nil { // lost a race: keep the first
		s.mu.Unlock()
		s.closeSession(ss) // not under s.mu: closing may block
		return old, nil
	}
	s.sessions[name] = ss
	s.mu.Unlock()
	return ss, nil
}

// All connects every region concurrently and returns the sessions in
// configuration order, or the errors of the regions that failed (joined).
func (s *Sessions) All(ctx context.Context) ([]*gocql.Session, error) {
	out := make([]*gocql.Session, len(s.cfg.Regions))
	errs := make([]error, len(s.cfg.Regions))
	var wg sync.WaitGroup
	for i, r := range s.cfg.Regions {
		wg.Go(func() { out[i], errs[i] = s.Get(ctx, r.Name) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Regions returns repair regions over every session, and the home
// region's session.
func (s *Sessions) Regions(ctx context.Context) ([]repair.Region, *gocql.Session, error) {
	ss, err := s.All(ctx)
	if err != nil {
		return nil, nil, err
	}
	var home *gocql.Session
	regions := make([]repair.Region, len(ss))
	for i, r := range s.cfg.Regions {
		cr, err := repair.NewCQLRegion(ss[i], s.cfg.Keyspace)
		if err != nil {
			return nil, nil, err
		}
		regions[i] = repair.Region{Name: r.Name, Reader: cr, Writer: cr}
		if r.Name == s.cfg.Home {
			home = ss[i]
		}
	}
	return regions, home, nil
}

// State reports, per region, whether it is connected and the last
// connection error.
func (s *Sessions) State() map[string]RegionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]RegionStatus{}
	for _, r := range s.cfg.Regions {
		out[r.Name] = RegionStatus{Connected: s.sessions[r.Name] != nil, Error: s.errs[r.Name]}
	}
	return out
}

// Close closes every session, concurrently, and forgets them (a later Get
// connects again). It waits at most DefaultSessionCloseTimeout
// (wait.CloseAll): the regions whose sessions have not closed by then are
// logged and left to close in the background. State and Get do not wait
// for Close.
func (s *Sessions) Close() {
	s.mu.Lock()
	open := s.sessions
	s.sessions = map[string]*gocql.Session{}
	s.mu.Unlock()
	if len(open) == 0 {
		return
	}
	names := slices.Sorted(maps.Keys(open))
	closers := make([]wait.Closer, len(names))
	for i, name := range names {
		ss := open[name]
		closers[i] = wait.Closer{Name: name, Close: func() error { s.closeSession(ss); return nil }}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.closeTimeout)
	defer cancel()
	var sc *StillClosingError
	if err := wait.CloseAll(ctx, 0, "repaird: region sessions", closers, nil); errors.As(err, &sc) {
		s.log.Warn("repaird: region sessions did not close in time; leaving them to close in the background",
			"regions", sc.Stragglers, "timeout", s.closeTimeout)
	}
}
