package integration

// End-to-end tests of package store against the real regions: every
// consistency level with regions cut by fault proxies, deletes, versions,
// TTLs, validation, read repair and a three-node region losing nodes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

// storeNS is the namespace the store tests write.
const storeNS = "items"

// hintRecorder is a HintSink that keeps every hint (durable at once), or
// fails every hint when failing is set.
type hintRecorder struct {
	mu      sync.Mutex
	hints   []record.Hint
	failing bool
}

func (h *hintRecorder) Hint(_ context.Context, x record.Hint) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing {
		return errors.New("hint sink down (test)")
	}
	h.hints = append(h.hints, x)
	return nil
}

// targets returns how many hints each region received.
func (h *hintRecorder) targets() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, x := range h.hints {
		out[x.Target]++
	}
	return out
}

func (h *hintRecorder) all() []record.Hint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.hints)
}

// storeEnv is a Store over regions a, b, c, each reached through its own
// fault proxy, in a fresh keyspace with the namespace created.
type storeEnv struct {
	ks      string
	st      *store.Store
	ns      *store.Namespace
	sink    *hintRecorder
	proxies map[string]*fault.Proxy
}

// openStore opens a Store over the given regions (first = home) through new
// fault proxies, in keyspace ks, and closes it at cleanup.
func openStore(t testing.TB, ks string, regions []string, mut func(*store.Config)) *storeEnv {
	t.Helper()
	e := &storeEnv{ks: ks, sink: &hintRecorder{}, proxies: map[string]*fault.Proxy{}}
	cfg := store.Config{Home: regions[0], Keyspace: ks, Timeout: 3 * time.Second, ConnectTimeout: 20 * time.Second, HintSink: e.sink}
	for _, name := range regions {
		p := frontRegion(t, name)
		e.proxies[name] = p
		r := proxiedRegion(t, name, p)
		cfg.Regions = append(cfg.Regions, store.RegionConfig{Name: name, ContactPoints: r.ContactPoints,
			LocalDC: r.LocalDC, AddressMap: r.AddressMap})
	}
	if mut != nil {
		mut(&cfg)
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
	// Cleanups run last first: the proxies heal before the store closes,
	// so a test that fails with a region cut does not make Close wait on
	// the cut.
	t.Cleanup(func() {
		for _, p := range e.proxies {
			_ = p.Heal()
		}
	})
	e.st = st
	ns, err := st.CreateNamespace(ctx, storeNS)
	if err != nil {
		t.Fatalf("CreateNamespace: %v", err)
	}
	e.ns = ns
	return e
}

// storedRow is a row as one region holds it, read directly (no proxy).
type storedRow struct {
	found     bool
	value     []byte
	deleted   bool
	writetime int64
	ttl       int
	expires   int64 // the absolute expiry column
}

func readRegionRow(t testing.TB, regionName, ks string, pk, ck []byte) storedRow {
	t.Helper()
	s := adminSession(t, region(t, regionName))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r storedRow
	err := s.Query(schema.SelectRow(ks, storeNS), pk, ck).Consistency(gocql.LocalQuorum).
		ScanContext(ctx, &r.value, &r.deleted, &r.writetime, &r.ttl, &r.expires)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return storedRow{}
	case err != nil:
		t.Fatalf("read %s in region %s: %v", pk, regionName, err)
	}
	r.found = true
	return r
}

func countRegionRows(t testing.TB, regionName, ks string) int {
	t.Helper()
	s := adminSession(t, region(t, regionName))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var n int
	if err := s.Query("SELECT count(*) FROM "+ks+"."+storeNS).Consistency(gocql.LocalQuorum).ScanContext(ctx, &n); err != nil {
		t.Fatalf("count rows in region %s: %v", regionName, err)
	}
	return n
}

