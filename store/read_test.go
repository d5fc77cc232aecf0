package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store/driver"
)

// TestGetLocalReadsHomeOnly: local levels read the home region alone.
func TestGetLocalReadsHomeOnly(t *testing.T) {
	for _, l := range []quorum.Level{quorum.LocalOne, quorum.LocalQuorum} {
		t.Run(l.String(), func(t *testing.T) {
			e := newMockEnv(t)
			e.execs["a"].EXPECT().Read(gomock.Any(), driver.ReadRequest{Keyspace: "ks", Table: "ns", PK: []byte("pk"), CK: []byte("ck"), Consistency: l.RegionConsistency()}).
				Return(driver.Row{CK: []byte("ck"), Value: []byte("v"), Timestamp: 7, TTL: 30, Expires: time.Now().Unix() + 30}, nil)
			it, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithConsistency(l))
			if err != nil {
				t.Fatal(err)
			}
			// The item's TTL is what is left until the absolute expiry.
			if string(it.Value) != "v" || it.Timestamp != 7 || it.TTL < 28*time.Second || it.TTL > 30*time.Second {
				t.Fatalf("got %+v, want value v at 7 with about 30s to live", it)
			}
		})
	}
}

type regionRead struct {
	row   *driver.Row // nil: not found
	err   error       // availability failure
	stale bool        // expect a read repair
}

// TestGetMultiRegion: Quorum/EachQuorum/All read several regions, return the
// newest version, and repair the regions that answered with an older one.
func TestGetMultiRegion(t *testing.T) {
	old := &driver.Row{CK: []byte("ck"), Value: []byte("old"), Timestamp: 100}
	newer := &driver.Row{CK: []byte("ck"), Value: []byte("new"), Timestamp: 200, TTL: 50}
	marker := &driver.Row{CK: []byte("ck"), Deleted: true, Timestamp: 300, TTL: 1000}
	down := fmt.Errorf("%w: injected", ErrUnavailable)
	cases := []struct {
		name    string
		level   quorum.Level
		regions map[string]regionRead
		want    *driver.Row // nil: ErrNotFound
		wantErr error
	}{
		{"quorum newest wins", quorum.Quorum, map[string]regionRead{
			"a": {row: old, stale: true}, "b": {row: newer}, "c": {row: newer}}, newer, nil},
		{"quorum missing row repaired", quorum.Quorum, map[string]regionRead{
			"a": {row: newer}, "b": {row: nil, stale: true}, "c": {row: newer}}, newer, nil},
		{"quorum marker wins", quorum.Quorum, map[string]regionRead{
			"a": {row: newer, stale: true}, "b": {row: marker}, "c": {row: marker}}, nil, ErrNotFound},
		{"quorum one down", quorum.Quorum, map[string]regionRead{
			"a": {row: old, stale: true}, "b": {err: down}, "c": {row: newer}}, newer, nil},
		{"quorum two down", quorum.Quorum, map[string]regionRead{
			"a": {row: newer}, "b": {err: down}, "c": {err: down}}, nil, ErrUnavailable},
		{"each quorum all agree", quorum.EachQuorum, map[string]regionRead{
			"a": {row: newer}, "b": {row: newer}, "c": {row: newer}}, newer, nil},
		{"each quorum one down", quorum.EachQuorum, map[string]regionRead{
			"a": {row: newer}, "b": {row: newer}, "c": {err: down}}, nil, ErrUnavailable},
		{"all not found anywhere", quorum.All, map[string]regionRead{
			"a": {}, "b": {}, "c": {}}, nil, ErrNotFound},
		{"all stale two", quorum.All, map[string]regionRead{
			"a": {row: old, stale: true}, "b": {row: nil, stale: true}, "c": {row: marker}}, nil, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// One clock for the Store and the regions, standing still, so
			// that the TTL a region reports is the one it was written with.
			now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			e := newFaultEnv(t, func(cfg *Config) { cfg.Now = func() time.Time { return now } })
			winner := c.want
			if winner == nil {
				var best *driver.Row
				for _, rr := range c.regions {
					if rr.row != nil && (best == nil || quorum.Compare(versionOf(*rr.row), versionOf(*best)) > 0) {
						best = rr.row
					}
				}
				winner = best
			}
			for name, rr := range c.regions {
				if rr.row != nil {
					err := e.mem[name].Write(context.Background(), driver.WriteRequest{Keyspace: "ks", Table: "ns",
						PK: []byte("pk"), Rows: []driver.Row{*rr.row}})
					if err != nil {
						t.Fatal(err)
					}
				}
				if rr.err != nil {
					e.mem[name].SetFault(driver.Fault{Err: rr.err})
				}
			}
			e.forget()
			it, err := e.ns.Get(context.Background(), []byte("pk"), []byte("ck"), WithConsistency(c.level))
			if closeErr := e.st.Close(); closeErr != nil {
				t.Fatal(closeErr)
			}
			switch {
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Get: %v, want %v", err, c.wantErr)
				}
			case err != nil:
				t.Fatalf("Get: %v", err)
			case it.Timestamp != c.want.Timestamp || !bytes.Equal(it.Value, c.want.Value):
				t.Fatalf("Get = %+v, want %+v", it, c.want)
			}
			for name, rr := range c.regions {
				if n := e.mem[name].Calls(driver.OpRead); n != 1 {
					t.Errorf("region %s was read %d times, want once", name, n)
				}
				ws := e.writes(name)
				if !rr.stale || c.wantErr == ErrUnavailable {
					if len(ws) != 0 {
						t.Errorf("region %s got %d writes, want no read repair: %+v", name, len(ws), ws)
					}
					continue
				}
				if len(ws) != 1 {
					t.Errorf("stale region %s got %d repair writes, want 1", name, len(ws))
					continue
				}
				r, w := ws[0].Rows[0], *winner
				if r.Timestamp != w.Timestamp || r.Deleted != w.Deleted || !bytes.Equal(r.Value, w.Value) {
					t.Errorf("repair of %s wrote %+v, want the winner %+v", name, r, w)
				}
				if w.TTL > 0 && (r.TTL < w.TTL-1 || r.TTL > w.TTL) {
					t.Errorf("repair of %s TTL %d, want the remaining %d", name, r.TTL, w.TTL)
				}
			}
		})
	}
}

