package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/store/driver"
)

// closeFault is a fault on Close only.
func closeFault(f driver.Fault) driver.Fault {
	f.Ops = []string{driver.OpClose}
	return f
}

// openWithCloses opens a Store over memory regions a, b, c with faults on
// their Close (a region without one closes at once).
func openWithCloses(t *testing.T, faults map[string]driver.Fault) *memEnv {
	t.Helper()
	e := newFaultEnv(t, nil)
	for n, f := range faults {
		e.mem[n].SetFault(closeFault(f))
	}
	return e
}

// waitClosers waits (at most d) for every goroutine closing an executor to
// end, then checks that every region was closed exactly once.
func waitClosers(t *testing.T, e *memEnv, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		e.st.closers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("the goroutines closing the executors had not ended %s after their Close could return", d)
	}
	for _, n := range regionNamesABC {
		if got := e.mem[n].Calls(driver.OpClose); got != 1 {
			t.Errorf("region %s closed %d times, want once", n, got)
		}
	}
}

// TestCloseClosesRegionsConcurrently: three regions whose Close takes
// 300ms each are closed at once, not one after another (900ms).
func TestCloseClosesRegionsConcurrently(t *testing.T) {
	slow := driver.Fault{Delay: 300 * time.Millisecond}
	e := openWithCloses(t, map[string]driver.Fault{"a": slow, "b": slow, "c": slow})
	start := time.Now()
	if err := e.st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	if took < 300*time.Millisecond {
		t.Errorf("Close took %s, less than one executor's Close (300ms): it did not wait for them", took)
	}
	if took > 700*time.Millisecond {
		t.Errorf("Close took %s with three 300ms executor closes: they ran one after another", took)
	}
	if err := e.st.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	waitClosers(t, e, time.Second)
}

// TestCloseContextStopsWaitingForHungRegion: a region whose Close hangs
// does not hold CloseContext past its context: it returns soon after the
// context ends, with an error naming only that region and wrapping the
// context's error; the hung close finishes in the background once it can,
// and its goroutine ends.
func TestCloseContextStopsWaitingForHungRegion(t *testing.T) {
	release := make(chan struct{})
	e := openWithCloses(t, map[string]driver.Fault{"b": {Gate: release}})
	b := e.mem["b"]
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
	go func() { closed <- e.st.CloseContext(ctx) }()
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
	if b.Held() != 1 {
		t.Fatal("the hung Close returned before it was released")
	}
	if err := e.st.CloseContext(context.Background()); err != nil {
		t.Errorf("CloseContext again: %v, want nil at once", err)
	}

	close(release)
	waitClosers(t, e, time.Second)
	if b.Held() != 0 {
		t.Fatal("the released Close did not return")
	}
}

// TestCloseBoundsRegionCloses: Close's own bound on the region closes (its
// ConnectionCloseTimeout, shortened here) ends the wait for a hung region
// with an error that names it and says why.
func TestCloseBoundsRegionCloses(t *testing.T) {
	release := make(chan struct{})
	e := openWithCloses(t, map[string]driver.Fault{"c": {Gate: release}})
	defer func() {
		close(release)
		waitClosers(t, e, time.Second)
	}()
	closed := make(chan error, 1)
	go func() { closed <- e.st.close(context.Background(), 100*time.Millisecond) }()
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
	e := openWithCloses(t, map[string]driver.Fault{"a": {Err: errA}, "c": {Err: errC}})
	err := e.st.Close()
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
	waitClosers(t, e, time.Second)
}

// TestOpenFailureClosesConnectedRegions: when a region cannot be connected
// to, Open closes the regions it already connected to, concurrently.
func TestOpenFailureClosesConnectedRegions(t *testing.T) {
	cfg := Config{Home: "a", Keyspace: "ks", Breaker: BreakerConfig{Disabled: true}}
	mem := map[string]*driver.MemoryRegion{} // no region c: connecting to it fails
	for _, n := range regionNamesABC {
		cfg.Regions = append(cfg.Regions, RegionConfig{Name: n, ContactPoints: []string{n + ".invalid"}})
		if n != "c" {
			mem[n] = driver.NewMemoryRegion()
			mem[n].SetFault(closeFault(driver.Fault{Delay: 400 * time.Millisecond}))
		}
	}
	cfg.NewExecutor = driver.MemoryFactory(mem)
	start := time.Now()
	_, err := Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `region "c"`) {
		t.Fatalf("Open: %v, want an error naming region c", err)
	}
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("Open took %s closing two regions whose Close takes 400ms: not concurrent", took)
	}
	for n, m := range mem {
		if got := m.Calls(driver.OpClose); got != 1 {
			t.Errorf("region %s closed %d times, want once", n, got)
		}
	}
}