// wantWriteOK is the level table of docs/design.md ("Consistency levels") for 3 regions with a (home)
// first: does a write at l succeed with the regions in cut failing?
func wantWriteOK(l quorum.Level, cut []string) bool {
	home := slices.Contains(cut, "a")
	switch l {
	case quorum.LocalOne, quorum.LocalQuorum:
		return !home
	case quorum.Quorum:
		return len(cut) <= 1
	case quorum.EachQuorum, quorum.All:
		return len(cut) == 0
	case quorum.Any:
		return true // home acks, or its hint is durable (the recorder never fails)
	}
	panic(l)
}

// TestStoreLevels writes at every level with 0, 1 and 2 of 3 regions cut,
// and checks the call's result against the level table, that each region
// afterwards holds exactly what was promised (every reachable region has
// the row, with one timestamp; no cut region has it), and that the hint
// sink received exactly one hint per cut region.
func TestStoreLevels(t *testing.T) {
	t.Parallel()
	testEnv(t)
	ks := newKeyspace(t, "a", "b", "c")
	cuts := [][]string{nil, {"a"}, {"b"}, {"a", "b"}, {"b", "c"}}
	for _, l := range quorum.Levels() {
		for _, cut := range cuts {
			name := fmt.Sprintf("%s/cut=%s", l, strings.Join(cut, "+"))
			t.Run(name, func(t *testing.T) {
				e := openStore(t, ks, []string{"a", "b", "c"}, func(c *store.Config) {
					c.Breaker.Disabled = true
				})
				for _, r := range cut {
					if err := e.proxies[r].Refuse(); err != nil {
						t.Fatal(err)
					}
				}
				pk := []byte(uniqueName(t, "pk"))
				ck, val := []byte("ck"), []byte("value-"+name)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := e.ns.Put(ctx, pk, ck, val, store.WithConsistency(l))
				// Close waits for the background writes and hints checked
				// below. A cut region's driver session may not finish
				// closing within ConnectionCloseTimeout (a schema refresh
				// in flight, TestStoreCloseCutDuringSchemaRefresh): that
				// ErrStillClosing alone is the documented outcome, and
				// the background work is done by then.
				if closeErr := closeStore(t, e.st); closeErr != nil {
					t.Fatalf("Close: %v", closeErr)
				}
				want := wantWriteOK(l, cut)
				switch {
				case want && err != nil:
					t.Fatalf("Put at %s with %v cut: %v, want success", l, cut, err)
				case !want && err == nil:
					t.Fatalf("Put at %s with %v cut succeeded, want an error", l, cut)
				case !want:
					var ce *store.ConsistencyError
					if !errors.As(err, &ce) || !errors.Is(err, store.ErrUnavailable) {
						t.Fatalf("Put error %v, want a ConsistencyError wrapping ErrUnavailable", err)
					}
					for _, re := range ce.Failed {
						// Regions that had not answered when the call was
						// decided are listed too, as Pending.
						if !re.Pending && !slices.Contains(cut, re.Region) {
							t.Errorf("error names region %s as failed, which was not cut: %v", re.Region, err)
						}
					}
				}
				var ts int64
				for _, r := range []string{"a", "b", "c"} {
					row := readRegionRow(t, r, ks, pk, ck)
					if slices.Contains(cut, r) {
						if row.found {
							t.Errorf("cut region %s holds the row", r)
						}
						continue
					}
					if !row.found || !bytes.Equal(row.value, val) || row.deleted {
						t.Errorf("region %s holds %+v, want the value", r, row)
						continue
					}
					if ts == 0 {
						ts = row.writetime
					} else if row.writetime != ts {
						t.Errorf("region %s writetime %d, others %d: one timestamp per write", r, row.writetime, ts)
					}
				}
				got := e.sink.targets()
				for _, r := range []string{"a", "b", "c"} {
					want := 0
					if slices.Contains(cut, r) {
						want = 1
					}
					if got[r] != want {
						t.Errorf("hints for region %s: %d, want %d (all hints: %v)", r, got[r], want, got)
					}
				}
				for _, h := range e.sink.all() {
					if ts != 0 && h.Timestamp != ts {
						t.Errorf("hint for %s has ts %d, regions have %d", h.Target, h.Timestamp, ts)
					}
					if h.Origin != "a" || h.Namespace != storeNS || !bytes.Equal(h.PK, pk) || !bytes.Equal(h.Value, val) {
						t.Errorf("hint %+v does not describe the write", h)
					}
				}
			})
		}
	}
}

