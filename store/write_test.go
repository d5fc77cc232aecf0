package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

type levelCase struct {
	line    int
	level   quorum.Level
	failed  []string
	sinkOK  bool
	wantOK  bool
	named   []string
	rawLine string
}

func parseList(s string) []string {
	if s == "-" {
		return nil
	}
	return strings.Split(s, ",")
}

func readLevelCases(t *testing.T, path string) []levelCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []levelCase
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 6 || fs[3] != "=>" {
			t.Fatalf("%s:%d: want 'level failed sink => result named', got %q", path, n, line)
		}
		l, err := quorum.ParseLevel(fs[0])
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		cases = append(cases, levelCase{line: n, level: l, failed: parseList(fs[1]), sinkOK: fs[2] == "ok",
			wantOK: fs[4] == "ok", named: parseList(fs[5]), rawLine: line})
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", path)
	}
	return cases
}

// TestWriteLevels runs every level with 0, 1 and 2 of 3 regions failing
// (testdata/write_levels.txt) and checks the call's result, the regions the
// error names, that every region got exactly one write with one timestamp,
// and that exactly the failed regions got one hint each.
func TestWriteLevels(t *testing.T) {
	for _, c := range readLevelCases(t, "testdata/write_levels.txt") {
		t.Run(fmt.Sprintf("line%d_%s", c.line, strings.Join(strings.Fields(c.rawLine), "_")), func(t *testing.T) {
			e := newFaultEnv(t, nil)
			if !c.sinkOK {
				e.sink.err = errors.New("kafka down")
			}
			var wantHints []hintSpec
			for _, r := range c.failed {
				e.mem[r].SetFault(driver.Fault{Err: fmt.Errorf("%w: injected", ErrUnavailable)})
				wantHints = append(wantHints, hintOf(r, "pk", "ck", "v"))
			}
			err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithConsistency(c.level))
			if closeErr := e.st.Close(); closeErr != nil {
				t.Fatalf("Close: %v", closeErr)
			}
			if c.wantOK {
				if err != nil {
					t.Fatalf("Put: %v, want success", err)
				}
			} else {
				var ce *ConsistencyError
				if !errors.As(err, &ce) {
					t.Fatalf("Put: %v, want a *ConsistencyError", err)
				}
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("errors.Is(err, ErrUnavailable) = false for %v", err)
				}
				if ce.Level != c.level || ce.Op != "put" {
					t.Errorf("error says %s at %s, want put at %s", ce.Op, ce.Level, c.level)
				}
				named := ce.Regions()
				if len(named) == 0 {
					t.Fatalf("error names no region: %v", err)
				}
				seen := map[string]bool{}
				for _, re := range ce.Failed {
					if seen[re.Region] {
						t.Errorf("error names region %s twice: %v", re.Region, err)
					}
					seen[re.Region] = true
					if re.Pending {
						// Not answered when the call was decided (it may
						// still ack or fail in the background).
						if re.Hinted {
							t.Errorf("pending region %s reported as hinted: %v", re.Region, err)
						}
						continue
					}
					if !slices.Contains(c.named, re.Region) {
						t.Errorf("error names region %s, want only %v: %v", re.Region, c.named, err)
					}
					if re.Hinted != c.sinkOK {
						t.Errorf("region %s Hinted = %v, want %v", re.Region, re.Hinted, c.sinkOK)
					}
					if !strings.Contains(err.Error(), fmt.Sprintf("region %q", re.Region)) {
						t.Errorf("message %q does not name region %s", err, re.Region)
					}
				}
			}
			for _, r := range regionNamesABC {
				e.checkWrites(t, r, writeOf("pk", "ck", "v", c.level.RegionConsistency()))
			}
			checkHints(t, e.hints(), wantHints...)
			if ts := e.timestamps(); len(ts) != 1 {
				t.Errorf("saw %d distinct timestamps %v in writes and hints, want 1", len(ts), ts)
			}
		})
	}
}

// TestLocalWriteDoesNotWaitForRemote checks that a LocalQuorum Put returns
// while a remote region's write is still blocked, and that the remote write
// completes in the background (Close waits for it).
func TestLocalWriteDoesNotWaitForRemote(t *testing.T) {
	e := newFaultEnv(t, nil)
	release := make(chan struct{})
	e.mem["b"].SetFault(driver.Fault{Gate: release})
	done := make(chan error, 1)
	go func() { done <- e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v")) }()
	waitHeld(t, e.mem["b"], 1) // b's write is in flight
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Put did not return while the remote region's write was blocked")
	}
	if e.mem["b"].Held() != 1 {
		t.Fatal("the remote region's write was no longer blocked when Put returned")
	}
	closed := make(chan error, 1)
	go func() { closed <- e.st.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned before the background write finished")
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, writeOf("pk", "ck", "v", "LOCAL_QUORUM"))
	}
	if _, ok := e.mem["b"].Lookup("ks", "ns", []byte("pk"), []byte("ck")); !ok {
		t.Error("the background write was not applied in b")
	}
}

