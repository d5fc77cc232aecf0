package repair

import (
	"context"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/tidemark/tidemark/internal/wait"
)

// newLimiter returns the scan-rate limiter of a run over regions regions:
// rowsPerSecond distinct rows a second, counted as rows read from all
// regions (rowsPerSecond × regions tokens a second, one per row read), with
// a burst of one second's worth. Workers take their tokens with
// wait.Tokens; the limiter is shared by the segments of the run. A rate
// <= 0 means no limit (nil).
func newLimiter(rowsPerSecond float64, regions int) *rate.Limiter {
	if rowsPerSecond <= 0 {
		return nil
	}
	perSecond := rowsPerSecond * float64(regions)
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(math.Ceil(perSecond))))
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

// charge takes n rows' share of the run's rate: the rows a scan, a
// backfill or an in-sync answer made the database read. The wait is held
// on trk (not a hang). When the rate allows no more rows before ctx ends
// (rate.Limiter says so at once when ctx has a deadline), it holds until
// then, as a sleep would, and returns ctx's error.
func (r *Repairer) charge(ctx context.Context, trk *tracker, n int64) error {
	trk.hold()
	err := wait.Tokens(ctx, r.lim, int(min(n, 1<<30)))
	trk.release()
	if err != nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// setRate retunes a run's limiter to rowsPerSecond distinct rows a second
// over regions regions (as newLimiter); <= 0 lifts the limit.
func setRate(lim *rate.Limiter, rowsPerSecond float64, regions int) {
	if rowsPerSecond <= 0 {
		lim.SetLimit(rate.Inf)
		return
	}
	perSecond := rowsPerSecond * float64(regions)
	if lim.Limit() == rate.Limit(perSecond) {
		return
	}
	lim.SetBurst(max(1, int(math.Ceil(perSecond))))
	lim.SetLimit(rate.Limit(perSecond))
}