// TestStoreCloseCutDuringSchemaRefresh is why TestStoreLevels accepts
// ErrStillClosing from Close. A second after a schema change event the
// driver refreshes its schema metadata over the control connection: it
// waits up to 10 s for schema agreement, each of its requests up to the
// driver's request timeout (30 s), and nothing cancels it; gocql's
// Session.Close waits for that refresh (and for a control heartbeat in
// flight) before it returns. A region cut while its session refreshes
// therefore outlasts ConnectionCloseTimeout. Close must still return at the
// bound, after every background write and hint, with only a
// StillClosingError naming that region, and the session must finish
// closing in the background once it can.
func TestStoreCloseCutDuringSchemaRefresh(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b")
	logs := &logRecorder{}
	e := openStore(t, ks, []string{"a", "b"}, func(c *store.Config) {
		c.Breaker.Disabled = true
		c.Logger = slog.New(logs)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A schema change in region b reaches the store's session there; its
	// refresh starts a second later, into the black hole.
	changed := time.Now()
	if err := adminSession(t, region(t, "b")).Query("CREATE TABLE " + ks + ".refresh_trigger (k int PRIMARY KEY)").ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the event has arrived
	if err := e.proxies["b"].Blackhole(); err != nil {
		t.Fatal(err)
	}
	pk := []byte(uniqueName(t, "pk"))
	if err := e.ns.Put(ctx, pk, []byte("ck"), []byte("v"), store.WithConsistency(quorum.LocalOne)); err != nil {
		t.Fatalf("Put at LOCAL_ONE with b cut: %v", err)
	}
	for e.sink.targets()["b"] == 0 { // b's background write times out (Config.Timeout) and is hinted
		if ctx.Err() != nil {
			t.Fatal("no hint for the cut region b")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Until(changed.Add(1500 * time.Millisecond)))

	start := time.Now()
	err := e.st.Close()
	took := time.Since(start)
	t.Logf("Close took %s: %v", took, err)
	if took > store.ConnectionCloseTimeout+2*time.Second {
		t.Errorf("Close took %s, more than ConnectionCloseTimeout (%s)", took, store.ConnectionCloseTimeout)
	}
	if got := e.sink.targets(); got["a"] != 0 || got["b"] != 1 {
		t.Errorf("hints %v, want one for b", got)
	}
	if err == nil {
		return // the driver closed the session in time after all
	}
	var sc *store.StillClosingError
	if !errors.As(err, &sc) || !slices.Equal(sc.Stragglers, []string{`region "b"`}) {
		t.Fatalf("Close: %v, want a StillClosingError naming region b alone", err)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) != 1 {
		t.Fatalf("Close: %v, want the StillClosingError alone", err)
	}
	// Reachable again, the session ends its refresh and finishes closing.
	if err := e.proxies["b"].Heal(); err != nil {
		t.Fatal(err)
	}
	const finished = "store: region connections finished closing after Close stopped waiting"
	deadline := time.Now().Add(20 * time.Second)
	for !logs.has(finished, `region "b"`) {
		if time.Now().After(deadline) {
			t.Fatalf("region b's session had not finished closing in the background 20s after its region healed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("region b finished closing %s after Close began", time.Since(start))
}

// logRecorder is a slog.Handler that keeps every record's message and
// attributes as one line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// has reports whether a line contains every one of parts.
func (l *logRecorder) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestStoreAnyFailsWithoutDurableHint: at Any with the home region cut, a
// failing hint sink makes the write fail.
func TestStoreAnyFailsWithoutDurableHint(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	e.sink.failing = true
	if err := e.proxies["a"].Refuse(); err != nil {
		t.Fatal(err)
	}
	err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), store.WithConsistency(quorum.Any))
	var re *store.RegionError
	if !errors.As(err, &re) || re.Region != "a" || re.Hinted {
		t.Fatalf("Put at ANY with home cut and no durable hint: %v, want an unhinted error for a", err)
	}
}

// TestStoreRejectedWriteNotHinted: a write to a namespace whose table does
// not exist (a typo given to Store.Namespace, which does no I/O) is refused
// by every region: at Any it fails instead of succeeding on a hint for the
// home region, no region gets a hint (a replay would be refused too and
// dead-lettered), and the background regions' refusals are counted. A
// Delete there fails as well: no region can tell the table's retention.
func TestStoreRejectedWriteNotHinted(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	ns, err := e.st.Namespace(storeNS + "_typo")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = ns.Put(ctx, []byte("pk"), []byte("ck"), []byte("v"), store.WithConsistency(quorum.Any))
	var re *store.RegionError
	if !errors.As(err, &re) || re.Region != "a" || re.Hinted {
		t.Fatalf("Put at ANY to a missing table: %v, want an unhinted error for the home region a", err)
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrTimeout) {
		t.Errorf("Put to a missing table: %v, must not look like an availability failure", err)
	}
	err = ns.Delete(ctx, []byte("pk"), []byte("ck"))
	if err == nil || errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), storeNS+"_typo") {
		t.Fatalf("Delete in a missing table: %v, want an error naming the namespace, not ErrUnavailable", err)
	}
	if err := closeStore(t, e.st); err != nil { // waits for the background writes to b and c
		t.Fatal(err)
	}
	if hs := e.sink.all(); len(hs) != 0 {
		t.Errorf("%d hints for refused writes, want none: %+v", len(hs), hs)
	}
	for _, r := range []string{"a", "b", "c"} {
		if got := gauge(t, e.st.Metrics(), "tidemark_store_writes_rejected_total", "region", r, "op", "put"); got != 1 {
			t.Errorf("writes_rejected_total{region=%s,op=put} = %v, want 1", r, got)
		}
	}
}

// TestStoreDeletePropagates: a delete is a deletion marker with one
// timestamp in every region, including a region that was cut and got the
// marker by read repair; Get then reports ErrNotFound.
func TestStoreDeletePropagates(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, func(c *store.Config) { c.Breaker.Disabled = true })
	ctx := context.Background()
	pk, ck := []byte("order-1"), []byte("line-1")
	if err := e.ns.Put(ctx, pk, ck, []byte("v1"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	if err := e.proxies["c"].Refuse(); err != nil {
		t.Fatal(err)
	}
	if err := e.ns.Delete(ctx, pk, ck, store.WithConsistency(quorum.Quorum)); err != nil {
		t.Fatalf("Delete at QUORUM with c cut: %v", err)
	}
	if _, err := e.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.LocalQuorum)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
	if hs := e.sink.all(); len(hs) != 1 || hs[0].Target != "c" || !hs[0].Deleted || hs[0].Value != nil || hs[0].ExpiresAt.IsZero() {
		t.Fatalf("hints %+v, want one deletion hint for c with an expiry", hs)
	}
	if row := readRegionRow(t, "c", ks, pk, ck); !row.found || row.deleted {
		t.Fatalf("cut region c: %+v, want the old value still there", row)
	}
	if err := e.proxies["c"].Heal(); err != nil {
		t.Fatal(err)
	}
	// A read at All sees the stale value in c, returns not found, and
	// repairs c with the marker in the background.
	eventually(t, 30*time.Second, "read at ALL after heal", func() error {
		_, err := e.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.All))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("Get at ALL: %v", err)
	})
	if err := closeStore(t, e.st); err != nil {
		t.Fatal(err)
	}
	var ts, expires int64
	for _, r := range []string{"a", "b", "c"} {
		row := readRegionRow(t, r, ks, pk, ck)
		if !row.found || !row.deleted || row.value != nil {
			t.Fatalf("region %s: %+v, want a deletion marker", r, row)
		}
		// The marker's absolute expiry is now + retention rounded up to a
		// second: its TTL is at most a second over the retention.
		if d := time.Duration(row.ttl) * time.Second; d <= schema.DefaultRetention-time.Hour || d > schema.DefaultRetention+time.Second {
			t.Errorf("region %s marker TTL %v, want about the retention %v", r, d, schema.DefaultRetention)
		}
		if ts == 0 {
			ts, expires = row.writetime, row.expires
		} else if row.writetime != ts || row.expires != expires {
			t.Errorf("region %s marker writetime %d expires %d, want %d and %d everywhere", r, row.writetime, row.expires, ts, expires)
		}
	}
	if ts != e.sink.all()[0].Timestamp {
		t.Errorf("marker writetime %d differs from the hint's %d", ts, e.sink.all()[0].Timestamp)
	}
}

