package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

// A store that is killed — not closed — takes the writes it had not
// settled with it: acknowledged in its home region, still on their way
// to another region as hints, in no region, no hint topic and no repair
// debt. Its registration expires and the watermark stops waiting for it;
// the watermark must not then promise those writes.
//
// TestWatermarkAfterUncleanExit runs a real store in a child process (the
// test binary again, crashingStoreEnv) whose region c and Kafka broker are
// blackholed fault proxies (connections accepted, nothing answered), so
// that every write's share for c waits on its hint; the child is killed
// with SIGKILL while they wait. repaird (home a, repairing the namespace)
// must find the store's session without a registration, record its exit
// as overflow debt, run a full repair that gives c the lost writes, and
// only then let c's watermark pass them: at no sampled moment may c's
// watermark exceed the version of an acknowledged write c does not hold.
func TestWatermarkAfterUncleanExit(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TIDEMARK_EXIT_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("TIDEMARK_EXIT_SEED=%q: %v", v, err)
		}
	}
	r := rand.New(rand.NewPCG(seed, 0))
	cases := []exitCase{
		{name: "c and Kafka silent", silentC: true, silentKafka: true, killAfter: 200, lossRequired: true, second: true},
		{name: fmt.Sprintf("seed %d", seed), seed: seed, silentC: r.IntN(2) == 0, silentKafka: r.IntN(2) == 0, killAfter: 20 + r.IntN(280), second: r.IntN(2) == 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.seed != 0 {
				t.Logf("reproduce with TIDEMARK_EXIT_SEED=%d: c silent %v, Kafka silent %v, killed after %d acknowledged writes, a second daemon %v",
					tc.seed, tc.silentC, tc.silentKafka, tc.killAfter, tc.second)
			}
			uncleanExit(t, tc)
		})
	}
}

// exitCase is one run of TestWatermarkAfterUncleanExit: which of the
// child's peers are silent, after how many acknowledged writes it is
// killed (it goes on writing until then), whether c must lack some of
// them at the kill (the test checks it made the loss it is about), and
// whether a second repaird (home b, repairing nothing, publishing
// watermarks too) runs beside the first: either may record the exit, and
// neither may promise the lost writes.
type exitCase struct {
	name                 string
	seed                 uint64
	silentC, silentKafka bool
	killAfter            int
	lossRequired         bool
	second               bool
}