// TestQuorumReturnsBeforeSlowest checks that a Quorum write returns once two
// regions ack while the third is blocked, and that the third's later failure
// becomes a hint.
func TestQuorumReturnsBeforeSlowest(t *testing.T) {
	e := newFaultEnv(t, nil)
	release := make(chan struct{})
	e.mem["c"].SetFault(driver.Fault{Gate: release, Err: fmt.Errorf("%w: late failure", ErrUnavailable)})
	if err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithConsistency(quorum.Quorum)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if hs := e.hints(); len(hs) != 0 {
		t.Errorf("Put returned only after the slowest region had answered (and been hinted: %+v)", hs)
	}
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, writeOf("pk", "ck", "v", "LOCAL_QUORUM"))
	}
	checkHints(t, e.hints(), hintOf("c", "pk", "ck", "v"))
}

// TestCanceledWhileWaiting checks that a call whose context ends while a
// synchronous region is blocked returns the context's error, and that the
// region's failure still becomes a hint afterwards.
func TestCanceledWhileWaiting(t *testing.T) {
	e := newFaultEnv(t, nil)
	release := make(chan struct{})
	a := e.mem["a"]
	a.SetFault(driver.Fault{Gate: release, Err: fmt.Errorf("%w: after cancel", ErrTimeout)})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for a.Held() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := e.ns.Put(ctx, []byte("pk"), []byte("ck"), []byte("v"), WithConsistency(quorum.EachQuorum))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put: %v, want context.Canceled", err)
	}
	var ce *ConsistencyError
	if !errors.As(err, &ce) || !slices.Contains(ce.Regions(), "a") {
		t.Fatalf("Put: %v, want a ConsistencyError naming the pending region a", err)
	}
	close(release)
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, writeOf("pk", "ck", "v", "LOCAL_QUORUM"))
	}
	checkHints(t, e.hints(), hintOf("a", "pk", "ck", "v"))
}

// TestDeleteWritesMarker checks that Delete writes a deletion marker with a
// TTL of the namespace's retention to every region, and hints it.
func TestDeleteWritesMarker(t *testing.T) {
	e := newFaultEnv(t, nil)
	e.mem["c"].SetFault(driver.Fault{Err: ErrUnavailable, Ops: []string{driver.OpWrite}})
	if err := e.ns.Delete(context.Background(), []byte("pk"), []byte("ck")); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, deleteOf("pk", "ck", "LOCAL_QUORUM"))
	}
	checkTTLs(t, e.markerTTLs(), 3, DefaultRetentionForTests)
	checkHints(t, e.hints(), hintSpec{target: "c", pk: "pk", ck: "ck", deleted: true, expires: true})
	if ts := e.timestamps(); len(ts) != 1 {
		t.Errorf("distinct timestamps %v, want 1", ts)
	}
}

// TestDeleteReadsRetention checks that a namespace without WithRetention
// reads its retention from the table once, and uses it for the marker TTL.
func TestDeleteReadsRetention(t *testing.T) {
	e := newFaultEnv(t, nil)
	e.existingTable(t, "other", 2*time.Hour)
	ns, err := e.st.Namespace("other")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ns.Delete(context.Background(), []byte("pk"), []byte("ck")); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.asked(driver.OpTableRetention); !slices.Equal(got, []string{"a"}) {
		t.Errorf("retention asked of %v, want [a] once", got)
	}
	for _, r := range regionNamesABC {
		if n := len(e.writes(r)); n != 2 {
			t.Errorf("region %s received %d writes, want 2", r, n)
		}
	}
	checkTTLs(t, e.markerTTLs(), 6, 2*time.Hour)
}

// TestTTLCarriedEverywhere checks that a TTL write sends the same TTL to
// every region and an absolute expiry in the hint.
func TestTTLCarriedEverywhere(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := newFaultEnv(t, func(c *Config) { c.Now = func() time.Time { return now } })
	e.mem["c"].SetFault(driver.Fault{Err: ErrUnavailable, Ops: []string{driver.OpWrite}})
	if err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithTTL(89500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		e.checkWrites(t, r, writeOf("pk", "ck", "v", ""))
	}
	for _, r := range []string{"a", "b"} {
		if ws := e.writes(r); len(ws) == 1 && ws[0].Rows[0].TTL != 90 {
			t.Errorf("region %s TTL %d, want 90", r, ws[0].Rows[0].TTL)
		}
	}
	hs := e.hints()
	if len(hs) != 1 {
		t.Fatalf("%d hints, want 1 for c", len(hs))
	}
	if want := now.Add(90 * time.Second); !hs[0].ExpiresAt.Equal(want) {
		t.Errorf("hint ExpiresAt %v, want %v", hs[0].ExpiresAt, want)
	}
}

