package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/syncbuf"
	"github.com/tidemark/tidemark/store"
)

// TestWatermarkWaitsForAClosedStoresHints: a store that closed cleanly
// has every write settled — applied, or durable as a hint — not applied
// everywhere. Here c's share of its writes is in c's hint topic and no
// replayer applies it; the store closes and its registration goes (as it
// does 10 minutes after a Close: deleted here). c's watermark must still
// wait for the store's closing heartbeat to be applied in c (it jumped
// past the hints: the closed session was skipped once the registration
// was gone). Then a replayer for c applies them, the closing heartbeat's
// marks are kept as long as the session, and c's watermark passes the
// close with c holding every write.
func TestWatermarkWaitsForAClosedStoresHints(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, hintsNS, "a", "b", "c")
	prefix := newTopicPrefix(t)
	// Hints and heartbeats get 30 s, so that under a loaded run none is
	// left uncertain (repair debt, which this daemon would not drain) and
	// the closing heartbeat is sent (else the store is not closed, but
	// taken for one that stopped without closing).
	prod := hintsProducerWith(t, prefix, func(c *hints.ProducerConfig) { c.ProduceTimeout = 30 * time.Second })
	for _, r := range []string{"a", "b", "c"} {
		if err := prod.EnsureTopic(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	group := strings.TrimSuffix(prefix, ".") + "-closed"
	daemonYAML := func(home, replay string) string {
		return fmt.Sprintf("home: %s\nkeyspace: %s\n%shints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [%s]\nwatermark:\n  interval: 200ms\n  clock_skew: 100ms\nhttp:\n  listen: 127.0.0.1:0\n",
			home, ks, regionsYAML(t, "a", "b", "c"), testEnv(t).KafkaBrokers()[0], prefix, group, replay)
	}
	// The daemon computes every region's watermark but replays only a's
	// and b's hints: c's wait in its topic.
	d := serveDaemon(t, daemonYAML("a", "a, b"))
	wm := func() time.Time {
		for _, v := range d.Status().Watermarks {
			if v.Region == "c" {
				return v.ConvergedBefore
			}
		}
		return time.Time{}
	}

	// The store reaches c through a proxy that refuses: c's shares of its
	// writes become hints.
	pc := frontRegion(t, "c")
	if err := pc.Refuse(); err != nil {
		t.Fatal(err)
	}
	var storeLog syncbuf.Buffer
	st, err := outageStore(t, ctx, ks, map[string]*fault.Proxy{"c": pc}, prod, func(c *store.Config) {
		c.Watermark.Interval = 200 * time.Millisecond
		c.HintTimeout = 30 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(&storeLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if err != nil {
		t.Fatal(err)
	}
	id := st.ProducerID()
	ns, err := st.Namespace(hintsNS)
	if err != nil {
		t.Fatal(err)
	}
	var log writeLog
	for i := range 50 {
		var v int64
		pk, ck := fmt.Sprintf("p%d", i%10), fmt.Sprintf("c%d", i)
		if err := ns.Put(ctx, []byte(pk), []byte(ck), []byte("v"), store.WithVersionReport(&v)); err != nil {
			t.Fatal(err)
		}
		log.add(pk+"/"+ck, v)
	}
	if n := gauge(t, st.Metrics(), "tidemark_store_hinted_writes_total", "region", "c"); n < 1 {
		t.Fatalf("c's shares were not hinted (hinted_writes_total{region=c} = %v): the test has not made the gap it is about", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	for _, m := range []string{"tidemark_store_hints_failed_total", "tidemark_store_hints_uncertain_total"} {
		if n := gauge(t, st.Metrics(), m); n != 0 {
			t.Fatalf("%s = %v: writes were left to repair debt, which this daemon does not drain", m, n)
		}
	}
	sa := directSession(t, "a", ks)
	var session []byte
	if err := sa.Query(fmt.Sprintf("SELECT value FROM %s.%s WHERE pk = ? AND ck = ?", ks, schema.ProducersTable),
		schema.SessionsPartition, []byte(id)).ScanContext(ctx, &session); err != nil {
		t.Fatalf("the store's session in a: %v", err)
	}
	if s, err := schema.DecodeSession(session); err != nil || !s.Closed {
		t.Fatalf("the store's session in a after Close: %+v %v, want closed; the store's warnings:\n%s", s, err, storeLog.String())
	}

	sc := directSession(t, "c", ks)
	checks := 0
	check := func() time.Time {
		t.Helper()
		w := wm()
		if v := watermarkViolations(log.snapshot(), w.UnixMicro(), readTable(t, sc, ks)); len(v) > 0 {
			t.Fatalf("c's watermark %s promises writes of the closed store that c does not hold (%d), first: %s; daemon: %+v",
				w.Format(time.RFC3339Nano), len(v), v[0], d.Status().Watermarks)
		}
		checks++
		return w
	}
	if missing := watermarkViolations(log.snapshot(), closed.UnixMicro(), readTable(t, sc, ks)); len(missing) == 0 {
		t.Fatal("c holds the closed store's writes already: the test has not made the gap it is about")
	}
	// The registration goes, as it would 10 minutes after the Close (c
	// never had it: the store never reached c).
	for _, r := range []string{"a", "b"} {
		s := directSession(t, r, ks)
		if err := s.Query(fmt.Sprintf("DELETE FROM %s.%s WHERE pk = ? AND ck = ?", ks, schema.ProducersTable),
			schema.ProducersPartition, []byte(id)).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	gone := time.Now()
	// Passes computed after the registration went: c's watermark holds.
	eventually(t, time.Minute, "the daemon computes c's watermark after the registration went", func() error {
		for _, v := range d.Status().Watermarks {
			if v.Region == "c" && v.ComputedAt.After(gone.Add(2*time.Second)) {
				return nil
			}
		}
		return fmt.Errorf("watermarks %+v", d.Status().Watermarks)
	})
	check()

	// A replayer for c: the hints are applied, then the closing heartbeat,
	// and c's watermark passes the close.
	serveDaemon(t, daemonYAML("b", "c"))
	eventually(t, 2*time.Minute, "c's watermark passes the close, c holding every write", func() error {
		if w := check(); !w.After(closed) {
			return fmt.Errorf("c's watermark %s, closed at %s; daemon: %+v", w.Format(time.RFC3339Nano), closed.Format(time.RFC3339Nano), d.Status().Watermarks)
		}
		return nil
	})
	// The closing heartbeat's marks outlive the session they retire.
	var ttl int
	if err := sc.Query(fmt.Sprintf("SELECT ttl(value) FROM %s.%s WHERE pk = ? AND ck = ?", ks, schema.MarksTable),
		schema.MarksPartition("c"), schema.EncodeMarkKey(id, 0)).ScanContext(ctx, &ttl); err != nil {
		t.Fatalf("the closing mark of partition 0 in c: %v", err)
	}
	if min := schema.TTLSeconds(schema.SessionTTL) - 600; ttl < min {
		t.Errorf("the closing mark lives %ds, want about the session's %ds", ttl, schema.TTLSeconds(schema.SessionTTL))
	}
	t.Logf("c's watermark held through the registration's removal and passed the close once c's hints were replayed; %d soundness checks", checks)
}
