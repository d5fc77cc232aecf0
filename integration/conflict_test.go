package integration

// Conflicts on the real regions: two Stores with different writer ids
// write the same key within the conflict window while each one's remote
// region is cut, so each region keeps one writer's version; repair (or a
// read repair) finds both, keeps the LWW winner and records the loser in
// the conflict log, readable from a service and counted in the metric.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/integration/fault"

	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/repair"
	"github.com/tidemark/tidemark/store"
)

// Writer ids of the two racing Stores.
const (
	conflictWriterA = 11
	conflictWriterB = 22
)

// racingStores opens writer A (home a) and writer B (home b) in a fresh
// keyspace, cuts each one's remote region, and has both write pk/ck (A
// "from-a", B "from-b") at LocalQuorum, so that region a holds only A's
// version and region b only B's; also A writes pk/"only-a", which only
// region a holds (a divergence without a conflict). It returns both
// Stores, healed, and the keyspace.
// openRacingStore is openStore (fault proxies, a hint recorder) for a
// Store with writer id id, breakers off, that creates the namespace once
// its regions answer: Open does not wait for a region that is slow to
// answer (the shared servers may be busy).
func openRacingStore(t *testing.T, ks string, regions []string, id int) *storeEnv {
	t.Helper()
	e := &storeEnv{ks: ks, sink: &hintRecorder{}, proxies: map[string]*fault.Proxy{}}
	cfg := store.Config{Home: regions[0], Keyspace: ks, Timeout: 2 * time.Second, ConnectTimeout: 20 * time.Second,
		HintSink: e.sink, WriterID: id}
	cfg.Breaker.Disabled = true
	for _, name := range regions {
		p := frontRegion(t, name)
		e.proxies[name] = p
		r := proxiedRegion(t, name, p)
		cfg.Regions = append(cfg.Regions, store.RegionConfig{Name: name, ContactPoints: r.ContactPoints,
			LocalDC: r.LocalDC, AddressMap: r.AddressMap})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.CloseContext(ctx); err != nil {
			t.Logf("store close: %v", err)
		}
	})
	t.Cleanup(func() { // runs first: heal before the Store closes
		for _, p := range e.proxies {
			_ = p.Heal()
		}
	})
	e.st = st
	eventually(t, time.Minute, "CreateNamespace in every region", func() error {
		e.ns, err = st.CreateNamespace(ctx, storeNS)
		return err
	})
	return e
}