// TestStoreOlderWriteNeverWins: a writer whose clock runs an hour behind
// writes after a writer with a correct clock; its older version loses in
// every region, as Cassandra reconciles cells.
func TestStoreOlderWriteNeverWins(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	now := time.Now()
	fresh := openStore(t, ks, []string{"a", "b", "c"}, nil)
	late := openStore(t, ks, []string{"b", "a", "c"}, func(c *store.Config) {
		c.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	})
	ctx := context.Background()
	pk, ck := []byte("k"), []byte("c")
	if err := fresh.ns.Put(ctx, pk, ck, []byte("newer"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	if err := late.ns.Put(ctx, pk, ck, []byte("older"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	if err := late.ns.Delete(ctx, pk, ck, store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*storeEnv{fresh, late} {
		it, err := st.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.All))
		if err != nil || string(it.Value) != "newer" {
			t.Fatalf("Get at ALL = %q, %v; want the newer value", it.Value, err)
		}
		if it.Time().Before(now.Add(-time.Minute)) {
			t.Errorf("version %v is not the fresh writer's", it.Time())
		}
	}
	for _, r := range []string{"a", "b", "c"} {
		if row := readRegionRow(t, r, ks, pk, ck); string(row.value) != "newer" || row.deleted {
			t.Errorf("region %s holds %+v, want the newer value", r, row)
		}
	}
}

// TestStoreTTLExpires: a row written with a TTL carries it to every region
// and disappears from all of them.
func TestStoreTTLExpires(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	ctx := context.Background()
	pk, ck := []byte("session"), []byte("s1")
	if err := e.ns.Put(ctx, pk, ck, []byte("tok"), store.WithTTL(3*time.Second), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	it, err := e.ns.Get(ctx, pk, ck)
	if err != nil || it.TTL <= 0 || it.TTL > 3*time.Second {
		t.Fatalf("Get = %+v, %v; want the row with TTL <= 3s", it, err)
	}
	for _, r := range []string{"a", "b", "c"} {
		// The absolute expiry is rounded up to a whole second: the TTL is
		// at most a second over the 3s asked.
		if row := readRegionRow(t, r, ks, pk, ck); !row.found || row.ttl <= 0 || row.ttl > 4 {
			t.Fatalf("region %s: %+v, want a TTL of at most 3s (rounded up to the second)", r, row)
		}
	}
	eventually(t, 20*time.Second, "row expired everywhere", func() error {
		if _, err := e.ns.Get(ctx, pk, ck, store.WithConsistency(quorum.All)); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Get at ALL: %v", err)
		}
		for _, r := range []string{"a", "b", "c"} {
			if row := readRegionRow(t, r, ks, pk, ck); row.found {
				return fmt.Errorf("region %s still has it", r)
			}
		}
		return nil
	})
}

// TestStoreBadInput: invalid calls give clear errors and write nothing in
// any region.
func TestStoreBadInput(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	ns := e.ns
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	pk, ck, v := []byte("pk"), []byte("ck"), []byte("v")
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"empty pk", func() error { return ns.Put(bg, nil, ck, v) }, store.ErrEmptyKey},
		{"empty ck", func() error { return ns.Put(bg, pk, nil, v) }, store.ErrEmptyKey},
		{"oversized pk", func() error { return ns.Put(bg, big(schema.MaxPartitionKey+1), ck, v) }, store.ErrKeyTooLarge},
		{"oversized ck", func() error { return ns.Put(bg, pk, big(schema.MaxClusteringKey+1), v) }, store.ErrKeyTooLarge},
		{"oversized value", func() error { return ns.Put(bg, pk, ck, big(store.DefaultMaxValueSize+1)) }, store.ErrValueTooLarge},
		{"unknown level", func() error { return ns.Put(bg, pk, ck, v, store.WithConsistency(quorum.Level(99))) }, store.ErrInvalidLevel},
		{"any on read", func() error { _, err := ns.Get(bg, pk, ck, store.WithConsistency(quorum.Any)); return err }, store.ErrInvalidLevel},
		{"zero TTL", func() error { return ns.Put(bg, pk, ck, v, store.WithTTL(0)) }, store.ErrInvalidTTL},
		{"negative TTL", func() error { return ns.Put(bg, pk, ck, v, store.WithTTL(-time.Minute)) }, store.ErrInvalidTTL},
		{"canceled ctx", func() error { return ns.Put(canceled, pk, ck, v) }, context.Canceled},
		{"batch with one bad entry", func() error {
			return ns.PutBatch(bg, pk, []store.Entry{{CK: []byte("1"), Value: v}, {CK: []byte("2"), Value: big(store.DefaultMaxValueSize + 1)}})
		}, store.ErrValueTooLarge},
		{"injection namespace", func() error { _, err := e.st.CreateNamespace(bg, "x; DROP KEYSPACE "+ks); return err }, store.ErrInvalidNamespace},
		{"injection namespace handle", func() error { _, err := e.st.Namespace(storeNS + " WHERE pk = 0x00"); return err }, store.ErrInvalidNamespace},
		{"quoted namespace", func() error { _, err := e.st.Namespace(`"Items"`); return err }, store.ErrInvalidNamespace},
	}
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if err := closeStore(t, e.st); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b", "c"} {
		if n := countRegionRows(t, r, ks); n != 0 {
			t.Errorf("region %s has %d rows after only invalid calls", r, n)
		}
	}
	if n := len(e.sink.all()); n != 0 {
		t.Errorf("%d hints after only invalid calls", n)
	}
}

