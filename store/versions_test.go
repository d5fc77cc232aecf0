package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tidemark/tidemark/internal/cells"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// Tests of the issue "versions that never tie": each fails on the code
// before its fix.

// TestNamespaceRetentionIsTheTables: a retention given to Namespace could
// only be a guess, and a shorter one made markers expire early; it is
// refused, and deletes use the one recorded with the table.
func TestNamespaceRetentionIsTheTables(t *testing.T) {
	e := newMemEnv(t, nil)
	e.existingTable(t, "events", 30*24*time.Hour)
	if _, err := e.st.Namespace("events", WithRetention(time.Hour)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Namespace with WithRetention: %v, want ErrInvalidOption", err)
	}
	ns, err := e.st.Namespace("events")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(context.Background(), []byte("pk"), []byte("ck")); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	row, ok := e.mem["a"].Lookup("ks", "events", []byte("pk"), []byte("ck"))
	if !ok || !row.Deleted {
		t.Fatalf("no marker: %+v %v", row, ok)
	}
	if left := time.Until(time.Unix(row.Expires, 0)); left < 30*24*time.Hour-time.Minute {
		t.Fatalf("marker lives %v, want the table's 30 days", left)
	}
}

// TestReadOfMarkerAdvancesClock: a Get that finds a deletion marker written
// by a writer whose clock is ahead still moves this Store's clock past it,
// so a read-modify-write after the delete wins (before the fix the Put
// returned nil and the row stayed deleted).
func TestReadOfMarkerAdvancesClock(t *testing.T) {
	for _, l := range []quorum.Level{quorum.LocalQuorum, quorum.Quorum} {
		t.Run(l.String(), func(t *testing.T) {
			e := newMemEnv(t, nil)
			ahead := time.Now().Add(20 * time.Second) // within MaxClockDrift
			ts := ahead.UnixMicro()
			for _, r := range regionNamesABC {
				err := e.mem[r].Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: "ns", PK: []byte("pk"),
					Rows: []driver.Row{{CK: []byte("ck"), Deleted: true, Timestamp: ts, TTL: 3600, Expires: time.Now().Unix() + 3600}}})
				if err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithConsistency(l)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of a deleted row: %v, want ErrNotFound", err)
			}
			if err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("again"), WithConsistency(quorum.All)); err != nil {
				t.Fatal(err)
			}
			it, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithConsistency(l))
			if err != nil || string(it.Value) != "again" {
				t.Fatalf("Get after the read-modify-write: %+v %v, want the new value (the Put lost to the marker)", it, err)
			}
		})
	}
}

// TestCallerDeadlineDoesNotTripBreaker: a caller whose budget (its
// context's deadline, or WithTimeout) is shorter than the region's answer
// does not open the region's breaker; a region that misses the store's own
// timeout still does.
func TestCallerDeadlineDoesNotTripBreaker(t *testing.T) {
	e := newMemEnv(t, func(c *Config) {
		c.Timeout = 200 * time.Millisecond
		c.Breaker = BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: time.Hour}
	})
	e.mem["a"].SetFault(driver.Fault{Delay: 50 * time.Millisecond, Ops: []string{driver.OpRead, driver.OpWrite}})
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := e.ns.Get(ctx, []byte("pk"), []byte("ck"))
		cancel()
		if err == nil {
			t.Fatal("a 5ms Get against a 50ms region succeeded")
		}
		if _, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithTimeout(5*time.Millisecond)); err == nil {
			t.Fatal("a Get WithTimeout(5ms) against a 50ms region succeeded")
		}
	}
	if st := e.st.regions[0].breaker.State(); st != gobreaker.StateClosed {
		t.Fatalf("home breaker %v after callers' deadlines, want closed", st)
	}
	if err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v")); err != nil {
		t.Fatalf("a Put without a deadline: %v", err)
	}
	// The region's own timeout passing is its failure.
	e.mem["a"].SetFault(driver.Fault{Delay: time.Second, Ops: []string{driver.OpRead}})
	for range 2 {
		_, _ = e.ns.Get(context.Background(), []byte("pk"), []byte("x"))
	}
	if st := e.st.regions[0].breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("home breaker %v after two reads past Config.Timeout, want open", st)
	}
}

