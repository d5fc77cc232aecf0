package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tidemark/tidemark/internal/conflicts"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Conflicts (docs/repair.md, "Conflicts"): when a read repair finds that
// a region's version lost to another writer's version made within the
// conflict window (quorum.Conflicting), the Store records the losing
// version in the conflict log — the same log, types and limits as
// anti-entropy repair (package repair).
type (
	// Conflict is one recorded conflict: the row, the winning and the
	// losing version (timestamp, writer id, deletion), the region that
	// held the loser, who detected it and when.
	Conflict = conflicts.Record
	// ConflictSide is one version of a Conflict.
	ConflictSide = conflicts.Side
	// ConflictConfig configures conflict detection (Config.Conflicts).
	ConflictConfig = conflicts.Config
	// ConflictSink stores conflict records (Config.ConflictSink).
	ConflictSink = conflicts.Sink
	// ConflictQuery selects the conflicts Store.Conflicts returns: by the
	// time of the winning write (default: the last 7 days), at most Limit
	// (default 1000), newest first.
	ConflictQuery = conflicts.Query
)

// ErrNoConflictLog is returned by Store.Conflicts when there is nothing to
// read conflicts from: the executors are not CQL (Config.NewExecutor) and
// Config.ConflictSink does not list records (conflicts.Source).
var ErrNoConflictLog = errors.New("store: no conflict log to read (set Config.ConflictSink to a sink that lists records)")

// homeConflicts is the default ConflictSink: the conflict table in the
// keyspace of the home region, through its CQL session. Until the home
// region is connected, writes fail (counted as dropped).
type homeConflicts struct{ s *Store }

func (h homeConflicts) WriteConflict(ctx context.Context, r Conflict, ttl time.Duration) error {
	c := h.s.regions[0].cqlConflicts()
	if c == nil {
		return fmt.Errorf("%w: home region %q not connected", ErrNotConnected, h.s.regions[0].name)
	}
	return c.WriteConflict(ctx, r, ttl)
}

// cqlConflicts returns the region's conflict log when its executor is the
// default CQL one and it is connected; nil otherwise.
func (r *region) cqlConflicts() *conflicts.CQL {
	h := r.exec.Load()
	if h == nil {
		return nil
	}
	if e, ok := h.Executor.(*cqlExecutor); ok {
		return e.conflicts
	}
	return nil
}

// ensureConflictTable creates the conflict table in region r's keyspace
// when r's executor is the default CQL one and the Store records there
// (detection on, no ConflictSink); a failure is logged, not returned.
func (s *Store) ensureConflictTable(ctx context.Context, r *region, ex driver.Executor) {
	e, ok := ex.(*cqlExecutor)
	if !ok || s.conflicts == nil || s.cfg.ConflictSink != nil {
		return
	}
	if err := e.conflicts.Ensure(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "store: could not create the conflict log table; conflicts are counted, and recorded once it can be created",
			slog.String("region", r.name), slog.Any("error", err))
	}
}

// newConflictLog makes the Store's conflict log from its Config.
func (s *Store) newConflictLog() *conflicts.Log {
	sink := s.cfg.ConflictSink
	if sink == nil && s.cfg.NewExecutor == nil {
		sink = homeConflicts{s}
	}
	return conflicts.New(conflicts.ByReadRepair, sink, s.cfg.Conflicts, s.metrics.conflicts, s.log, s.cfg.Now)
}

// Conflicts returns the conflicts of namespace recorded in the conflict
// log, selected by q: with the default executors, those recorded in every
// connected region's keyspace (by this and other Stores' read repairs and
// by repair), merged (one per conflict) newest winning write first; with
// Config.ConflictSink, those the sink lists (it must implement
// conflicts.Source, as the in-memory and CQL logs do). A region that
// fails to answer is named in the error, with the records read from the
// others.
func (s *Store) Conflicts(ctx context.Context, namespace string, q ConflictQuery) ([]Conflict, error) {
	end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := validateNamespace(namespace); err != nil {
		return nil, err
	}
	if q, err = q.Resolve(s.cfg.Now()); err != nil {
		return nil, err
	}
	var sources []conflicts.Source
	var names []string
	if src, ok := s.cfg.ConflictSink.(conflicts.Source); ok {
		sources, names = append(sources, src), append(names, "Config.ConflictSink")
	} else if s.cfg.ConflictSink == nil && s.cfg.NewExecutor == nil {
		for _, r := range s.regions {
			if c := r.cqlConflicts(); c != nil {
				sources, names = append(sources, c), append(names, r.name)
			}
		}
		if len(sources) == 0 {
			return nil, fmt.Errorf("%w: no region is connected", ErrUnavailable)
		}
	}
	if len(sources) == 0 {
		return nil, ErrNoConflictLog
	}
	var all []Conflict
	var errs []error
	for i, src := range sources {
		rs, err := src.ListConflicts(ctx, namespace, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("conflicts from %s: %w", names[i], err))
		}
		all = append(all, rs...)
	}
	return conflicts.Merge(all, q.Limit), errors.Join(errs...)
}

// readRepairConflicts records, for a read repair whose winner is winner,
// every live version an answering region held that conflicts with it.
func (s *Store) readRepairConflicts(ns string, pk []byte, winner driver.Row, got []readResult) {
	if s.conflicts == nil {
		return
	}
	now := s.cfg.Now()
	w := versionOf(winner)
	var seen []quorum.Version
	// In region order, not the order the answers came in: a loser held by
	// several regions is recorded as the first region's.
	got = slices.Clone(got)
	slices.SortFunc(got, func(a, b readResult) int { return a.idx - b.idx })
	for _, res := range got {
		if !res.found || !schema.Visible(res.row.Expires, now) {
			continue
		}
		v := versionOf(res.row)
		if quorum.Compare(v, w) == 0 || containsVersion(seen, v) {
			continue
		}
		seen = append(seen, v)
		// Bounded, and ended by CloseContext's abort; long enough for the
		// first record, which may create the table.
		ctx, cancel := context.WithTimeout(s.abortCtx, max(s.cfg.Timeout, conflicts.CreateTimeout))
		s.conflicts.Observe(ctx, ns, pk, winner.CK, w, v, s.regions[res.idx].name)
		cancel()
	}
}

func containsVersion(vs []quorum.Version, v quorum.Version) bool {
	for _, o := range vs {
		if quorum.Compare(o, v) == 0 {
			return true
		}
	}
	return false
}
