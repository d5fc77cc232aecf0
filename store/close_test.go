package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/tidemark/tidemark/store/driver"
)

// openWithCloses opens a Store over mock executors for regions a, b, c
// whose Close runs closeFn[region] (nil: returns nil at once). Every
// executor must be closed exactly once.
func openWithCloses(t *testing.T, closeFn map[string]func() error) *Store {
	t.Helper()
	ctrl := gomock.NewController(t)
	cfg := Config{Home: "a", Keyspace: "ks", Breaker: BreakerConfig{Disabled: true}}
	execs := map[string]*MockExecutor{}
	for _, n := range regionNamesABC {
		m := NewMockExecutor(ctrl)
		f := closeFn[n]
		if f == nil {
			f = func() error { return nil }
		}
		m.EXPECT().Close().Times(1).DoAndReturn(f)
		execs[n] = m
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
	}
	cfg.NewExecutor = func(_ context.Context, rc driver.Config) (driver.Executor, error) {
		return execs[rc.Region], nil
	}
	st, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

// waitClosers waits (at most d) for every goroutine closing an executor to
// end.
func waitClosers(t *testing.T, st *Store, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		st.closers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("the goroutines closing the executors had not ended %s after their Close could return", d)
	}
}

// TestCloseClosesRegionsConcurrently: three regions whose Close takes
// 300ms each are closed at once, not one after another (900ms).
func TestCloseClosesRegionsConcurrently(t *testing.T) {
	slow := func() error { time.Sleep(300 * time.Millisecond); return nil }
	st := openWithCloses(t, map[string]func() error{"a": slow, "b": slow, "c": slow})
	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	if took < 300*time.Millisecond {
		t.Errorf("Close took %s, less than one executor's Close (300ms): it did not wait for them", took)
	}
	if took > 700*time.Millisecond {
		t.Errorf("Close took %s with three 300ms executor closes: they ran one after another", took)
	}
	if err := st.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	waitClosers(t, st, time.Second)
}

// TestCloseContextStopsWaitingForHungRegion: a region whose Close hangs
// does not hold CloseContext past its context: it returns soon after the
// context ends, with an error naming only that region and wrapping the
// context's error; the hung close finishes in the background once it can,
// and its goroutine ends.
func TestCloseContextStopsWaitingForHungRegion(t *testing.T) {
	release := make(chan struct{})
	returned := make(chan struct{})
	hung := func() error {
		<-release
		defer close(returned)
		return nil
	}
	st := openWithCloses(t, map[string]func() error{"b": hung})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release) // let the goroutine end if the test failed early
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- st.CloseContext(ctx) }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(3 * time.Second):
		close(release)
		t.Fatal("CloseContext with a 200ms context was still waiting for the hung region after 3s")
	}
	took := time.Since(start)
	if took > time.Second {
		t.Errorf("CloseContext took %s with a 200ms context", took)
	}
	if took < 150*time.Millisecond {
		t.Errorf("CloseContext took %s: it did not wait for the region closes until its context ended", took)
	}
	if err == nil {
		t.Fatal("CloseContext returned nil while region b was still closing")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStillClosing) {
		t.Errorf("CloseContext: %v, want an error wrapping ErrStillClosing and context.DeadlineExceeded", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `region "b"`) {
		t.Errorf("CloseContext: %q, want it to name region \"b\"", msg)
	}
	if strings.Contains(msg, `"a"`) || strings.Contains(msg, `"c"`) {
		t.Errorf("CloseContext: %q names regions that had closed", msg)
	}
	select {
	case <-returned:
		t.Fatal("the hung Close returned before it was released")
	default:
	}
	if err := st.CloseContext(context.Background()); err != nil {
		t.Errorf("CloseContext again: %v, want nil at once", err)
	}

	close(release)
	select {
	case <-returned:
	case <-time.After(time.Second):
		t.Fatal("the released Close did not return")
	}
	waitClosers(t, st, time.Second)
}

// TestCloseBoundsRegionCloses: Close's own bound on the region closes (its
// ConnectionCloseTimeout, shortened here) ends the wait for a hung region
// with an error that names it and says why.
func TestCloseBoundsRegionCloses(t *testing.T) {
	release := make(chan struct{})
	st := openWithCloses(t, map[string]func() error{"c": func() error { <-release; return nil }})
	defer func() {
		close(release)
		waitClosers(t, st, time.Second)
	}()
	closed := make(chan error, 1)
	go func() { closed <- st.close(context.Background(), 100*time.Millisecond) }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("close with a 100ms bound on the region closes was still waiting for the hung region after 2s")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrStillClosing) {
		t.Fatalf("close: %v, want ErrStillClosing and context.DeadlineExceeded", err)
	}
	for _, want := range []string{`region "c"`, "Close waits at most 100ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("close: %q, want it to contain %q", err, want)
		}
	}
}

// TestCloseReportsRegionErrors: every region is closed even when others
// fail, and each failure is returned naming its region and wrapping the
// executor's error.
func TestCloseReportsRegionErrors(t *testing.T) {
	errA := errors.New("a broke")
	errC := errors.New("c broke")
	st := openWithCloses(t, map[string]func() error{
		"a": func() error { return errA },
		"c": func() error { return errC },
	})
	err := st.Close()
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Fatalf("Close: %v, want both region errors", err)
	}
	for _, want := range []string{`region "a": a broke`, `region "c": c broke`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close: %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Close: %q names region b, which closed", err)
	}
	waitClosers(t, st, time.Second)
}

// TestOpenFailureClosesConnectedRegions: when a region cannot be connected
// to, Open closes the regions it already connected to, concurrently.
func TestOpenFailureClosesConnectedRegions(t *testing.T) {
	ctrl := gomock.NewController(t)
	cfg := Config{Home: "a", Keyspace: "ks", Breaker: BreakerConfig{Disabled: true}}
	execs := map[string]*MockExecutor{}
	for _, n := range regionNamesABC {
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
		if n == "c" {
			continue
		}
		m := NewMockExecutor(ctrl)
		m.EXPECT().Close().Times(1).DoAndReturn(func() error { time.Sleep(400 * time.Millisecond); return nil })
		execs[n] = m
	}
	cfg.NewExecutor = func(_ context.Context, rc driver.Config) (driver.Executor, error) {
		if m, ok := execs[rc.Region]; ok {
			return m, nil
		}
		return nil, fmt.Errorf("%w: no route", ErrUnavailable)
	}
	start := time.Now()
	_, err := Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `region "c"`) {
		t.Fatalf("Open: %v, want an error naming region c", err)
	}
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("Open took %s closing two regions whose Close takes 400ms: not concurrent", took)
	}
}
