package repair

import (
	"context"
	"sync"
	"time"
)

// limiter paces work to a rate (units per second), shared by the segments of
// a run. It lets a burst of one second's worth through, then spaces work
// out. A zero rate means no limit.
type limiter struct {
	rate  float64
	mu    sync.Mutex
	next  time.Time
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

func newLimiter(rate float64) *limiter {
	return &limiter{rate: rate, now: time.Now, sleep: sleepCtx}
}

// wait takes n units, sleeping until the rate allows them.
func (l *limiter) wait(ctx context.Context, n float64) error {
	if l == nil || l.rate <= 0 || n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.now()
	if floor := now.Add(-time.Second); l.next.Before(floor) {
		l.next = floor // allow at most a one-second burst after idling
	}
	l.next = l.next.Add(time.Duration(n / l.rate * float64(time.Second)))
	d := l.next.Sub(now)
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	return l.sleep(ctx, d)
}

// intensityPause is how long to rest after a segment that took d so that
// repair works a fraction intensity of the time (Cassandra Reaper's rule:
// d * (1/intensity - 1)). Intensity outside (0, 1) means no pause.
func intensityPause(d time.Duration, intensity float64) time.Duration {
	if intensity <= 0 || intensity >= 1 {
		return 0
	}
	return time.Duration(float64(d) * (1/intensity - 1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
