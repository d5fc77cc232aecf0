package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/syncbuf"
)

func bufferLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, nil)), buf
}

// stuckWorker ignores ctx: it returns only when the test ends.
func stuckWorker(t *testing.T, name string) Worker {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return Worker{Name: name, Run: func(context.Context) error { <-release; return nil }}
}

// politeWorker returns shortly after ctx ends.
func politeWorker(name string) Worker {
	return Worker{Name: name, Run: func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		return nil
	}}
}

// superviseWithin runs s.Run and fails the test if it has not returned
// within limit.
func superviseWithin(t *testing.T, ctx context.Context, limit time.Duration, s Supervisor, workers []Worker) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, workers) }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("Supervise did not return within %v", limit)
		return nil
	}
}

// stragglers reports whether err is a StillClosingError naming exactly
// the workers want.
func stragglers(err error, want ...string) bool {
	var sc *StillClosingError
	return errors.As(err, &sc) && slices.Equal(sc.Stragglers, want)
}

func TestSupervisorGivesUpOnStuckWorker(t *testing.T) {
	log, buf := bufferLogger()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	const grace = 100 * time.Millisecond
	start := time.Now()
	err := superviseWithin(t, ctx, 2*time.Second, Supervisor{Grace: grace, Logger: log},
		[]Worker{politeWorker("polite"), stuckWorker(t, "stuck"), politeWorker("also-polite")})
	took := time.Since(start)
	if !errors.Is(err, ErrStillClosing) || !stragglers(err, "stuck") || strings.Contains(err.Error(), "polite") {
		t.Fatalf("Supervise = %v; want ErrStillClosing naming only worker stuck", err)
	}
	if !strings.Contains(err.Error(), "stuck") || !strings.Contains(err.Error(), grace.String()) {
		t.Errorf("error %q does not name worker stuck and the grace period", err)
	}
	if took < grace {
		t.Errorf("Supervise took %v, less than the grace period %v", took, grace)
	}
	if out := buf.String(); !strings.Contains(out, "workers=[stuck]") {
		t.Errorf("log does not name the stuck worker:\n%s", out)
	}
}

func TestSupervisorReportsFailureAndStuckWorker(t *testing.T) {
	boom := errors.New("boom")
	err := superviseWithin(t, context.Background(), 2*time.Second, Supervisor{Grace: 50 * time.Millisecond}, []Worker{
		stuckWorker(t, "stuck"),
		{Name: "fails", Run: func(context.Context) error { return boom }},
	})
	if !errors.Is(err, boom) || !errors.Is(err, ErrStillClosing) ||
		!strings.Contains(err.Error(), "worker fails") || !stragglers(err, "stuck") {
		t.Fatalf("Supervise = %v; want the failure of fails and the timeout naming stuck", err)
	}
}

func TestSupervisorCleanShutdownWithinGrace(t *testing.T) {
	log, buf := bufferLogger()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	err := superviseWithin(t, ctx, 3*time.Second, Supervisor{Grace: 2 * time.Second, Logger: log}, []Worker{
		politeWorker("a"), politeWorker("b"),
		{Name: "early", Run: func(context.Context) error { return nil }},
	})
	if err != nil {
		t.Fatalf("Supervise = %v, want nil", err)
	}
	if out := buf.String(); out != "" {
		t.Errorf("clean shutdown logged:\n%s", out)
	}
}

func TestDaemonRunNamesStuckWorker(t *testing.T) {
	d, err := New(testConfig(t), Options{Connect: unreachable(new(atomic.Int32)), RetryDelay: 10 * time.Millisecond,
		ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.AddWorker(stuckWorker(t, "leaky"))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStillClosing) || !stragglers(err, "leaky") {
			t.Fatalf("Run = %v; want ErrStillClosing naming only worker leaky", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return within the shutdown grace period")
	}
}

// blockingCloses makes s hold a fake session per region; closing the
// sessions of the regions in stuck blocks until the test ends.
func blockingCloses(t *testing.T, s *Sessions, stuck ...string) (closing chan string, closed *sync.Map) {
	names := map[*gocql.Session]string{}
	for _, r := range s.cfg.Regions {
		ss := new(gocql.Session)
		names[ss] = r.Name
		s.sessions[r.Name] = ss
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	closing = make(chan string, len(names))
	closed = &sync.Map{}
	s.closeSession = func(ss *gocql.Session) {
		name := names[ss]
		closing <- name
		for _, st := range stuck {
			if st == name {
				<-release
			}
		}
		closed.Store(name, true)
	}
	return closing, closed
}

func TestSessionsCloseIsBoundedAndDoesNotBlockState(t *testing.T) {
	log, buf := bufferLogger()
	s := NewSessions(testConfig(t), nil, log)
	s.closeTimeout = 200 * time.Millisecond
	closing, closed := blockingCloses(t, s, "b")
	done := make(chan struct{})
	start := time.Now()
	go func() { s.Close(); close(done) }()
	for range 2 {
		<-closing // both closes have begun; b's is blocked
	}
	// State, as /status and /readyz call it, answers while b closes.
	state := make(chan map[string]RegionStatus, 1)
	go func() { state <- s.State() }()
	select {
	case st := <-state:
		if st["a"].Connected || st["b"].Connected {
			t.Errorf("State during Close = %+v, want no region connected", st)
		}
	case <-time.After(time.Second):
		t.Fatal("State blocked while a session was closing")
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return while region b's session would not close")
	}
	if took := time.Since(start); took < s.closeTimeout {
		t.Errorf("Close returned after %v, before its bound %v", took, s.closeTimeout)
	}
	if _, ok := closed.Load("a"); !ok {
		t.Error("region a's session was not closed")
	}
	if out := buf.String(); !strings.Contains(out, "regions=[b]") {
		t.Errorf("log does not name region b:\n%s", out)
	}
}

func TestSessionsCloseAllQuickly(t *testing.T) {
	log, buf := bufferLogger()
	s := NewSessions(testConfig(t), nil, log)
	_, closed := blockingCloses(t, s)
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	for _, r := range []string{"a", "b"} {
		if _, ok := closed.Load(r); !ok {
			t.Errorf("region %s's session was not closed", r)
		}
	}
	if out := buf.String(); out != "" {
		t.Errorf("clean Close logged:\n%s", out)
	}
	s.Close() // nothing left: returns at once
}