// TestStoreTimeoutAndReadRepair: a black-holed region times out (the write
// at EachQuorum fails with ErrTimeout naming it, LocalQuorum does not wait
// for it); both writes become hints for it. After healing, a read at All
// returns the newest version and repairs the region.
func TestStoreTimeoutAndReadRepair(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, func(c *store.Config) {
		c.Timeout = 2 * time.Second
		c.Breaker.Disabled = true
	})
	ctx := context.Background()
	if err := e.proxies["b"].Blackhole(); err != nil {
		t.Fatal(err)
	}
	pk := []byte("p")
	err := e.ns.Put(ctx, pk, []byte("each"), []byte("v"), store.WithConsistency(quorum.EachQuorum))
	if !errors.Is(err, store.ErrTimeout) {
		t.Fatalf("EachQuorum with b black-holed: %v, want ErrTimeout", err)
	}
	var ce *store.ConsistencyError
	if !errors.As(err, &ce) || !slices.Equal(ce.Regions(), []string{"b"}) {
		t.Fatalf("error %v does not name exactly region b", err)
	}
	if err := e.ns.Put(ctx, pk, []byte("local"), []byte("v2")); err != nil {
		t.Fatalf("LocalQuorum with b black-holed: %v", err)
	}
	eventually(t, 30*time.Second, "hints for b", func() error {
		if n := e.sink.targets()["b"]; n != 2 {
			return fmt.Errorf("%d hints for b", n)
		}
		return nil
	})
	if err := e.proxies["b"].Heal(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "read at ALL after heal", func() error {
		it, err := e.ns.Get(ctx, pk, []byte("local"), store.WithConsistency(quorum.All))
		if err != nil {
			return err
		}
		if string(it.Value) != "v2" {
			return fmt.Errorf("value %q", it.Value)
		}
		return nil
	})
	if err := closeStore(t, e.st); err != nil { // waits for the read repair
		t.Fatal(err)
	}
	if row := readRegionRow(t, "b", ks, pk, []byte("local")); string(row.value) != "v2" {
		t.Fatalf("region b after read repair: %+v", row)
	}
}

