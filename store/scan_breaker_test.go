package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/store/driver"
)

// A home region whose scans time out after the whole Config.Timeout (no
// WithTimeout, no caller deadline) opens its breaker, as a Get's timeouts
// do (docs/consistency.md, "Circuit breakers"). Before the fix Scan gave
// each region request what was left of its own deadline, always a hair
// under Config.Timeout, so every scan timeout was taken for the caller's
// budget and the breaker never counted one (found by review). A caller's
// shorter deadline still does not count.
func TestScanTimeoutsTripBreaker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		opened bool
	}{
		{"the region's timeout", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, true},
		{"the caller's shorter deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t, func(c *Config) {
				c.Timeout = 50 * time.Millisecond
				c.Breaker = BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Hour}
			})
			e.mem["a"].SetFault(driver.Fault{Delay: time.Second, Ops: []string{driver.OpScan}})
			for i := range 4 {
				ctx, cancel := tc.ctx()
				_, err := e.ns.Scan(ctx, []byte("pk"))
				cancel()
				if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCircuitOpen) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Scan %d: %v, want a timeout", i, err)
				}
			}
			time.Sleep(100 * time.Millisecond) // the last requests' outcomes reach the breaker
			if open := e.st.regions[0].breaker.State() == gobreaker.StateOpen; open != tc.opened {
				t.Errorf("home breaker open %v after 4 timed-out scans, want %v (ConsecutiveFailures 2)", open, tc.opened)
			}
		})
	}
}