func uncleanExit(t *testing.T, tc exitCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ks := newKeyspace(t, "a", "b", "c")
	createTable(t, ks, hintsNS, "a", "b", "c")
	prefix := newTopicPrefix(t)
	prod := hintsProducer(t, prefix, nil)
	for _, r := range []string{"a", "b", "c"} {
		if err := prod.EnsureTopic(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	group := strings.TrimSuffix(prefix, ".") + "-exit"
	d := serveDaemon(t, fmt.Sprintf("home: a\nkeyspace: %s\nnamespaces: [%s]\n%shints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [a, b, c]\nrepair:\n  interval: 24h\n  debt_interval: 1s\nwatermark:\n  interval: 200ms\n  clock_skew: 100ms\nhttp:\n  listen: 127.0.0.1:0\n",
		ks, hintsNS, regionsYAML(t, "a", "b", "c"), testEnv(t).KafkaBrokers()[0], prefix, group))
	daemons := []*servedDaemon{d}
	if tc.second {
		daemons = append(daemons, serveDaemon(t, fmt.Sprintf("home: b\nkeyspace: %s\n%shints:\n  brokers: [%q]\n  topic_prefix: %q\n  group: %q\n  regions: [a, b, c]\nwatermark:\n  interval: 200ms\n  clock_skew: 100ms\nhttp:\n  listen: 127.0.0.1:0\n",
			ks, regionsYAML(t, "a", "b", "c"), testEnv(t).KafkaBrokers()[0], prefix, group)))
	}
	// c's watermark as daemon i last published it.
	wmOf := func(i int) time.Time {
		for _, v := range daemons[i].Status().Watermarks {
			if v.Region == "c" {
				return v.ConvergedBefore
			}
		}
		return time.Time{}
	}
	// The lower of the daemons' (the one a caller reads is either).
	wm := func() time.Time {
		w := wmOf(0)
		for i := 1; i < len(daemons); i++ {
			if wi := wmOf(i); wi.Before(w) {
				w = wi
			}
		}
		return w
	}
	eventually(t, time.Minute, "c's watermark is published", func() error {
		if wm().IsZero() {
			return fmt.Errorf("none yet: %+v", d.Status().Watermarks)
		}
		return nil
	})
	// The daemon's first full run (none is on record) ends before the
	// store starts: the next is a day away, so only the exit's can give
	// c the lost writes.
	eventually(t, 2*time.Minute, "the daemon's first full run ends", func() error {
		if n := d.Status().Namespaces[hintsNS]; n == nil || n.Running || n.LastFullRepair.IsZero() {
			return fmt.Errorf("namespace status %+v", n)
		}
		return nil
	})

	// The child: hints (and heartbeats) wait up to 8s on a silent broker,
	// its registration lives 6s (refreshed every second meanwhile). A
	// silent peer is a blackholed fault proxy: it answers no request, so
	// the child never learns another address to go round it by. Hints go
	// to the daemon's topics: with Kafka answering, they are replayed.
	pc := frontRegion(t, "c")
	pk, err := shared.proxies.Front(uniqueName(t, "proxy_kafka"), testEnv(t).KafkaBrokers())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pk.Close)
	for p, silent := range map[*fault.Proxy]bool{pc: tc.silentC, pk: tc.silentKafka} {
		if !silent {
			continue
		}
		if err := p.Blackhole(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := crashingStore{Keyspace: ks, Namespace: hintsNS, Brokers: pk.ContactPoints(), TopicPrefix: prefix, Writes: tc.killAfter + 1000,
		RegistrationTTL: 6 * time.Second, HintTimeout: 8 * time.Second}
	for _, name := range []string{"a", "b", "c"} {
		r := region(t, name)
		hosts := r.Hosts
		if name == "c" && tc.silentC {
			hosts = pc.ContactPoints()
		}
		cfg.Regions = append(cfg.Regions, crashingRegion{Name: name, Hosts: hosts, DC: r.DC})
	}
	var log writeLog
	child, acked := startCrashingStore(t, cfg, &log, tc.killAfter)
	select {
	case <-acked:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the child store did not acknowledge %d writes within 2 minutes (%d)", tc.killAfter, len(log.snapshot()))
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed := time.Now()
	writes := log.snapshot()
	t.Logf("child store killed after %d acknowledged writes", len(writes))

	sc := directSession(t, "c", ks)
	missing := watermarkViolations(writes, killed.UnixMicro(), readTable(t, sc, ks))
	if len(missing) == 0 && tc.lossRequired {
		t.Fatal("c holds every write of the killed store already: the test has not made the loss it is about")
	}
	t.Logf("at the kill c lacked %d of them", len(missing))
	checks := 0
	check := func() time.Time {
		t.Helper()
		rows := readTable(t, sc, ks) // read after the watermarks it is held against
		for i := range daemons {
			w := wmOf(i)
			if v := watermarkViolations(writes, w.UnixMicro(), rows); len(v) > 0 {
				t.Fatalf("c's watermark %s (daemon %d of %d) promises writes of the killed store that c does not hold (%d), first: %s; daemon: %+v",
					w.Format(time.RFC3339Nano), i+1, len(daemons), len(v), v[0], daemons[i].Status().Watermarks)
			}
		}
		checks++
		return wm()
	}
	eventually(t, 3*time.Minute, "c's watermark passes the kill, c holding every write", func() error {
		if w := check(); !w.After(killed) {
			return fmt.Errorf("c's watermark %s, killed at %s; daemon: %+v", w.Format(time.RFC3339Nano), killed.Format(time.RFC3339Nano), d.Status().Watermarks)
		}
		return nil
	})
	passed := time.Since(killed)
	exits := 0.0
	for _, sd := range daemons {
		exits += gauge(t, sd.Registry(), "tidemark_watermark_unclean_exits_total")
	}
	if exits < 1 || exits > float64(len(daemons)) {
		t.Errorf("tidemark_watermark_unclean_exits_total = %v over %d daemons, want 1 to %d", exits, len(daemons), len(daemons))
	}
	// What let it pass: a full run that started after the kill, and no
	// overflow left.
	if last := d.Status().Namespaces[hintsNS].LastFullRepair; !last.After(killed) {
		t.Errorf("c's watermark passed the kill, but the last full repair started at %s, before the kill at %s", last, killed)
	}
	eventually(t, time.Minute, "the exit's overflow entries are removed", func() error {
		for _, v := range d.Status().Debt {
			if len(v.Overflows) > 0 {
				return fmt.Errorf("region %s: overflows %v", v.Region, v.Overflows)
			}
		}
		return nil
	})
	t.Logf("c's watermark passed the kill %v after it (registration TTL 6s, then the exit's full repair); %d soundness checks, none failed",
		passed.Round(10*time.Millisecond), checks)
}

// crashingStore is the child's configuration, passed as JSON in the
// environment variable crashingStoreEnv.
type crashingStore struct {
	Keyspace, Namespace string
	Regions             []crashingRegion
	Brokers             []string
	TopicPrefix         string
	Writes              int
	RegistrationTTL     time.Duration
	HintTimeout         time.Duration
}

// crashingRegion is a region of the child's store.
type crashingRegion struct {
	Name, DC string
	Hosts    []string
}

const crashingStoreEnv = "TIDEMARK_TEST_CRASHING_STORE"

// startCrashingStore starts the child and returns it and a channel closed
// once it has acknowledged n writes (or all of them), each added to log.
func startCrashingStore(t *testing.T, cfg crashingStore, log *writeLog, n int) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashingStoreEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	done := make(chan struct{})
	go func() {
		var once sync.Once
		acked := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "ack":
				v, _ := strconv.ParseInt(f[2], 10, 64)
				log.add(f[1], v)
				if acked++; acked >= n {
					once.Do(func() { close(done) })
				}
			case len(f) == 1 && f[0] == "done":
				once.Do(func() { close(done) })
			}
		}
	}()
	return cmd, done
}

// runCrashingStore is the child: it opens a store, writes, reports each
// acknowledged write on stdout ("ack pk/ck version"), then "done", and
// waits to be killed. It returns the exit code when it fails.
func runCrashingStore(spec string) int {
	var cfg crashingStore
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "crashing store:", err)
		return 2
	}
	ctx := context.Background()
	prod, err := hints.NewProducer(hints.ProducerConfig{Brokers: cfg.Brokers, TopicPrefix: cfg.TopicPrefix, Partitions: 4,
		ReplicationFactor: 1, ProduceTimeout: cfg.HintTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashing store: producer:", err)
		return 2
	}
	var regions []store.RegionConfig
	for _, r := range cfg.Regions {
		regions = append(regions, store.RegionConfig{Name: r.Name, ContactPoints: r.Hosts, LocalDC: r.DC})
	}
	st, err := store.Open(ctx, store.Config{Home: "a", Keyspace: cfg.Keyspace, Regions: regions, Timeout: 3 * time.Second,
		ConnectTimeout: 30 * time.Second, HintSink: prod, HintTimeout: cfg.HintTimeout,
		Watermark: store.WatermarkConfig{RegistrationTTL: cfg.RegistrationTTL},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashing store: open:", err)
		return 2
	}
	ns, err := st.Namespace(cfg.Namespace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashing store:", err)
		return 2
	}
	// Wait for the registration to be in a majority: before that repaird
	// does not know the store, which the watermark allows for only within
	// the clock-skew bound.
	time.Sleep(2 * time.Second)
	// Puts and deletes over 20 partitions of 30 rows, each acknowledged
	// write reported before the next (the parent kills the child after
	// some number of them).
	for i := range cfg.Writes {
		pk, ck := fmt.Sprintf("p%d", i%20), fmt.Sprintf("c%d", (i/20)%30)
		var v int64
		opts := []store.CallOption{store.WithConsistency(quorum.LocalQuorum), store.WithVersionReport(&v)}
		if i%7 == 6 {
			err = ns.Delete(ctx, []byte(pk), []byte(ck), opts...)
		} else {
			err = ns.Put(ctx, []byte(pk), []byte(ck), fmt.Appendf(nil, "v%d", i), opts...)
		}
		if err == nil {
			fmt.Printf("ack %s/%s %d\n", pk, ck, v)
		}
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Println("done")
	select {} // killed here
}
