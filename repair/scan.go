// Scanning a token range: counting what each region returns, diffing the
// streams and fixing each divergent row as it is found.

package repair

import (
	"context"
	"errors"
	"sync"
)

// segStats is what one range's scan did: rows scanned, rows differing and
// rows written.
type segStats struct{ rows, differing, written int64 }

// countingStream counts a region's scanned rows and bytes, throttles, and
// names the region in errors.
type countingStream struct {
	RowStream
	ctx     context.Context
	r       *Repairer
	ns      string
	idx     int
	acc     *accum
	ctl     *Control
	trk     *tracker
	rows    int64
	bytes   int64
	pending int64 // rows not yet counted in the report
	unpaid  int64 // rows not yet charged to the rate limit
	err     error
}

const flushEvery = 256

func (c *countingStream) Next() bool {
	if c.err != nil {
		return false
	}
	if !c.RowStream.Next() {
		c.flush()
		// The rows since the last page take their share of the rate
		// too: a range of fewer than flushEvery rows is charged here.
		if n := c.unpaid; n > 0 {
			c.unpaid = 0
			c.err = c.pay(n)
		}
		return false
	}
	c.rows++
	c.pending++
	c.unpaid++
	c.bytes += digestRowBytes(c.RowStream.Row())
	if c.pending >= flushEvery {
		c.flush()
		// Between pages of rows: hold while the run is paused, then take
		// the rows' share of the rate. Neither counts as a hang.
		c.trk.hold()
		err := c.ctl.Wait(c.ctx)
		c.trk.release()
		if err == nil {
			n := c.unpaid
			c.unpaid = 0
			err = c.pay(n)
		}
		if err != nil {
			c.err = err
			return false
		}
	}
	return true
}

// pay takes n rows' share of the rate (Repairer.charge).
func (c *countingStream) pay(n int64) error { return c.r.charge(c.ctx, c.trk, n) }

func (c *countingStream) flush() {
	if c.pending == 0 && c.bytes == 0 {
		return
	}
	rows, bytes := c.pending, c.bytes
	c.pending, c.bytes = 0, 0
	c.acc.do(func(rp *Report) {
		rp.Regions[c.idx].RowsScanned += rows
		rp.Regions[c.idx].BytesRead += bytes
	})
	c.r.opts.Metrics.addScanned(c.ns, c.r.regions[c.idx].Name, rows, bytes)
}

func (c *countingStream) Err() error {
	err := c.err
	if err == nil {
		err = c.RowStream.Err()
	}
	if err == nil {
		return nil
	}
	if c.ctx.Err() != nil {
		return err
	}
	return &RegionError{Region: c.r.regions[c.idx].Name, Op: "scan", Err: err}
}

// scanRange scans, diffs and (unless dry) fixes one token range.
func (r *Repairer) scanRange(ctx context.Context, ns string, seg TokenRange, acc *accum, ctl *Control, trk *tracker) (segStats, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	streams := make([]RowStream, len(r.regions))
	for i, reg := range r.regions {
		streams[i] = &countingStream{RowStream: reg.Reader.ScanDigests(ctx, ns, seg, r.opts.PageSize),
			ctx: ctx, r: r, ns: ns, idx: i, acc: acc, ctl: ctl, trk: trk}
	}
	defer func() {
		for _, s := range streams {
			_ = s.Close()
		}
	}()
	var st segStats
	var mu sync.Mutex
	work := make(chan *Divergence)
	var wg sync.WaitGroup
	for k := 0; k < r.opts.Concurrency; k++ {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() != nil {
					continue
				}
				written, err := r.fix(ctx, ns, it, acc, ctl, trk)
				if err != nil {
					cancel(err)
					continue
				}
				if written {
					mu.Lock()
					st.written++
					mu.Unlock()
				}
			}
		})
	}
	ds, err := Diff(streams, func(d *Divergence) error {
		select {
		case work <- d:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(work)
	wg.Wait()
	st.rows, st.differing = ds.Rows, ds.Differing
	acc.do(func(rp *Report) {
		rp.RowsScanned += ds.Rows
		rp.RowsDiffering += ds.Differing
	})
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return st, c
	}
	if err != nil {
		return st, err
	}
	return st, ctx.Err()
}