// TestScanPaging: pages by count and by bytes, markers hidden, tokens
// resume exactly after the last item, across several regions that hold
// different versions.
func TestScanPaging(t *testing.T) {
	ctx := context.Background()
	e := newMemEnv(t, func(c *Config) { c.Breaker.Disabled = true })
	st, ns, mem := e.st, e.ns, e.mem
	pk := []byte("p")
	// Model: key -> live value.
	model := map[string]string{}
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		if err := ns.Put(ctx, pk, []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
		model[k] = "v" + k
	}
	for i := 0; i < 40; i += 3 {
		k := fmt.Sprintf("k%02d", i)
		if err := ns.Delete(ctx, pk, []byte(k)); err != nil {
			t.Fatal(err)
		}
		delete(model, k)
	}
	// Region c misses some newer writes (simulates lag): write them to a
	// and b only, with newer versions.
	mem["c"].SetFault(driver.Outage())
	for i := 1; i < 40; i += 5 {
		k := fmt.Sprintf("k%02d", i)
		if err := ns.Put(ctx, pk, []byte(k), []byte("w"+k), WithConsistency(quorum.Quorum)); err != nil {
			t.Fatal(err)
		}
		model[k] = "w" + k
	}
	st.bg.Wait()
	mem["c"].SetFault(driver.Fault{})

	var keys []string
	for k := range model {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	for _, l := range []quorum.Level{quorum.LocalQuorum, quorum.Quorum, quorum.All} {
		for _, size := range []int{1, 3, 7, 100} {
			t.Run(fmt.Sprintf("%s/size%d", l, size), func(t *testing.T) {
				var got []string
				token := ""
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatal("too many pages")
					}
					p, err := ns.Scan(ctx, pk, WithConsistency(l), WithPageSize(size), WithPageToken(token))
					if err != nil {
						t.Fatal(err)
					}
					if len(p.Items) > size {
						t.Fatalf("page of %d items, size %d", len(p.Items), size)
					}
					if len(p.Items) == 0 && p.Next != "" {
						t.Fatal("empty page that is not the last")
					}
					for _, it := range p.Items {
						if model[string(it.CK)] != string(it.Value) {
							t.Fatalf("item %s = %q, want %q", it.CK, it.Value, model[string(it.CK)])
						}
						got = append(got, string(it.CK))
					}
					if p.Next == "" {
						break
					}
					token = p.Next
				}
				if !slices.Equal(got, keys) {
					t.Fatalf("scan returned %v\nwant %v", got, keys)
				}
			})
		}
	}
	t.Run("bytes", func(t *testing.T) {
		p, err := ns.Scan(ctx, pk, WithPageBytes(10))
		if err != nil {
			t.Fatal(err)
		}
		// Each item is 3+4 bytes: the second one reaches 10.
		if len(p.Items) != 2 || p.Next == "" {
			t.Fatalf("page of %d items (next %q), want 2 and more", len(p.Items), p.Next)
		}
	})
	t.Run("all iterator", func(t *testing.T) {
		var got []string
		for it, err := range ns.All(ctx, pk, WithPageSize(4)) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(it.CK))
		}
		if !slices.Equal(got, keys) {
			t.Fatalf("All returned %v, want %v", got, keys)
		}
	})
}

