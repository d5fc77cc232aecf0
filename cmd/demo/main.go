// Command demo tells Tidemark's story end to end on a real local environment
// (three Cassandra 5.0 regions and a Kafka broker, started here and stopped at
// the end; an environment already running from `make up` is reused and left
// running), with `repaird serve` running beside the store:
//
//  1. a store over three regions, home region a, hints to Kafka; repaird
//     serve (built here) replays every region's hints and serves its API;
//  2. a LocalQuorum write lands in every region;
//  3. region c is cut (a fault proxy black-holes it, for the store and for
//     repaird): LocalQuorum writes still succeed and their share for c
//     piles up as hints on Kafka, shown live by `repaird hints`; EachQuorum
//     names c in its error; a read at All fails fast;
//  4. c heals and the daemon replays the hints (`repaird hints` again);
//  5. divergence injected behind Tidemark's back (a write and a delete only
//     in region b); a repair started through the API (`repaird start`),
//     watched with `repaird runs`, fixes it row by row;
//  6. a table shows every region identical; repaird is stopped.
//
// Run it with `make demo`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/quorum"
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

	say("start repaird serve: hint replay for a, b, c; scheduled repair of users; the control API")
	rd, err := startRepaird(ctx, e, ks, prefix, cuts)
	if err != nil {
		return err
	}
	defer rd.stop()
	info("repaird serve (pid %d) at %s; logs in %s", rd.cmd.Process.Pid, rd.url, rd.logPath)
	showHints := func() {
		out, err := rd.cli("hints")
		if err != nil {
			info("repaird hints: %v", err)
		}
		show(out)
	}
	showHints()

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
	say("keep writing with c cut: the hints for c pile up (repaird hints, live)")
	start = time.Now()
	for i := 0; i < burst; i++ {
		if err := users.Put(ctx, []byte(fmt.Sprintf("burst-%03d", i)), []byte("profile"), []byte(fmt.Sprintf(`{"burst":%d}`, i))); err != nil {
			return fmt.Errorf("LocalQuorum write with c cut: %w", err)
		}
		if i%100 == 99 {
			info("%d writes; the store has stored %.0f hints for c in Kafka; repaird replays none while c is cut:", i+1, hintedFor(st, "c"))
			showHints()
		}
		time.Sleep(20 * time.Millisecond) // a steady stream, so that the lag is seen growing
	}
	time.Sleep(3 * time.Second) // repaird measures the lag every 2 s
	info("after the burst:")
	showHints()
	info("%d more LocalQuorum writes with c cut in %s", burst, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	if err := showCounts(); err != nil {
		return err
	}

	say("heal region c: repaird replays its hints from Kafka")
	if err := cuts["c"].Heal(); err != nil {
		return err
	}
	start = time.Now()
	deadline := time.Now().Add(90 * time.Second)
	for {
		live, markers, err := countIn("c")
		if err == nil && live == 21+burst && markers == 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("region c did not catch up from hints: %d rows, %d markers (err %v)", live, markers, err)
		}
		showHints()
		time.Sleep(time.Second)
	}
	info("region c caught up from hints in %s", time.Since(start).Round(time.Millisecond))
	showHints()
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

	say("start a repair through the API (repaird start) and watch it (repaird runs)")
	out, err := rd.cli("start", "--namespace", "users")
	switch {
	case err != nil && strings.Contains(out, "409 Conflict"):
		// The schedule's own run (retrying one that overlapped the cut)
		// is under way: it repairs the same rows.
		info("a scheduled run is already under way; watching it")
	case err != nil:
		return fmt.Errorf("repaird start: %w\n%s", err, out)
	}
	show(out)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		out, err := rd.cli("runs", "--namespace", "users", "--limit", "1", "-o", "json")
		if err != nil {
			return fmt.Errorf("repaird runs: %w\n%s", err, out)
		}
		var runs daemon.RunsResponse
		if err := json.Unmarshal([]byte(out), &runs); err != nil {
			return err
		}
		table, _ := rd.cli("runs", "--namespace", "users", "--limit", "1")
		show(table)
		if len(runs.Runs) > 0 && runs.Runs[0].State == "finished" && runs.Runs[0].RowsWritten > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the repair did not finish within 2 minutes")
		}
		time.Sleep(time.Second)
	}
	say("every region identical")
	if err := identical(ctx, direct, regions); err != nil {
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

	rd.stop()
	_ = os.RemoveAll(rd.dir) // kept when the demo fails: the log is there
	info("repaird stopped")
	for _, s := range direct {
		_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec()
	}
	return nil
}