// TestStoreScanAndBatch: a batch lands atomically with one version; a scan
// pages through a real partition, hiding deletion markers.
func TestStoreScanAndBatch(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	e := openStore(t, ks, []string{"a", "b", "c"}, nil)
	ctx := context.Background()
	pk := []byte("timeline")
	var entries []store.Entry
	for i := range 50 {
		entries = append(entries, store.Entry{CK: fmt.Appendf(nil, "%03d", i), Value: fmt.Appendf(nil, "event-%d", i)})
	}
	if err := e.ns.PutBatch(ctx, pk, entries, store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i += 10 {
		if err := e.ns.Delete(ctx, pk, fmt.Appendf(nil, "%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []quorum.Level{quorum.LocalOne, quorum.Quorum} {
		var got []string
		var ts int64
		for it, err := range e.ns.All(ctx, pk, store.WithPageSize(7), store.WithConsistency(l)) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(it.CK))
			if i := it.CK; string(it.Value) != "event-"+strings.TrimLeft(string(i), "0") && !(string(i) == "000") {
				t.Errorf("%s = %s", i, it.Value)
			}
			if ts == 0 {
				ts = it.Timestamp
			} else if it.Timestamp != ts {
				t.Errorf("batch row %s has version %d, others %d", it.CK, it.Timestamp, ts)
			}
		}
		if len(got) != 45 || !slices.IsSorted(got) {
			t.Fatalf("%s scan returned %d rows %v, want 45 in order", l, len(got), got)
		}
	}
}

// TestStoreThreeNodeRegion: region q (three nodes, RF 3) keeps accepting
// LocalQuorum writes with one node down and refuses them with two down.
// Nodes are paused (SIGSTOP) and their client connections refused.
func TestStoreThreeNodeRegion(t *testing.T) {
	l := localEnv(t)
	q := region(t, "q")
	if len(q.Hosts) != 3 {
		t.Fatalf("region q has %d hosts, want 3", len(q.Hosts))
	}
	ks := newKeyspace(t, "q")
	// One proxy per node, each on its own loopback address, so that one
	// node's client traffic can be cut alone. (Proxies sharing 127.0.0.1
	// with different ports confuse the driver's token-aware routing, which
	// tells hosts apart by address: see the report on frontRegion.)
	proxies := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	var perNode []*toxiproxy.Proxy
	rc := store.RegionConfig{Name: "q", LocalDC: q.DC, AddressMap: map[string]string{}, ReplicationFactor: 3}
	for i, h := range q.Hosts {
		tp := toxiproxy.NewProxy(proxies, uniqueName(t, fmt.Sprintf("q%d", i)), fmt.Sprintf("127.0.1.%d:0", 41+i), h)
		if err := proxies.Collection.Add(tp, true); err != nil {
			t.Fatalf("proxy for %s: %v", h, err)
		}
		t.Cleanup(func() { _ = proxies.Collection.Remove(tp.Name) })
		perNode = append(perNode, tp)
		rc.ContactPoints = append(rc.ContactPoints, tp.Listen)
		rc.AddressMap[h] = tp.Listen
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Regions: []store.RegionConfig{rc}, Home: "q", Keyspace: ks,
		Timeout: 5 * time.Second, Breaker: store.BreakerConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: the nodes' Resume cleanups, registered later,
	// run before it, so the store never closes against paused nodes.
	t.Cleanup(func() { _ = st.Close() })
	ns, err := st.CreateNamespace(ctx, storeNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Put(ctx, []byte("p"), []byte("healthy"), []byte("v")); err != nil {
		t.Fatalf("write with all nodes up: %v", err)
	}
	nodes := l.Nodes("q")
	down := func(i int) {
		t.Helper()
		perNode[i].Stop() // refuse the node's client connections
		if err := nodes[i].Process.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nodes[i].Process.Resume() })
	}
	down(2)
	// The driver needs a moment to drop the refused node's connections.
	eventually(t, time.Minute, "LocalQuorum write with one node down", func() error {
		return ns.Put(ctx, []byte("p"), []byte("one-down"), []byte("v"))
	})
	for i := range 5 {
		if err := ns.Put(ctx, []byte("p"), fmt.Appendf(nil, "one-down-%d", i), []byte("v")); err != nil {
			t.Fatalf("LocalQuorum write %d with one node down: %v", i, err)
		}
	}
	down(1)
	for i := range 3 {
		err := ns.Put(ctx, []byte("p"), fmt.Appendf(nil, "two-down-%d", i), []byte("v"))
		if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrTimeout) {
			t.Fatalf("LocalQuorum write %d with two nodes down: %v, want ErrUnavailable or ErrTimeout (nodes stopped: %v %v %v)",
				i, err, nodes[0].Stopped(), nodes[1].Stopped(), nodes[2].Stopped())
		}
	}
	// LocalOne needs one replica: still accepted (once the driver has
	// dropped the refused connections).
	eventually(t, time.Minute, "LocalOne write with two nodes down", func() error {
		return ns.Put(ctx, []byte("p"), []byte("two-down-one"), []byte("v"), store.WithConsistency(quorum.LocalOne))
	})
	for _, i := range []int{1, 2} {
		_ = nodes[i].Process.Resume()
	}
}