// TestMetamorphicAgainstModel runs random Put/Delete/Get at random levels
// over memory regions that randomly go down, and checks every successful
// read at All against a last-write-wins model of acknowledged writes.
func TestMetamorphicAgainstModel(t *testing.T) {
	ctx := context.Background()
	e := newFaultEnv(t, nil)
	st, ns, mem, sink := e.st, e.ns, e.mem, e.sink
	rng := rand.New(rand.NewPCG(1, 2))
	type ver struct {
		value   string
		deleted bool
	}
	model := map[string]ver{} // latest acknowledged version per key
	levels := []quorum.Level{quorum.LocalOne, quorum.LocalQuorum, quorum.Quorum, quorum.EachQuorum, quorum.All, quorum.Any}
	for step := range 400 {
		for _, n := range regionNamesABC {
			f := driver.Fault{}
			if rng.IntN(6) == 0 {
				f = driver.Outage()
			}
			mem[n].SetFault(f)
		}
		k := fmt.Sprintf("k%d", rng.IntN(8))
		l := levels[rng.IntN(len(levels))]
		// Every write that fails somewhere is hinted (the sink never
		// fails), so every write lands everywhere eventually, failed calls
		// included: the model is simply the last write issued per key.
		switch rng.IntN(3) {
		case 0, 1:
			v := fmt.Sprintf("v%d", step)
			_ = ns.Put(ctx, []byte("p"), []byte(k), []byte(v), WithConsistency(l))
			model[k] = ver{value: v}
		case 2:
			_ = ns.Delete(ctx, []byte("p"), []byte(k), WithConsistency(l))
			model[k] = ver{deleted: true}
		}
		if step%50 == 0 { // reads in between must never fail on the model's keys at LocalOne when home is up
			if _, err := ns.Get(ctx, []byte("p"), []byte(k), WithConsistency(quorum.LocalOne)); err != nil &&
				!errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("step %d: Get: %v", step, err)
			}
		}
	}
	// Heal everything, replay hints (as repaird would), then every region
	// must agree with the model at All.
	st.bg.Wait()
	for _, n := range regionNamesABC {
		mem[n].SetFault(driver.Fault{})
	}
	sink.replay(t, mem)
	for k, want := range model {
		it, err := ns.Get(ctx, []byte("p"), []byte(k), WithConsistency(quorum.All))
		switch {
		case want.deleted:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("key %s: %v %q, want deleted", k, err, it.Value)
			}
		case err != nil:
			t.Errorf("key %s: %v, want %q", k, err, want.value)
		case string(it.Value) != want.value:
			t.Errorf("key %s = %q, want %q", k, it.Value, want.value)
		}
	}
}

// A Get that waits on one region (LocalOne, LocalQuorum in a one-node
// home) and meets the caller's deadline fails as every other call does:
// its ConsistencyError unwraps to the context's error and to ErrTimeout,
// and says the context ended. Before, the single-region path built the
// error without the context's, so errors.Is(err, ErrTimeout) was false
// where a Put's was true (found by review).
func TestGetCallerDeadlineIsErrTimeout(t *testing.T) {
	for _, l := range []quorum.Level{quorum.LocalOne, quorum.LocalQuorum} {
		t.Run(l.String(), func(t *testing.T) {
			e := newMemEnv(t, nil)
			e.mem["a"].SetFault(driver.Fault{Delay: 300 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			_, err := e.ns.Get(ctx, []byte("pk"), []byte("ck"), WithConsistency(l))
			var ce *ConsistencyError
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ce) {
				t.Fatalf("Get past the caller's deadline: %v; want a ConsistencyError matching ErrTimeout and context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), "context") {
				t.Errorf("error %q does not say the context ended", err)
			}
		})
	}
}

// A multi-region Get's Item is the caller's own: reusing its buffer
// (decoding in place, zeroing it) must not change what read repair writes
// to the stale regions under the winner's timestamp (the Item shared the
// read repair's slices: regions then disagreed for good, a different value
// at one version).
func TestGetValueIsNotTheReadRepairs(t *testing.T) {
	e := newFaultEnv(t, nil)
	ctx := context.Background()
	pk, ck := []byte("pk"), []byte("ck")
	ts := e.st.clock.Now()
	write := func(region, value string, ts int64) {
		t.Helper()
		if err := e.mem[region].Write(ctx, driver.WriteRequest{Keyspace: "ks", Table: "ns", PK: pk,
			Rows: []driver.Row{{CK: ck, Value: []byte(value), Timestamp: ts}}}); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "original", ts)
	write("b", "old", ts-1000)
	write("c", "old", ts-1000)
	// c answers late, so the repairs are written after Get has returned.
	e.mem["c"].SetFault(driver.Fault{Delay: 100 * time.Millisecond, Ops: []string{driver.OpRead}})

	it, err := e.ns.Get(ctx, pk, ck, WithConsistency(quorum.Quorum))
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Value) != "original" {
		t.Fatalf("Get = %q", it.Value)
	}
	// The caller owns what it was returned and reuses the buffer.
	copy(it.Value, "CORRUPT!")

	for _, r := range []string{"b", "c"} {
		waitFor(t, "read repair of "+r, func() bool {
			row, ok := e.mem[r].Lookup("ks", "ns", pk, ck)
			return ok && row.Timestamp == ts
		})
	}
	for _, r := range []string{"a", "b", "c"} {
		row, _ := e.mem[r].Lookup("ks", "ns", pk, ck)
		if !bytes.Equal(row.Value, []byte("original")) {
			t.Errorf("region %s holds %q at the winner's timestamp %d, but the version read (and still in region a) is %q: "+
				"the caller's change to its Item.Value was replicated (Get returned the read repair's own slice)",
				r, row.Value, ts, "original")
		}
	}
}