// TestScanReadsAheadOverMarkers: after a full page, a run of deletion
// markers costs a request per batch of markers, not one per marker (the
// review counted 2,001 requests for one page of 100).
func TestScanReadsAheadOverMarkers(t *testing.T) {
	e := newMemEnv(t, nil)
	ctx := context.Background()
	var entries []Entry
	for i := range 100 {
		entries = append(entries, Entry{CK: []byte{'a', byte(i)}, Value: []byte("v")})
	}
	for i := range 1000 {
		entries = append(entries, Entry{CK: []byte{'b', byte(i >> 8), byte(i)}, Delete: true})
	}
	entries = append(entries, Entry{CK: []byte("c"), Value: []byte("last")})
	for start := 0; start < len(entries); start += 200 {
		if err := e.ns.PutBatch(ctx, []byte("pk"), entries[start:min(start+200, len(entries))]); err != nil {
			t.Fatal(err)
		}
	}
	before := e.mem["a"].Calls(driver.OpScan)
	page, err := e.ns.Scan(ctx, []byte("pk"), WithPageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 100 || page.Next == "" {
		t.Fatalf("page of %d items, next %q; want 100 and more to come", len(page.Items), page.Next)
	}
	if n := e.mem["a"].Calls(driver.OpScan) - before; n > 1+1000/scanProbeRows+2 {
		t.Fatalf("%d region requests for one page over 1000 markers, want about %d", n, 1+1000/scanProbeRows)
	}
	next, err := e.ns.Scan(ctx, []byte("pk"), WithPageToken(page.Next))
	if err != nil || len(next.Items) != 1 || string(next.Items[0].Value) != "last" || next.Next != "" {
		t.Fatalf("second page %+v %v, want the one live row after the markers", next, err)
	}
}

// TestEmptyValueRoundTrips: an empty value reads back as empty (never nil)
// from every region, and read repair writes it as an empty value, not a
// null (a cell tombstone).
func TestEmptyValueRoundTrips(t *testing.T) {
	e := newMemEnv(t, nil)
	ctx := context.Background()
	e.mem["c"].SetFault(driver.Outage())
	if err := e.ns.Put(ctx, []byte("pk"), []byte("ck"), []byte{}, WithConsistency(quorum.EachQuorum)); err == nil {
		t.Fatal("EachQuorum with c down succeeded")
	}
	e.mem["c"].SetFault(driver.Fault{})
	it, err := e.ns.Get(ctx, []byte("pk"), []byte("ck"), WithConsistency(quorum.All))
	if err != nil || it.Value == nil || len(it.Value) != 0 {
		t.Fatalf("Get: %+v %v, want an empty, non-nil value", it, err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	row, ok := e.mem["c"].Lookup("ks", "ns", []byte("pk"), []byte("ck"))
	if !ok || row.Deleted || row.Value == nil {
		t.Fatalf("read repair left %+v in c, want a live empty value", row)
	}
	for _, w := range e.writes("c") {
		for _, r := range w.Rows {
			if r.Value == nil && !r.Deleted {
				t.Fatalf("a live row was written with a nil value (a null: a cell tombstone): %+v", r)
			}
		}
	}
}

// TestExpiryIsAbsolute: a row is visible until its absolute expiry in
// every region, whatever the TTL a region's cells carry (a node that
// applied the write late holds them longer).
func TestExpiryIsAbsolute(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	e := newMemEnv(t, func(c *Config) { c.Now = clock })
	ctx := context.Background()
	if err := e.ns.Put(ctx, []byte("pk"), []byte("ck"), []byte("v"), WithTTL(time.Hour), WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	// Region b applied it 30s late: its cells live 30s longer.
	row, _ := e.mem["b"].Lookup("ks", "ns", []byte("pk"), []byte("ck"))
	late := row
	late.TTL += 30
	if err := e.mem["b"].Write(ctx, driver.WriteRequest{Keyspace: "ks", Table: "ns", PK: []byte("pk"), Rows: []driver.Row{late}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour + time.Second)
	for _, l := range []quorum.Level{quorum.LocalQuorum, quorum.All} {
		if it, err := e.ns.Get(ctx, []byte("pk"), []byte("ck"), WithConsistency(l)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get at %v a second past the expiry: %+v %v, want ErrNotFound", l, it, err)
		}
	}
	if _, ok := e.mem["b"].Lookup("ks", "ns", []byte("pk"), []byte("ck")); !ok {
		t.Fatal("region b's cells are gone: the test did not make them outlive the expiry")
	}
}

// TestMemoryRegionTieTable: the in-memory region keeps, of every tie of the
// shared table that Tidemark can write, the row Cassandra keeps.
func TestMemoryRegionTieTable(t *testing.T) {
	ties, err := cells.LoadTies("../internal/cells/testdata/ties.txt")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tie := range ties {
		kept, ok := tie.Kept()
		if tie.HasLegacy() || !ok {
			continue
		}
		t.Run(tie.Name, func(t *testing.T) {
			m := driver.NewMemoryRegion()
			m.Now = func() time.Time { return now }
			if err := m.CreateTable(context.Background(), "ks", "t", time.Hour); err != nil {
				t.Fatal(err)
			}
			for _, w := range []cells.TieWrite{tie.A, tie.B} {
				r := driver.Row{CK: []byte("ck"), Deleted: w.Deleted, Timestamp: w.Timestamp, TTL: int(w.TTL)}
				if !w.Deleted {
					r.Value = w.Value
				}
				if w.TTL > 0 {
					r.Expires = now.Unix() + w.TTL
				}
				if err := m.Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: "t", PK: []byte("pk"), Rows: []driver.Row{r}}); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := m.Lookup("ks", "t", []byte("pk"), []byte("ck"))
			if !ok || got.Deleted != kept.Deleted || (!kept.Deleted && !bytes.Equal(got.Value, kept.Value)) {
				t.Fatalf("kept %+v, want write %s (%+v)", got, tie.Keeps, kept)
			}
		})
	}
}

// TestWithVersionReport: a write reports the version it was given, the
// timestamp every region holds; a read refuses the option.
func TestWithVersionReport(t *testing.T) {
	e := newMemEnv(t, func(c *Config) { c.WriterID = 9 })
	ctx := context.Background()
	var v int64
	if err := e.ns.Put(ctx, []byte("pk"), []byte("ck"), []byte("x"), WithVersionReport(&v), WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	if v&MaxWriterID != 9 {
		t.Fatalf("version %d does not carry writer id 9", v)
	}
	for _, r := range regionNamesABC {
		if row, ok := e.mem[r].Lookup("ks", "ns", []byte("pk"), []byte("ck")); !ok || row.Timestamp != v {
			t.Fatalf("region %s holds %+v, want timestamp %d", r, row, v)
		}
	}
	var d int64
	if err := e.ns.Delete(ctx, []byte("pk"), []byte("ck"), WithVersionReport(&d)); err != nil || d <= v {
		t.Fatalf("Delete reported %d (%v), want a version after %d", d, err, v)
	}
	if _, err := e.ns.Get(ctx, []byte("pk"), []byte("ck"), WithVersionReport(&v)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Get with WithVersionReport: %v, want ErrInvalidOption", err)
	}
	if err := e.ns.Put(ctx, []byte("pk"), []byte("ck"), nil, WithVersionReport(nil)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("WithVersionReport(nil): %v, want ErrInvalidOption", err)
	}
}
