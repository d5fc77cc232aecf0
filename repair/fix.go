// Fixing one divergent row: reading the winner, writing it where it is
// missing, and recording a conflict or a dry run's plan.

package repair

import (
	"context"
	"errors"
	"fmt"
)

// fix repairs one divergent row; written reports whether it was written.
// Nothing here computes a TTL: the writers compute it from the winner's
// absolute expiry when they write (docs/repair.md, "Expiry").
func (r *Repairer) fix(ctx context.Context, ns string, d *Divergence, acc *accum, ctl *Control, trk *tracker) (bool, error) {
	p := PlanRow(d)
	switch p.Action {
	case 0:
		// The winner has expired: the row is logically absent, and no
		// older version may replace it.
		acc.do(skipRow)
	case ActionTie:
		acc.do(func(rp *Report) { rp.Ties++ })
	}
	r.recordConflicts(ctx, ns, d, p, acc)
	if r.opts.DryRun {
		r.reportDry(ns, d, p, acc)
		return false, nil
	}
	if p.Action == 0 {
		return false, nil
	}
	var w Write
	switch p.Action {
	case ActionMark:
		w = Write{PK: d.PK, CK: d.CK, Timestamp: p.Winner.Timestamp, Expires: p.Winner.Expires, Deleted: true,
			Digest: p.Winner.Digest, Targets: p.Targets}
	case ActionCopy:
		v, ok, err := r.read(ctx, ns, p.Source, d, acc)
		if err != nil {
			return false, err
		}
		if !holdsWinner(v, ok, p.Winner) {
			acc.do(skipRow)
			return false, nil
		}
		w = Write{PK: d.PK, CK: d.CK, Timestamp: v.Timestamp, Expires: v.Expires, Value: v.Value,
			Digest: p.Winner.Digest, Targets: p.Targets}
	case ActionTie:
		values := make([][]byte, len(p.Tied))
		for k, t := range p.Tied {
			v, ok, err := r.read(ctx, ns, t, d, acc)
			if err != nil {
				return false, err
			}
			if !holdsWinner(v, ok, Observed{Timestamp: p.Winner.Timestamp, Expires: p.Winner.Expires}) {
				acc.do(skipRow)
				return false, nil
			}
			values[k] = v.Value
		}
		var err error
		w, err = ResolveTie(d, p, values)
		if err != nil {
			return false, err
		}
	}
	written := 0
	for _, t := range w.Targets {
		reg := r.regions[t]
		// No row is written while the run is paused.
		trk.hold()
		err := ctl.beginWrite(ctx)
		trk.release()
		if err != nil {
			return false, err
		}
		err = reg.Writer.WriteRow(ctx, ns, &w)
		ctl.endWrite()
		trk.touch()
		if errors.Is(err, ErrExpired) {
			// Expired meanwhile: absent everywhere now, so the regions
			// left need nothing either.
			break
		}
		acc.do(func(rp *Report) { rp.Regions[t].RowsDiffering++ })
		r.opts.Metrics.addDiffering(ns, reg.Name)
		if err != nil {
			return false, &RegionError{Region: reg.Name, Op: "write", Err: err}
		}
		written++
		acc.do(func(rp *Report) { rp.Regions[t].RowsWritten++ })
		r.opts.Metrics.addWritten(ns, reg.Name)
	}
	if written == 0 {
		acc.do(skipRow)
		return false, nil
	}
	acc.do(func(rp *Report) { rp.RowsWritten++ })
	return true, nil
}

// holdsWinner reports whether a point read found the winner's value: a
// value (not a marker) with the winner's timestamp and absolute expiry.
// Anything else means the row changed (or expired) since the scan.
func holdsWinner(v RowValue, found bool, winner Observed) bool {
	return found && !v.Deleted && v.Timestamp == winner.Timestamp && v.Expires == winner.Expires
}

// reportDry counts what a dry run found for a divergent row: the regions
// that would be written, the region pairs that differ, a sample.
func (r *Repairer) reportDry(ns string, d *Divergence, p Plan, acc *accum) {
	targets := p.Targets
	if p.Action == ActionTie {
		targets = tieTargetsByDigest(d, p)
	}
	acc.do(func(rp *Report) {
		for _, t := range targets {
			rp.Regions[t].RowsDiffering++
		}
		PairDiffs(d, acc.pairs)
		if acc.samples < r.opts.Samples {
			acc.samples++
			rp.Samples = append(rp.Samples, r.describeRow(d))
		}
	})
	for _, t := range targets {
		r.opts.Metrics.addDiffering(ns, r.regions[t].Name)
	}
}

func skipRow(rp *Report) { rp.RowsSkipped++ }

func (r *Repairer) read(ctx context.Context, ns string, idx int, d *Divergence, acc *accum) (RowValue, bool, error) {
	if d.fetched != nil {
		return d.fetched[idx].v, d.fetched[idx].found, nil
	}
	reg := r.regions[idx]
	v, ok, err := reg.Reader.ReadRow(ctx, ns, d.PK, d.CK)
	if err != nil {
		return v, false, &RegionError{Region: reg.Name, Op: "read", Err: err}
	}
	b := valueRowBytes(&v)
	acc.do(func(rp *Report) {
		rp.Regions[idx].ValueFetches++
		rp.Regions[idx].BytesRead += b
	})
	r.opts.Metrics.addFetch(ns, reg.Name, b)
	return v, ok, nil
}

// tieTargetsByDigest guesses a tie's targets without values (dry runs): the
// regions not holding the greatest digest at the tie's timestamp and
// expiry, as if those that do held the greatest value; with deletion
// markers in the tie, every region (the join keeps a value cell beside the
// marker).
func tieTargetsByDigest(d *Divergence, p Plan) []int {
	joined := p.Winner
	joined.Digest = greatestDigest(d, p.Winner)
	return tieTargets(d, joined, true, func(int) bool { return true })
}

func (r *Repairer) describeRow(d *Divergence) string {
	s := fmt.Sprintf("pk=%x ck=%x token=%d:", d.PK, d.CK, d.Token)
	for i, o := range d.Regions {
		s += fmt.Sprintf(" %s=%s;", r.regions[i].Name, o)
	}
	return s[:len(s)-1]
}