// hintedFor is the store's count of hints stored for region
// (tidemark_store_hinted_writes_total).
func hintedFor(st *store.Store, region string) float64 {
	reg := prometheus.NewRegistry()
	if err := reg.Register(st.Metrics()); err != nil {
		return 0
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tidemark_store_hinted_writes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "region" && l.GetValue() == region {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// burst is how many rows are written while region c is cut, after the
// first 21.
const burst = 300

// show prints a command's output, indented.
func show(out string) {
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Printf("     %s\n", l)
	}
}

// repairdProc is `repaird serve`, started by the demo.
type repairdProc struct {
	dir, bin, cfg, token, url, logPath string
	cmd                                *exec.Cmd
	done                               chan error
	stopped                            bool
}

// startRepaird builds repaird, writes its configuration (every region
// through the demo's fault proxies, so that cutting c cuts it for the
// daemon too) and starts `repaird serve`, waiting until it answers.
func startRepaird(ctx context.Context, e env.Env, ks, prefix string, cuts map[string]*fault.Proxy) (*repairdProc, error) {
	dir, err := os.MkdirTemp("", "tidemark-demo-")
	if err != nil {
		return nil, err
	}
	rd := &repairdProc{dir: dir, bin: filepath.Join(dir, "repaird"), cfg: filepath.Join(dir, "repaird.yaml"), token: filepath.Join(dir, "token"),
		logPath: filepath.Join(dir, "repaird.log"), done: make(chan error, 1)}
	build := exec.CommandContext(ctx, "go", "build", "-o", rd.bin, "./cmd/repaird")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build repaird: %w\n%s", err, out)
	}
	if err := os.WriteFile(rd.token, []byte("demo-token-0123456789abcdef\n"), 0o600); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "home: a\nkeyspace: %s\nnamespaces: [users]\nregions:\n", ks)
	for _, name := range []string{"a", "b", "c"} {
		r, _ := env.RegionByName(e, name)
		p := cuts[name]
		fmt.Fprintf(&b, "  - name: %s\n    contact_points: [%q]\n    local_dc: %s\n    connect_timeout: 2s\n    timeout: 2s\n    address_map: {", name, p.ContactPoints()[0], r.DC)
		first := true
		for from, to := range p.AddressMap() {
			if !first {
				b.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&b, "%q: %q", from, to)
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "repair:\n  segments: 8\n  interval: 24h\nhints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [a, b, c]\n  max_hints_per_second: 100\nhttp:\n  listen: %s\n  token_file: %s\n",
		e.KafkaBrokers()[0], prefix, ks+"-repaird", addr, rd.token)
	if err := os.WriteFile(rd.cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(rd.logPath)
	if err != nil {
		return nil, err
	}
	rd.cmd = exec.Command(rd.bin, "serve", "--config", rd.cfg, "--log-level", "warn")
	rd.cmd.Stdout, rd.cmd.Stderr = logf, logf
	rd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := rd.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { rd.done <- rd.cmd.Wait(); _ = logf.Close() }()
	rd.url = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rd.cli("status"); err == nil {
			return rd, nil
		}
		if time.Now().After(deadline) {
			rd.stop()
			return nil, fmt.Errorf("repaird serve does not answer at %s; see %s", rd.url, rd.logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cli runs a repaird client command against the daemon, with its token.
func (rd *repairdProc) cli(args ...string) (string, error) {
	args = append(args, "--addr", rd.url, "--token-file", rd.token)
	out, err := exec.Command(rd.bin, args...).CombinedOutput()
	return string(out), err
}

// stop ends `repaird serve` (SIGTERM; SIGKILL after 30s) and waits for it.
func (rd *repairdProc) stop() {
	if rd.stopped {
		return
	}
	rd.stopped = true
	_ = rd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rd.done:
	case <-time.After(30 * time.Second):
		_ = rd.cmd.Process.Kill()
		<-rd.done
	}
}

// identical prints, per region, the rows, deletion markers and a checksum
// of every (pk, ck, writetime, digest), and fails unless they agree.
func identical(ctx context.Context, direct map[string]*gocql.Session, regions []string) error {
	fmt.Printf("     %-7s %6s %8s  %s\n", "region", "rows", "markers", "checksum of (pk, ck, writetime, digest)")
	var first string
	for _, name := range regions {
		it := direct[name].Query(`SELECT pk, ck, writetime(digest), digest, deleted FROM users`).IterContext(ctx)
		var pk, ck []byte
		var wt, digest int64
		var del bool
		var sum uint64
		live, markers := 0, 0
		for it.Scan(&pk, &ck, &wt, &digest, &del) {
			h := fnv.New64a()
			h.Write(pk)
			h.Write([]byte{0})
			h.Write(ck)
			fmt.Fprintf(h, "/%d/%d", wt, digest)
			sum += h.Sum64() // order-independent
			if del {
				markers++
			} else {
				live++
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
		line := fmt.Sprintf("%6d %8d  %016x", live, markers, sum)
		fmt.Printf("     %-7s %s\n", name, line)
		if first == "" {
			first = line
		} else if line != first {
			return fmt.Errorf("region %s differs from region %s", name, regions[0])
		}
	}
	fmt.Println("     identical in every region")
	return nil
}
