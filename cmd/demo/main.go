// Command demo tells Tidemark's story end to end on a real local environment
// (three Cassandra 5.0 regions and a Kafka broker, started here and stopped at
// the end; an environment already running from `make up` is reused and left
// running):
//
//  1. a store over three regions, home region a, hints to Kafka;
//  2. a LocalQuorum write lands in every region;
//  3. region c is cut (a fault proxy black-holes it): LocalQuorum writes still
//     succeed and their share for c becomes hints on Kafka; EachQuorum names c
//     in its error; a read at All fails fast;
//  4. c heals, the hint replayer applies the hints, c catches up;
//  5. divergence injected behind Tidemark's back (a write and a delete only in
//     region b) is found and fixed row by row by anti-entropy repair.
//
// Run it with `make demo`.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/repair"
	"github.com/tidemark/tidemark/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo finished: every step above ran against real Cassandra 5.0 and Kafka.")
}

var step int

func say(format string, a ...any) {
	step++
	fmt.Printf("\n== %d. %s\n", step, fmt.Sprintf(format, a...))
}

func info(format string, a ...any) { fmt.Printf("   %s\n", fmt.Sprintf(format, a...)) }

func run(ctx context.Context) error {
	say("environment: real Cassandra 5.0 regions a, b, c and a Kafka broker on loopback")
	e, err := env.Attach(ctx, "")
	if err == nil {
		info("reusing the environment started by `make up` (left running at the end)")
	} else {
		start := time.Now()
		e, err = env.Start(ctx, env.Options{
			Regions: []env.RegionSpec{{Name: "a", Nodes: 1}, {Name: "b", Nodes: 1}, {Name: "c", Nodes: 1}},
			Logf:    func(f string, a ...any) { info(f, a...) },
		})
		if err != nil {
			return err
		}
		info("started in %s", time.Since(start).Round(100*time.Millisecond))
		defer func() {
			say("stopping the environment")
			c, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.Close(c); err != nil {
				info("stop: %v", err)
			} else {
				info("every server process stopped")
			}
		}()
	}
	for _, r := range e.Regions() {
		if r.Name != "q" {
			info("region %s: %s (data center %s)", r.Name, strings.Join(r.Hosts, ","), r.DC)
		}
	}
	info("kafka: %s", strings.Join(e.KafkaBrokers(), ","))

	// Every region is reached through a fault proxy, so we can cut one.
	proxies := fault.NewServer()
	regions := []string{"a", "b", "c"}
	cuts := map[string]*fault.Proxy{}
	var rcs []store.RegionConfig
	for _, name := range regions {
		r, _ := env.RegionByName(e, name)
		p, err := proxies.Front("demo-"+name, r.Hosts)
		if err != nil {
			return err
		}
		defer p.Close()
		cuts[name] = p
		rcs = append(rcs, store.RegionConfig{Name: name, ContactPoints: p.ContactPoints(), LocalDC: r.DC, AddressMap: p.AddressMap(), ReplicationFactor: len(r.Hosts)})
	}
	ks := fmt.Sprintf("demo_%d", time.Now().Unix())
	prefix := ks + ".hints."
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	producer, err := hints.NewProducer(hints.ProducerConfig{Brokers: e.KafkaBrokers(), TopicPrefix: prefix, Partitions: 2, ReplicationFactor: 1, Logger: logger})
	if err != nil {
		return err
	}
	defer producer.Close()

	say("open a store: regions a (home), b, c; keyspace %s; hints to Kafka topics %s<region>", ks, prefix)
	st, err := store.Open(ctx, store.Config{
		Regions: rcs, Home: "a", Keyspace: ks, CreateKeyspace: true,
		Timeout: 2 * time.Second, Logger: logger,
		Breaker:  store.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: 2 * time.Second},
		HintSink: producer,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.CreateNamespace(ctx, "users")
	if err != nil {
		return err
	}
	info("namespace %q created in every region (one table each)", users.Name())

	direct := map[string]*gocql.Session{}
	for _, name := range regions {
		r, _ := env.RegionByName(e, name)
		s, err := cluster.Connect(ctx, cluster.Region{Name: name, ContactPoints: r.Hosts, LocalDC: r.DC}, ks)
		if err != nil {
			return err
		}
		defer s.Close()
		direct[name] = s
	}
	countIn := func(region string) (live, markers int, err error) {
		it := direct[region].Query(`SELECT deleted FROM users`).Iter()
		var del bool
		for it.Scan(&del) {
			if del {
				markers++
			} else {
				live++
			}
		}
		return live, markers, it.Close()
	}
	showCounts := func() error {
		for _, r := range regions {
			live, markers, err := countIn(r)
			if err != nil {
				return err
			}
			info("region %s holds %d rows and %d deletion markers", r, live, markers)
		}
		return nil
	}

	say("write and read back at LocalQuorum (the default)")
	pk := []byte("user-42")
	if err := users.Put(ctx, pk, []byte("profile"), []byte(`{"name":"Ada","plan":"pro"}`)); err != nil {
		return err
	}
	item, err := users.Get(ctx, pk, []byte("profile"))
	if err != nil {
		return err
	}
	info("Get -> %s (version %d)", item.Value, item.Timestamp)
	time.Sleep(500 * time.Millisecond) // let the asynchronous remote writes land
	if err := showCounts(); err != nil {
		return err
	}

	say("cut region c (black hole: requests to it time out)")
	if err := cuts["c"].Blackhole(); err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < 20; i++ {
		if err := users.Put(ctx, []byte(fmt.Sprintf("user-%d", i)), []byte("profile"), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			return fmt.Errorf("LocalQuorum write with c cut: %w", err)
		}
	}
	if err := users.Delete(ctx, []byte("user-42"), []byte("profile")); err != nil {
		return err
	}
	info("21 LocalQuorum writes (20 puts, 1 delete) succeeded in %s with c cut", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	err = users.Put(ctx, []byte("user-x"), []byte("profile"), []byte("{}"), store.WithConsistency(quorum.EachQuorum))
	info("EachQuorum write after %s -> error: %v", time.Since(start).Round(time.Millisecond), err)
	var ce *store.ConsistencyError
	if !errors.As(err, &ce) {
		return fmt.Errorf("EachQuorum with c cut: want a ConsistencyError, got %v", err)
	}
	info("errors.As(err, *store.ConsistencyError): regions that did not ack %v; errors.Is(err, store.ErrTimeout) = %v", ce.Regions(), errors.Is(err, store.ErrTimeout))
	start = time.Now()
	_, err = users.Get(ctx, pk, []byte("profile"), store.WithConsistency(quorum.All))
	info("read at All after %s -> error: %v", time.Since(start).Round(time.Millisecond), err)
	time.Sleep(time.Second)
	if err := showCounts(); err != nil {
		return err
	}

	say("heal region c and replay its hints from Kafka")
	if err := cuts["c"].Heal(); err != nil {
		return err
	}
	rctx, rcancel := context.WithCancel(ctx)
	replayer, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: e.KafkaBrokers(), TopicPrefix: prefix, Region: "c", GroupID: ks + "-replay-c",
		Applier: hints.NewCQLApplier(direct["c"], ks), Logger: logger,
	})
	if err != nil {
		rcancel()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- replayer.Run(rctx) }()
	start = time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		live, markers, err := countIn("c")
		if err == nil && live == 21 && markers == 1 {
			break
		}
		if time.Now().After(deadline) {
			rcancel()
			return fmt.Errorf("region c did not catch up from hints: %d rows, %d markers (err %v)", live, markers, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rcancel()
	<-done
	_ = replayer.Close()
	info("region c caught up from hints in %s", time.Since(start).Round(time.Millisecond))
	if err := showCounts(); err != nil {
		return err
	}

	say("divergence behind Tidemark's back: a row written only in b, a row deleted only in b")
	ins := schema.Insert(ks, "users")
	now := time.Now().UnixMicro()
	if err := direct["b"].Query(ins, schema.InsertValues([]byte("rogue"), []byte("profile"), schema.RowCells(false, []byte("only-in-b"), 0), now, 0)...).Exec(); err != nil {
		return err
	}
	markerExpires := schema.ExpiryAfter(time.Now(), schema.DefaultRetention)
	ttl, _ := schema.TTLUntil(markerExpires, time.Now())
	if err := direct["b"].Query(ins, schema.InsertValues([]byte("user-7"), []byte("profile"), schema.RowCells(true, nil, markerExpires), now, ttl)...).Exec(); err != nil {
		return err
	}
	if err := showCounts(); err != nil {
		return err
	}

	say("anti-entropy repair of namespace users across a, b, c")
	var rregions []repair.Region
	for _, name := range regions {
		cr, err := repair.NewCQLRegion(direct[name], ks)
		if err != nil {
			return err
		}
		rregions = append(rregions, repair.Region{Name: name, Reader: cr, Writer: cr})
	}
	rep, err := repair.New(rregions, repair.Options{Segments: 8, Logger: logger})
	if err != nil {
		return err
	}
	report, err := rep.Run(ctx, "users")
	if err != nil {
		return err
	}
	info("segments %d, rows scanned %d, rows differing %d, rows written %d, in %s",
		report.Segments, report.RowsScanned, report.RowsDiffering, report.RowsWritten, report.Duration.Round(time.Millisecond))
	for _, rs := range report.Regions {
		info("  region %s: scanned %d, differing %d, written %d, bytes read %d, value fetches %d", rs.Region, rs.RowsScanned, rs.RowsDiffering, rs.RowsWritten, rs.BytesRead, rs.ValueFetches)
	}
	if err := showCounts(); err != nil {
		return err
	}
	// Region c's circuit breaker opened while it was cut; a half-open probe
	// closes it once c answers again.
	start = time.Now()
	for {
		item, err = users.Get(ctx, []byte("user-7"), []byte("profile"), store.WithConsistency(quorum.All))
		if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > 30*time.Second {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	info("region c's circuit breaker closed again after %s (half-open probe succeeded)", time.Since(start).Round(time.Millisecond))
	info("user-7 at All -> err=%v (the delete made only in b won everywhere)", err)
	if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("user-7 should be deleted everywhere, got %v %v", item, err)
	}
	item, err = users.Get(ctx, []byte("rogue"), []byte("profile"), store.WithConsistency(quorum.All))
	if err != nil || !bytes.Equal(item.Value, []byte("only-in-b")) {
		return fmt.Errorf("rogue should be everywhere now: %v %v", item, err)
	}
	info("rogue at All -> %s", item.Value)

	for _, s := range direct {
		_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec()
	}
	return nil
}
