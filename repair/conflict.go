package repair

import (
	"context"
	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/internal/conflicts"
)

// Conflicts (docs/repair.md, "Conflicts"): when a divergent row's losing
// version was written by another writer within the conflict window of the
// winner (quorum.Conflicting), repair records the loser in the conflict
// log — the same log, types and limits as a Store's read repair.
type (
	// Conflict is one recorded conflict: the row, the winning and the
	// losing version (timestamp, writer id, deletion), the region that
	// held the loser, who detected it and when.
	Conflict = conflicts.Record
	// ConflictSide is one version of a Conflict.
	ConflictSide = conflicts.Side
	// ConflictConfig configures conflict detection: on unless Disabled,
	// with a Window (default 1 minute), a record TTL (default 7 days) and
	// a rate limit per Repairer (default 20 records a second, bursts of
	// 100; conflicts beyond are counted, not written).
	ConflictConfig = conflicts.Config
	// ConflictSink stores conflict records (Options.ConflictSink).
	ConflictSink = conflicts.Sink
	// ConflictQuery selects the conflicts ListConflicts returns: by the
	// time of the winning write, and at most Limit (default 1000), newest
	// first.
	ConflictQuery = conflicts.Query
)

// conflictLog is where the Repairer records: Options.ConflictSink, or by
// default the conflict table in the keyspace of the first region whose
// Writer is a *CQLRegion; nil (nothing recorded) for dry runs, when
// Options.Conflicts.Disabled, or when there is no such region.
func (r *Repairer) conflictLog() *conflicts.Log {
	if r.opts.DryRun || r.opts.Conflicts.Disabled {
		return nil
	}
	sink := r.opts.ConflictSink
	if sink == nil {
		for _, reg := range r.regions {
			if c, ok := reg.Writer.(*CQLRegion); ok {
				sink = c.conflicts
				c.recordsConflicts.Store(true) // its Describe creates the table
				break
			}
		}
	}
	return conflicts.New(conflicts.ByRepair, sink, r.opts.Conflicts, r.opts.Metrics.conflictCounters(), r.log, r.opts.Now)
}

// recordConflicts records every live version of d that lost to the plan's
// winner and conflicts with it, once per distinct losing version (named by
// the first region that holds it). Expired and absent observations are no
// versions readers see and are not judged.
// Each is counted in Report.Conflicts.
func (r *Repairer) recordConflicts(ctx context.Context, ns string, d *Divergence, p Plan, acc *accum) {
	if r.conflicts == nil || p.Action == 0 {
		return
	}
	winner := digestVersion(p.Winner)
	var seen []Observed
	for i, o := range d.Regions {
		if !o.Live() || o.Same(p.Winner) || sameVersion(seen, o) {
			continue
		}
		seen = append(seen, o)
		// A tie's versions share one timestamp, so one writer: Conflicting
		// says no.
		if r.conflicts.Observe(ctx, ns, d.PK, d.CK, winner, digestVersion(o), r.regions[i].Name) {
			acc.do(func(rp *Report) { rp.Conflicts++ })
		}
	}
}

// sameVersion reports whether o is the same version as one of seen.
func sameVersion(seen []Observed, o Observed) bool {
	for _, s := range seen {
		if s.Same(o) {
			return true
		}
	}
	return false
}

// ListConflicts returns the conflicts of namespace recorded in the
// conflict table of keyspace, read through session s (restricted to one
// region: each region's keyspace holds the conflicts recorded there),
// selected by q. A keyspace without the table has none.
func ListConflicts(ctx context.Context, s *gocql.Session, keyspace, namespace string, q ConflictQuery) ([]Conflict, error) {
	c, err := conflicts.NewCQL(s, keyspace)
	if err != nil {
		return nil, err
	}
	return c.ListConflicts(ctx, namespace, q)
}