func racingStores(t *testing.T, pk, ck []byte) (a, b *storeEnv, ks string) {
	t.Helper()
	ks = newKeyspace(t, "a", "b")
	a = openRacingStore(t, ks, []string{"a", "b"}, conflictWriterA)
	b = openRacingStore(t, ks, []string{"b", "a"}, conflictWriterB)
	if err := a.proxies["b"].Blackhole(); err != nil {
		t.Fatal(err)
	}
	if err := b.proxies["a"].Blackhole(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.ns.Put(ctx, pk, ck, []byte("from-a")); err != nil {
		t.Fatalf("writer A: %v", err)
	}
	if err := b.ns.Put(ctx, pk, ck, []byte("from-b")); err != nil {
		t.Fatalf("writer B: %v", err)
	}
	if err := a.ns.Put(ctx, pk, []byte("only-a"), []byte("v")); err != nil {
		t.Fatalf("writer A: %v", err)
	}
	// The remote shares became hints (recorded, never replayed): neither
	// write reached the other region.
	eventually(t, 30*time.Second, "the remote writes hinted", func() error {
		if na, nb := a.sink.targets()["b"], b.sink.targets()["a"]; na != 2 || nb != 1 {
			return fmt.Errorf("hints: writer A for b %d (want 2), writer B for a %d (want 1)", na, nb)
		}
		return nil
	})
	for _, e := range []*storeEnv{a, b} {
		for _, p := range e.proxies {
			if err := p.Heal(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ra, rb := readRegionRow(t, "a", ks, pk, ck), readRegionRow(t, "b", ks, pk, ck)
	if string(ra.value) != "from-a" || string(rb.value) != "from-b" {
		t.Fatalf("before repair: region a holds %q, b holds %q; want each writer's own", ra.value, rb.value)
	}
	if quorum.WriterOf(ra.writetime) != conflictWriterA || quorum.WriterOf(rb.writetime) != conflictWriterB {
		t.Fatalf("writer ids in the timestamps: a %d, b %d", quorum.WriterOf(ra.writetime), quorum.WriterOf(rb.writetime))
	}
	if d := time.Duration(max(ra.writetime-rb.writetime, rb.writetime-ra.writetime)) * time.Microsecond; d > quorum.DefaultConflictWindow {
		t.Fatalf("the writes are %v apart, outside the window", d)
	}
	return a, b, ks
}

// wantConflict checks that got is the one conflict of pk/ck between the
// versions regions a and b held, as detector by saw it.
func wantConflict(t *testing.T, got []store.Conflict, ks string, pk, ck []byte, by string) {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("recorded %d conflicts, want 1: %v", len(got), got)
	}
	ra, rb := readRegionRow(t, "a", ks, pk, ck), readRegionRow(t, "b", ks, pk, ck)
	if ra.writetime != rb.writetime {
		t.Fatalf("after the repair the regions still differ: %+v, %+v", ra, rb)
	}
	c := got[0]
	// The winner is what both regions hold now; the loser is the other
	// writer's version.
	winWriter := quorum.WriterOf(ra.writetime)
	loseWriter, loseRegion := conflictWriterA, "a"
	if winWriter == conflictWriterA {
		loseWriter, loseRegion = conflictWriterB, "b"
	}
	switch {
	case c.Namespace != storeNS || string(c.PK) != string(pk) || string(c.CK) != string(ck):
		t.Fatalf("conflict of the wrong row: %s", c)
	case c.Winner.Timestamp != ra.writetime || c.Winner.Writer != winWriter || c.Winner.Deleted:
		t.Fatalf("winner %+v, want ts %d writer %d (what the regions hold)", c.Winner, ra.writetime, winWriter)
	case c.Loser.Writer != loseWriter || quorum.WriterOf(c.Loser.Timestamp) != loseWriter || c.Loser.Deleted || c.Loser.Timestamp >= c.Winner.Timestamp:
		t.Fatalf("loser %+v, want writer %d, older than the winner", c.Loser, loseWriter)
	case c.LoserRegion != loseRegion:
		t.Fatalf("loser region %q, want %q", c.LoserRegion, loseRegion)
	case c.DetectedBy != by || time.Since(c.DetectedAt) > 5*time.Minute:
		t.Fatalf("detected by %q at %v", c.DetectedBy, c.DetectedAt)
	}
}

// TestConflictRecordedByRepair: repair of the two writers' versions
// records exactly one conflict (the row only one region held is copied,
// no conflict), in the first region's keyspace, readable by
// repair.ListConflicts and by a Store, counted in the metric.
func TestConflictRecordedByRepair(t *testing.T) {
	t.Parallel()
	pk, ck := []byte("user-1"), []byte("profile")
	a, _, ks := racingStores(t, pk, ck)
	var regions []repair.Region
	for _, name := range []string{"a", "b"} {
		cr, err := repair.NewCQLRegion(adminSession(t, region(t, name)), ks)
		if err != nil {
			t.Fatal(err)
		}
		regions = append(regions, repair.Region{Name: name, Reader: cr, Writer: cr})
	}
	m := repair.NewMetrics()
	r, err := repair.New(regions, repair.Options{Segments: 8, Metrics: m, Owner: "conflict-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := r.Run(ctx, storeNS)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsDiffering != 2 || rep.RowsWritten != 2 || rep.Conflicts != 1 {
		t.Fatalf("repair: %d differing, %d written, %d conflicts; want 2, 2, 1", rep.RowsDiffering, rep.RowsWritten, rep.Conflicts)
	}
	got, err := repair.ListConflicts(ctx, adminSession(t, region(t, "a")), ks, storeNS, repair.ConflictQuery{Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wantConflict(t, got, ks, pk, ck, "repair")
	t.Logf("recorded: %s", got[0])
	// Region b's keyspace has no log: nothing recorded there.
	if gb, err := repair.ListConflicts(ctx, adminSession(t, region(t, "b")), ks, storeNS, repair.ConflictQuery{}); err != nil || len(gb) != 0 {
		t.Fatalf("region b's log: %v, %v; want empty", gb, err)
	}
	// A service reads it through its Store (every connected region; the
	// Store's sessions reconnect after the proxies healed).
	var fromStore []store.Conflict
	eventually(t, 30*time.Second, "the conflict read through the Store", func() error {
		var err error
		fromStore, err = a.st.Conflicts(ctx, storeNS, store.ConflictQuery{})
		return err
	})
	wantConflict(t, fromStore, ks, pk, ck, "repair")
	labels := []string{"namespace", storeNS, "detected_by", "repair"}
	if n := counter(t, m, "tidemark_conflicts_total", labels...); n != 1 {
		t.Fatalf("tidemark_conflicts_total = %v, want 1", n)
	}
	if n := counter(t, m, "tidemark_conflicts_dropped_total", labels...); n != 0 {
		t.Fatalf("tidemark_conflicts_dropped_total = %v, want 0", n)
	}
	// An operator lists it with repaird.
	code, out, errOut := runCLI("conflicts", "--config", writeRepairConfig(t, ks, []string{"a", "b"}, ""), "--namespace", storeNS)
	if code != 0 || !strings.Contains(out, "1 conflicts of namespace") || !strings.Contains(out, got[0].String()) {
		t.Fatalf("repaird conflicts: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// A second run finds nothing to repair and records nothing new.
	r2, _ := repair.New(regions, repair.Options{Segments: 8, Metrics: m, Owner: "conflict-test"})
	if rep, err := r2.Run(ctx, storeNS); err != nil || rep.RowsDiffering != 0 || rep.Conflicts != 0 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
}

// TestConflictRecordedByReadRepair: a Get at All over both regions sees
// both writers' versions; its read repair records the loser in the home
// region's log, readable through the Store and counted.
func TestConflictRecordedByReadRepair(t *testing.T) {
	t.Parallel()
	pk, ck := []byte("user-2"), []byte("profile")
	a, _, ks := racingStores(t, pk, ck)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eventually(t, 30*time.Second, "a read at ALL after the heal", func() error {
		_, err := a.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.All))
		return err
	})
	var got []store.Conflict
	eventually(t, 30*time.Second, "the read repair's conflict record", func() error {
		var err error
		got, err = a.st.Conflicts(ctx, storeNS, store.ConflictQuery{Since: time.Now().Add(-time.Hour)})
		if err == nil && len(got) == 0 {
			err = fmt.Errorf("no conflict recorded yet (counted %v, dropped %v)",
				counter(t, a.st.Metrics(), "tidemark_conflicts_total"),
				counter(t, a.st.Metrics(), "tidemark_conflicts_dropped_total"))
		}
		return err
	})
	eventually(t, 30*time.Second, "the read repair's write", func() error {
		if ra, rb := readRegionRow(t, "a", ks, pk, ck), readRegionRow(t, "b", ks, pk, ck); ra.writetime != rb.writetime {
			return fmt.Errorf("regions differ: %d, %d", ra.writetime, rb.writetime)
		}
		return nil
	})
	wantConflict(t, got, ks, pk, ck, "read_repair")
	t.Logf("recorded: %s", got[0])
	if n := counter(t, a.st.Metrics(), "tidemark_conflicts_total", "namespace", storeNS, "detected_by", "read_repair"); n < 1 {
		t.Fatalf("tidemark_conflicts_total = %v, want at least 1", n)
	}
}
