package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/watermark"
	"github.com/tidemark/tidemark/repair"
)

// Unclean exits (docs/design.md, "The convergence watermark"). A store
// that stops without closing — killed, crashed, or closed with writes
// unsettled — may have acknowledged writes that some region lacks and
// that no hint or repair debt covers: they were still in its memory.
// Its registration expires and the watermark no longer waits for it, so
// before that happens to the watermark, every pass reads the stores'
// sessions (the registration again, kept for schema.SessionTTL), and for
// a store that stopped without closing records an overflow entry per
// namespace it opened (and per namespace this daemon repairs) and region,
// in the store's home region's keyspace, where its own debt would have
// been (or, that region unknown to this daemon, in this daemon's home's:
// exitDebtHome). The entries hold every region's watermark like any debt; the
// repaird of that home region runs a full repair of each namespace and
// removes them once a run that started after them completed. The session
// is then marked exited, so that the exit is recorded once.

// readSessions reads the stores' sessions from every region and merges
// them: a majority of the regions must answer, as for the registrations.
func (d *Daemon) readSessions(ctx context.Context) ([]watermark.Session, error) {
	answers := make([]map[string]watermark.Session, len(d.cfg.Regions))
	answered, err := d.readMajority(ctx, "the store sessions", schema.SessionsPartition, func(i int, ck, value []byte, ts int64) {
		s, err := schema.DecodeSession(value)
		if err != nil {
			return
		}
		if answers[i] == nil {
			answers[i] = map[string]watermark.Session{}
		}
		answers[i][string(ck)] = watermark.Session{ID: string(ck), Registered: s.Registered, Home: s.Home, Closed: s.Closed, Exited: s.Exited,
			RegistrationTTL: s.RegistrationTTL, Refreshed: time.UnixMicro(ts), Namespaces: s.Namespaces}
	})
	if err != nil {
		return nil, err
	}
	merged := map[string]watermark.Session{}
	for i, rows := range answers {
		if !answered[i] {
			continue
		}
		for id, s := range rows {
			m, seen := merged[id]
			if !seen {
				merged[id] = s
				continue
			}
			// The newest row says whether the store is still running (a
			// refresh after an exit was recorded makes it live again);
			// closed or exited anywhere at that time counts.
			if s.Refreshed.After(m.Refreshed) {
				s.Namespaces = union(s.Namespaces, m.Namespaces)
				m = s
			} else {
				m.Namespaces = union(m.Namespaces, s.Namespaces)
				if s.Refreshed.Equal(m.Refreshed) {
					m.Closed, m.Exited = m.Closed || s.Closed, m.Exited || s.Exited
				}
			}
			m.RegistrationTTL = max(m.RegistrationTTL, s.RegistrationTTL)
			merged[id] = m
		}
	}
	out := make([]watermark.Session, 0, len(merged))
	for _, s := range merged {
		out = append(out, s)
	}
	return out, nil
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// recordExits records the exits of the stores in exits (watermark.Exits),
// each as overflow entries and then an exited session; the first that
// fails stops the pass (the watermark does not move without them).
func (d *Daemon) recordExits(ctx context.Context, exits []watermark.Session) error {
	for _, e := range exits {
		if err := d.recordExit(ctx, e); err != nil {
			return fmt.Errorf("recording that store %s (home %s) stopped without closing: %w", e.ID, e.Home, err)
		}
	}
	return nil
}

func (d *Daemon) recordExit(ctx context.Context, e watermark.Session) error {
	namespaces := union(e.Namespaces, d.cfg.Names())
	at := d.now()
	recorded := exitDebtHome(e.Home, d.cfg.Home, d.regionNames())
	if err := d.exitDebt(ctx, recorded, namespaces, at); err != nil {
		return fmt.Errorf("in region %s: %w", recorded, err)
	}
	// Counted once the debt is recorded, whatever the mark does: a mark
	// that only a minority of the regions took is still the newest row of
	// the session where it landed, so a later pass may read the session as
	// exited and never come back here.
	if d.wm.exitRecorded(e.ID, at) {
		d.log.Warn("repaird: a store stopped without closing: the writes it had not settled are covered by full repairs, and every region's watermark waits for them",
			"producer", e.ID, "home", e.Home, "debt_in", recorded, "last_refresh", e.Refreshed, "namespaces", namespaces)
	}
	return d.markExited(ctx, e, recorded, at)
}

// markSessionExited marks e's session exited in every region, its Home
// now recorded (the region holding the exit's debt); it fails unless a
// majority took it.
func (d *Daemon) markSessionExited(ctx context.Context, e watermark.Session, recorded string, at time.Time) error {
	// Marked exited with a timestamp above the store's last refresh, so
	// that a refresh of a store that was only cut off wins again. Its
	// Home is now the region holding the exit's debt: every daemon counts
	// the debt of the sessions' homes.
	ts := max(at.UnixMicro(), e.Refreshed.UnixMicro()+1)
	cells := schema.Cells{Value: schema.EncodeSession(schema.Session{Registered: e.Registered, Exited: true, Home: recorded, RegistrationTTL: e.RegistrationTTL, Namespaces: e.Namespaces}),
		Expires: schema.ExpiryAfter(at, schema.SessionTTL)}
	cells.Digest = schema.Digest(false, cells.Value)
	regions := d.regionNames()
	errs := d.eachRegion(ctx, regions, func(ctx context.Context, _ int, r string) error {
		return d.insert(ctx, r, schema.ProducersTable, schema.SessionsPartition, []byte(e.ID), cells, ts, schema.TTLSeconds(schema.SessionTTL))
	})
	if ok, failed := answeredBy(regions, errs); ok <= len(regions)/2 {
		// The entries are recorded; the next pass records them again
		// (the same keys) and tries the mark once more.
		return fmt.Errorf("marking the session exited: %d of %d regions took it: %s", ok, len(regions), failed)
	}
	return nil
}

// exitDebtHome is the region whose keyspace takes an exit's overflow
// entries: the store's home, where its own debt would have been
// and whose repaird drains it; only when that region is not among this
// daemon's regions, this daemon's home, so that it drains them itself. A
// known home that does not answer is not replaced: the next pass tries
// again. (Entries written in another daemon's home could stay there for
// good — a daemon that repairs no namespace keeps overflow entries it
// cannot run — and every watermark would wait on them.)
func exitDebtHome(storeHome, daemonHome string, regions []string) string {
	if slices.Contains(regions, storeHome) {
		return storeHome
	}
	return daemonHome
}

// addExitDebt writes an exit's overflow entries, per namespace and
// region, in home's keyspace.
func (d *Daemon) addExitDebt(ctx context.Context, home string, namespaces []string, at time.Time) error {
	debt, err := d.debtIn(ctx, home)
	if err != nil {
		return err
	}
	for _, ns := range namespaces {
		for _, r := range d.regionNames() {
			ctx, cancel := context.WithTimeout(ctx, d.cfg.Watermark.RequestTimeout())
			err := debt.AddDebt(ctx, repair.NewExitEntry(r, ns, at))
			cancel()
			if err != nil {
				return fmt.Errorf("overflow entry for namespace %s, region %s: %w", ns, r, err)
			}
		}
	}
	return nil
}