// TestPutBatch checks that a batch is one write per region with one
// timestamp for all rows, and one hint per row for a failed region.
func TestPutBatch(t *testing.T) {
	e := newFaultEnv(t, nil)
	e.mem["b"].SetFault(driver.Fault{Err: ErrUnavailable, Ops: []string{driver.OpWrite}})
	err := e.ns.PutBatch(context.Background(), []byte("pk"), []Entry{
		{CK: []byte("1"), Value: []byte("x")}, {CK: []byte("2"), Value: []byte("y")}, {CK: []byte("3"), Delete: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range regionNamesABC {
		ws := e.writes(r)
		if len(ws) != 1 {
			t.Errorf("region %s received %d writes, want 1", r, len(ws))
			continue
		}
		if w := ws[0]; len(w.Rows) != 3 {
			t.Errorf("region %s got %d rows, want 3", r, len(w.Rows))
		} else if !w.Rows[2].Deleted || w.Rows[2].Value != nil {
			t.Errorf("third row %+v is not a deletion", w.Rows[2])
		}
	}
	checkHints(t, e.hints(), hintOf("b", "pk", "1", "x"), hintOf("b", "pk", "2", "y"),
		hintSpec{target: "b", pk: "pk", ck: "3", deleted: true, expires: true})
	if ts := e.timestamps(); len(ts) != 1 {
		t.Errorf("distinct timestamps %v, want 1 for the whole batch", ts)
	}
}

// The longest TTL WithTTL accepts reaches the regions within Cassandra's
// maximum, at any fraction of a second: the expiry is rounded up to a
// whole second and the region's TTL up again. Before, WithTTL(20 years)
// passed validation and became TTL 630720001 whenever the clock was not on
// a whole second, which Cassandra refuses (and a refusal is not hinted):
// found by review.
func TestMaxTTLWithinCassandra(t *testing.T) {
	for _, frac := range []time.Duration{0, time.Nanosecond, 500 * time.Millisecond, time.Second - time.Nanosecond} {
		now := time.Unix(1_800_000_000, 0).Add(frac)
		e := newFaultEnv(t, func(c *Config) { c.Now = func() time.Time { return now } })
		if err := e.ns.Put(context.Background(), []byte("pk"), []byte("ck"), []byte("v"), WithTTL(maxTTL)); err != nil {
			t.Fatalf("Put with WithTTL(%v) at +%v: %v", maxTTL, frac, err)
		}
		n := 0
		for _, w := range e.writes("a") {
			for _, r := range w.Rows {
				n++
				if r.TTL > int(cassandraMaxTTL/time.Second) || r.TTL < int(maxTTL/time.Second) {
					t.Errorf("at +%v: TTL %d s, want %d..%d", frac, r.TTL, int(maxTTL/time.Second), int(cassandraMaxTTL/time.Second))
				}
			}
		}
		if n == 0 {
			t.Fatalf("at +%v: no row written to region a", frac)
		}
	}
}

// TestLongestRetentionMarkersWithinCassandra: a namespace may keep its
// deletion markers as long as WithRetention allows, and every marker a
// Delete sends then has a TTL Cassandra takes (at most 20 years: rounding
// the expiry up must not push it over).
func TestLongestRetentionMarkersWithinCassandra(t *testing.T) {
	e := newFaultEnv(t, nil)
	ctx := context.Background()
	ns, err := e.st.CreateNamespace(ctx, "longlived", WithRetention(maxTTL))
	if err != nil {
		t.Fatalf("CreateNamespace with WithRetention(%v): %v", maxTTL, err)
	}
	e.forget()
	if err := ns.Delete(ctx, []byte("pk"), []byte("ck")); err != nil {
		t.Fatal(err)
	}
	markers := 0
	for _, r := range regionNamesABC {
		for _, w := range e.writes(r) {
			for _, row := range w.Rows {
				if !row.Deleted {
					continue
				}
				markers++
				if row.TTL > int(cassandraMaxTTL/time.Second) || row.TTL < int(maxTTL/time.Second) {
					t.Errorf("region %s got a deletion marker with TTL %d s, want %d..%d (Cassandra refuses more)",
						r, row.TTL, int(maxTTL/time.Second), int(cassandraMaxTTL/time.Second))
				}
			}
		}
	}
	if markers == 0 {
		t.Fatal("the Delete sent no deletion marker")
	}
}