// TestStoreCreateKeyspace: Open with CreateKeyspace creates the keyspace in
// every region (NetworkTopologyStrategy in the region's data center), and
// CreateNamespace is idempotent when several stores race on it.
func TestStoreCreateKeyspace(t *testing.T) {
	t.Parallel()
	ks := uniqueName(t, "ks")
	for _, n := range []string{"a", "b"} {
		s := adminSession(t, region(t, n))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx)
		})
	}
	var cfg store.Config
	cfg.Home, cfg.Keyspace, cfg.CreateKeyspace = "a", ks, true
	for _, n := range []string{"a", "b"} {
		r := region(t, n)
		cfg.Regions = append(cfg.Regions, store.RegionConfig{Name: n, ContactPoints: r.Hosts, LocalDC: r.DC, ReplicationFactor: len(r.Hosts)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stores []*store.Store
	for range 3 {
		st, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open with CreateKeyspace: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		stores = append(stores, st)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, st := range stores {
		wg.Go(func() { _, errs[i] = st.CreateNamespace(ctx, storeNS, store.WithRetention(48*time.Hour)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent CreateNamespace %d: %v", i, err)
		}
	}
	ns, err := stores[0].Namespace(storeNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Put(ctx, []byte("k"), []byte("c"), []byte("v"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	// The marker TTL comes from the retention recorded with the table.
	if err := ns.Delete(ctx, []byte("k"), []byte("c"), store.WithConsistency(quorum.All)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		row := readRegionRow(t, n, ks, []byte("k"), []byte("c"))
		if !row.deleted || row.ttl > 48*3600+1 || row.ttl < 47*3600 {
			t.Errorf("region %s marker %+v, want TTL of the 48h retention", n, row)
		}
	}
}

// closeStore closes st, waiting for its background work. A driver that is
// slow to close a region's connections (ErrStillClosing alone: all data is
// done) is logged, not failed: it is not what these tests check.
func closeStore(t testing.TB, st *store.Store) error {
	t.Helper()
	err := st.Close()
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if !errors.Is(e, store.ErrStillClosing) {
			return err
		}
	}
	t.Logf("store close: %v", err)
	return nil
}
