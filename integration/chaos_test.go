package integration

// The randomized fault suite: from a seed it prints, a workload of two
// writers (separate Stores, separate clocks and writer ids, the second
// clock skewed) and a fault schedule (regions cut and slowed, nodes paused
// and killed, Kafka paused and restarted, repaird killed while it replays
// and while it repairs) run against the real environment; then every fault
// is healed, every hint replayed and one repair run, and every region is
// checked against the model of package chaos: identical everywhere, no
// acknowledged write lost, nothing resurrected, no version no one wrote —
// and a second repair finds nothing to do.
//
// `make test` runs a short schedule; `make chaos SEED=… DURATION=…` runs
// long ones (TIDEMARK_CHAOS_SEED, TIDEMARK_CHAOS_DURATION). A failure
// prints its seed; the same seed draws the same schedule and workload.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/integration/chaos"
	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/internal/wait"
	"github.com/tidemark/tidemark/quorum"
	"github.com/tidemark/tidemark/store"
)

const (
	chaosNS     = "chaos"
	chaosIdleNS = "chaos_idle" // repaird serve's: empty
)

// chaosSettings are the run's seed and workload duration.
func chaosSettings(t *testing.T) (seed uint64, d time.Duration) {
	t.Helper()
	seed = rand.Uint64() >> 1
	if v := os.Getenv("TIDEMARK_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TIDEMARK_CHAOS_SEED=%q: %v", v, err)
		}
		seed = s
	}
	d = 60 * time.Second
	if v := os.Getenv("TIDEMARK_CHAOS_DURATION"); v != "" {
		x, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TIDEMARK_CHAOS_DURATION=%q: %v", v, err)
		}
		d = x
	}
	return seed, d
}

// TestChaos runs one seeded schedule. It controls server processes, so it
// is not parallel: no other test runs while it pauses and kills servers.
func TestChaos(t *testing.T) {
	l := localEnv(t)
	seed, d := chaosSettings(t)
	t.Logf("chaos: seed %d, workload %v (reproduce: make chaos SEED=%d DURATION=%v)", seed, d, seed, d)
	defer func() {
		if t.Failed() {
			t.Logf("chaos: FAILED with seed %d (make chaos SEED=%d DURATION=%v)", seed, seed, d)
		}
	}()
	c := newChaosRun(t, l, seed, d)
	c.run(t)
}

type chaosRun struct {
	seed     uint64
	d        time.Duration
	l        *env.Local
	ks       string
	prefix   string
	regions  []string
	proxies  map[string]*proxyState
	stores   []*store.Store
	ns       []*store.Namespace
	prods    []*hints.Producer
	history  chaos.History
	repaird  string // binary
	config   string // repaird's config file (repair runs)
	serveCfg string // repaird serve's: hint replay only, so that the repairs the suite runs show what they fix
	httpAddr string
	logDir   string

	serveMu   sync.Mutex
	serve     *exec.Cmd
	serveDone chan struct{} // closed when serve has exited
	serves    int

	applied map[chaos.FaultKind]int
	mu      sync.Mutex
	admin   map[string]*gocql.Session // direct sessions to the regions, set before the workload
}

func newChaosRun(t *testing.T, l *env.Local, seed uint64, d time.Duration) *chaosRun {
	t.Helper()
	logDir, err := os.MkdirTemp("", fmt.Sprintf("tidemark-chaos-%d-", seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TIDEMARK_CHAOS_KEEP_LOGS") != "" {
			t.Logf("chaos: the logs of the stores, producers and repaird are in %s", logDir)
			return
		}
		_ = os.RemoveAll(logDir)
	})
	c := &chaosRun{seed: seed, d: d, l: l, regions: []string{"a", "b", "c"}, proxies: map[string]*proxyState{},
		applied: map[chaos.FaultKind]int{}, logDir: logDir, admin: map[string]*gocql.Session{}}
	c.ks = newKeyspace(t, c.regions...)
	c.prefix = newTopicPrefix(t)
	deleteTopicsAtCleanup(t, c.prefix+"a", c.prefix+"b", c.prefix+"c", c.prefix+"dead")
	for _, r := range c.regions {
		c.proxies[r] = &proxyState{p: frontRegion(t, r), slow: map[int]time.Duration{}, cut: map[int]bool{}}
	}
	c.buildRepaird(t)
	skew := chaos.Skew(seed)
	t.Logf("chaos: writer 2's clock is %v off writer 1's", skew)
	for w := 1; w <= 2; w++ {
		plog, err := os.Create(filepath.Join(c.logDir, fmt.Sprintf("producer-%d.log", w)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = plog.Close() })
		prod, err := hints.NewProducer(hints.ProducerConfig{Brokers: testEnv(t).KafkaBrokers(), TopicPrefix: c.prefix,
			Partitions: 2, ReplicationFactor: 1, ProduceTimeout: 3 * time.Second,
			Logger: slog.New(slog.NewTextHandler(plog, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = prod.Close() })
		// As a service does at start-up: the topics exist before the first
		// hint, so that the first hints do not wait for their creation.
		for _, r := range c.regions {
			ectx, ecancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := prod.EnsureTopic(ectx, r); err != nil {
				ecancel()
				t.Fatalf("ensure topic %s: %v", r, err)
			}
			ecancel()
		}
		logf, err := os.Create(filepath.Join(c.logDir, fmt.Sprintf("store-%d.log", w)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = logf.Close() })
		cfg := store.Config{Home: "a", Keyspace: c.ks, Timeout: 2 * time.Second, ConnectTimeout: 20 * time.Second,
			HintSink: prod, WriterID: w, HintTimeout: 2 * time.Second,
			Logger:  slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Breaker: store.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: time.Second}}
		if w == 2 {
			cfg.Now = func() time.Time { return time.Now().Add(skew) }
		}
		for _, name := range c.regions {
			r := proxiedRegion(t, name, c.proxies[name].p)
			cfg.Regions = append(cfg.Regions, store.RegionConfig{Name: name, ContactPoints: r.ContactPoints, LocalDC: r.LocalDC, AddressMap: r.AddressMap})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		st, err := store.Open(ctx, cfg)
		if err != nil {
			cancel()
			t.Fatalf("store %d: %v", w, err)
		}
		ns, err := st.CreateNamespace(ctx, chaosNS, store.WithRetention(48*time.Hour))
		if err == nil && w == 1 {
			_, err = st.CreateNamespace(ctx, chaosIdleNS)
		}
		cancel()
		if err != nil {
			t.Fatalf("store %d: %v", w, err)
		}
		c.stores, c.ns, c.prods = append(c.stores, st), append(c.ns, ns), append(c.prods, prod)
	}
	t.Cleanup(func() {
		for _, p := range c.proxies {
			_ = p.p.Heal()
		}
		for _, st := range c.stores {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = st.CloseContext(ctx)
			cancel()
		}
	})
	return c
}

// buildRepaird builds the repaird binary and writes its config: every
// region directly (repaird runs next to the clusters), hint replay of every
// region, and a daily schedule (so a serve that starts runs a repair at
// once: killing it kills a repair too).
func (c *chaosRun) buildRepaird(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	c.repaird = filepath.Join(dir, "repaird")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", c.repaird, "../cmd/repaird").CombinedOutput()
	if err != nil {
		t.Fatalf("build repaird: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.httpAddr = ln.Addr().String()
	_ = ln.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "home: a\nkeyspace: %s\nnamespaces: [%s]\nregions:\n", c.ks, chaosNS)
	for _, name := range c.regions {
		r := region(t, name)
		fmt.Fprintf(&b, "  - name: %s\n    contact_points: [%q]\n    local_dc: %s\n    connect_timeout: 3s\n    timeout: 5s\n", name, strings.Join(r.Hosts, `", "`), r.DC)
	}
	fmt.Fprintf(&b, "repair:\n  segments: 8\n  interval: 24h\n  lease_ttl: 10s\n  max_attempts: 20\n")
	fmt.Fprintf(&b, "hints:\n  brokers: [%q]\n  topic_prefix: %s\n  group: %s\n  regions: [a, b, c]\n  retention: 48h\n",
		testEnv(t).KafkaBrokers()[0], c.prefix, strings.TrimSuffix(c.prefix, "."))
	fmt.Fprintf(&b, "http:\n  listen: %s\n", c.httpAddr)
	// Writer 2's clock is up to 2s off (chaos.Skew): the watermark's
	// clock-skew bound must cover it.
	fmt.Fprintf(&b, "watermark:\n  clock_skew: 2500ms\n")
	c.config = filepath.Join(dir, "repaird.yaml")
	if err := os.WriteFile(c.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// repaird serve repairs an empty namespace of its own (at start and
	// daily), so that the suite's own repairs show what they fix.
	c.serveCfg = filepath.Join(dir, "serve.yaml")
	serve := strings.Replace(b.String(), "namespaces: ["+chaosNS+"]\n", "namespaces: ["+chaosIdleNS+"]\n", 1)
	if err := os.WriteFile(c.serveCfg, []byte(serve), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopServe)
}

// startServe starts `repaird serve`.
func (c *chaosRun) startServe(t *testing.T) {
	c.serveMu.Lock()
	defer c.serveMu.Unlock()
	if c.serve != nil {
		return
	}
	c.serves++
	logf, err := os.Create(filepath.Join(c.logDir, fmt.Sprintf("serve-%d.log", c.serves)))
	if err != nil {
		t.Error(err)
		return
	}
	cmd := exec.Command(c.repaird, "serve", "--config", c.serveCfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Errorf("start repaird serve: %v", err)
		return
	}
	c.serve = cmd
	done := make(chan struct{})
	c.serveDone = done
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
}

// killServe SIGKILLs `repaird serve`.
func (c *chaosRun) killServe() {
	c.serveMu.Lock()
	defer c.serveMu.Unlock()
	if c.serve != nil {
		_ = c.serve.Process.Kill()
		c.serve = nil
	}
}

func (c *chaosRun) stopServe() {
	c.serveMu.Lock()
	defer c.serveMu.Unlock()
	if c.serve != nil {
		_ = c.serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.serveDone:
		case <-time.After(30 * time.Second):
			_ = c.serve.Process.Kill()
		}
		c.serve = nil
	}
}

// repair runs `repaird repair` once, returning its exit code and output.
func (c *chaosRun) repair(ctx context.Context, extra ...string) (int, string) {
	args := append([]string{"repair", "--config", c.config, "--namespace", chaosNS}, extra...)
	cmd := exec.CommandContext(ctx, c.repaird, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		code = -1
	}
	return code, string(out)
}

func (c *chaosRun) run(t *testing.T) {
	schedule := chaos.Schedule(c.seed, c.d, c.regions)
	var lines []string
	for _, f := range schedule {
		lines = append(lines, f.String())
	}
	t.Logf("chaos: %d faults:\n  %s", len(schedule), strings.Join(lines, "\n  "))
	c.startServe(t)

	ctx, cancel := context.WithTimeout(context.Background(), c.d)
	defer cancel()
	var wg sync.WaitGroup
	counts := make([]map[string]int, 2)
	for w := 1; w <= 2; w++ {
		counts[w-1] = map[string]int{}
		wg.Go(func() { c.write(ctx, w, counts[w-1]) })
	}
	var fwg sync.WaitGroup
	start := time.Now()
	for i, f := range schedule {
		fwg.Go(func() { c.inject(t, start, i, f) })
	}
	for _, r := range c.regions {
		c.admin[r] = adminSession(t, region(t, r))
	}
	wmCtx, stopSampling := context.WithCancel(context.Background())
	wmDone := make(chan watermarkSamples, 1)
	go func() { wmDone <- c.sampleWatermarks(wmCtx) }()
	wg.Wait()
	fwg.Wait()
	t.Logf("chaos: writer 1 %v; writer 2 %v; faults applied %v", counts[0], counts[1], c.applied)
	for i, st := range c.stores {
		t.Logf("chaos: store %d: %s", i+1, hintCounts(t, st))
	}

	c.converge(t)
	stopSampling()
	ws := <-wmDone
	t.Logf("chaos: watermark: %d samples (%d with a watermark), %d advances, %d violations, %d reads failed",
		ws.samples, ws.with, ws.advances, len(ws.violations), ws.failed)
	for _, v := range ws.violations {
		t.Errorf("chaos: watermark broke its promise (seed %d): %s", c.seed, v)
	}
	if ws.advances == 0 {
		t.Errorf("chaos: no region's watermark advanced during the run")
	}
}

// watermarkSamples is what sampleWatermarks saw.
type watermarkSamples struct {
	samples, with, advances, failed int
	violations                      []string
}

// sampleWatermarks checks the watermarks' promise until ctx ends: every
// two seconds, for each region, it reads the watermark repaird published
// (directly from region a), then that region's rows (directly), and checks
// the acknowledged writes below the watermark against them
// (chaos.CheckWatermark).
func (c *chaosRun) sampleWatermarks(ctx context.Context) watermarkSamples {
	var out watermarkSamples
	last := map[string]int64{}
	sa := c.admin["a"]
	for ctx.Err() == nil {
		for _, r := range c.regions {
			out.samples++
			var value []byte
			err := sa.Query(fmt.Sprintf(`SELECT value FROM %s.%s WHERE pk = ? AND ck = ?`, c.ks, schema.WatermarksTable),
				schema.WatermarksPartition, []byte(r)).Consistency(gocql.LocalQuorum).ScanContext(ctx, &value)
			if err != nil {
				if !errors.Is(err, gocql.ErrNotFound) && ctx.Err() == nil {
					out.failed++
				}
				continue
			}
			w, err := schema.DecodeWatermark(value)
			if err != nil {
				out.violations = append(out.violations, fmt.Sprintf("region %s: %v", r, err))
				continue
			}
			out.with++
			if w.Before > last[r] && last[r] != 0 {
				out.advances++
			}
			last[r] = w.Before
			states, err := c.statesOf(ctx, r)
			if err != nil {
				if ctx.Err() == nil {
					out.failed++
				}
				continue
			}
			for _, v := range chaos.CheckWatermark(c.history.Writes(), w.Before, states, time.Now()) {
				if len(out.violations) < 20 {
					out.violations = append(out.violations, fmt.Sprintf("region %s, watermark %s: %s", r, time.UnixMicro(w.Before).UTC().Format(time.RFC3339Nano), v))
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return out
}

// write runs one writer's workload until ctx ends.
func (c *chaosRun) write(ctx context.Context, w int, counts map[string]int) {
	wl := chaos.NewWorkload(c.seed, w)
	ns := c.ns[w-1]
	var backoff time.Duration
	for seq := 0; ctx.Err() == nil; seq++ {
		op := wl.Next()
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		level := store.WithConsistency(op.Level)
		var ts int64
		var err error
		value := fmt.Appendf(nil, "w%d-%d", w, seq)
		switch op.Kind {
		case chaos.OpPut, chaos.OpPutTTL:
			opts := []store.CallOption{level, store.WithVersionReport(&ts)}
			if op.TTL > 0 {
				opts = append(opts, store.WithTTL(op.TTL))
			}
			now := time.Now()
			err = ns.Put(cctx, []byte(op.Key.PK), []byte(op.Key.CK), value, opts...)
			c.record(w, op, op.Key, ts, false, value, expiry(now, op.TTL, w, c), err)
		case chaos.OpDelete:
			err = ns.Delete(cctx, []byte(op.Key.PK), []byte(op.Key.CK), level, store.WithVersionReport(&ts))
			// A marker expires after the retention: far beyond the run.
			c.record(w, op, op.Key, ts, true, nil, -1, err)
		case chaos.OpBatch:
			var entries []store.Entry
			for i, e := range op.Entries {
				en := store.Entry{CK: []byte(e.CK), Delete: e.Delete}
				if !e.Delete {
					en.Value = fmt.Appendf(nil, "w%d-%d.%d", w, seq, i)
				}
				entries = append(entries, en)
			}
			err = ns.PutBatch(cctx, []byte(op.Key.PK), entries, level, store.WithVersionReport(&ts))
			for _, en := range entries {
				exp := int64(0)
				if en.Delete {
					exp = -1
				}
				c.record(w, op, chaos.Key{PK: op.Key.PK, CK: string(en.CK)}, ts, en.Delete, en.Value, exp, err)
			}
		case chaos.OpGet:
			it, gerr := ns.Get(cctx, []byte(op.Key.PK), []byte(op.Key.CK), level)
			r := chaos.Read{Key: op.Key, Writer: w, Level: op.Level.String()}
			switch {
			case gerr == nil:
				r.Found, r.V = true, quorum.Version{Timestamp: it.Timestamp, Value: it.Value}
				if it.TTL > 0 {
					// Item.TTL is counted by the writer's own clock.
					r.V.Expires = c.writerNow(w).Add(it.TTL).Unix() // within a second of the row's own
				}
			case errors.Is(gerr, store.ErrNotFound):
			default:
				r.Err = gerr.Error()
			}
			c.history.AddRead(r)
			err = gerr
			if errors.Is(gerr, store.ErrNotFound) {
				err = nil
			}
		}
		cancel()
		switch {
		case err == nil:
			counts[string(op.Kind)+" ok"]++
			backoff = 0
		default:
			counts[string(op.Kind)+" failed"]++
			// A failed call backs off, as a service's client would: while
			// a level cannot be met, calls fail at once, and without a
			// pause a 30-minute run recorded millions of failed writes
			// (13 GB of history, and the restarted servers could not get
			// memory).
			backoff = min(max(2*backoff, 5*time.Millisecond), 200*time.Millisecond)
			if !wait.Sleep(ctx, backoff) {
				return
			}
		}
	}
}

// writerNow is writer w's clock: writer 2's is skewed.
func (c *chaosRun) writerNow(w int) time.Time {
	if w == 2 {
		return time.Now().Add(chaos.Skew(c.seed))
	}
	return time.Now()
}

// expiry is the absolute expiry a put made at now with ttl gets: the
// store rounds now + ttl up to a whole second (by the writer's clock).
func expiry(now time.Time, ttl time.Duration, w int, c *chaosRun) int64 {
	if ttl <= 0 {
		return 0
	}
	if w == 2 {
		now = now.Add(chaos.Skew(c.seed))
	}
	t := now.Add(ttl)
	return t.Unix() + 1 // within a second: the checker allows that
}

// record adds one write to the history. A write whose call failed
// validation was never applied and is left out; any other failure may or
// may not have landed.
func (c *chaosRun) record(w int, op chaos.Op, k chaos.Key, ts int64, deleted bool, value []byte, expires int64, err error) {
	if ts == 0 {
		return // not validated: no version was given
	}
	v := quorum.Version{Timestamp: ts, Deleted: deleted, Value: value}
	if expires > 0 {
		v.Expires = expires
	}
	wr := chaos.Write{Key: k, V: v, Acked: err == nil, Writer: w, Op: string(op.Kind), Level: op.Level.String()}
	if err != nil {
		wr.Err = err.Error()
		if len(wr.Err) > 200 { // kept for a failure's report; bounded
			wr.Err = wr.Err[:200]
		}
	}
	if expires < 0 {
		wr.V.Expires = -1 // fixed when the states are read: markers are compared by timestamp
	}
	c.history.AddWrite(wr)
}

// proxyState combines the cuts and slow links active on one proxy.
type proxyState struct {
	mu   sync.Mutex
	p    *fault.Proxy
	cut  map[int]bool
	slow map[int]time.Duration
}

func (p *proxyState) apply() error {
	switch {
	case len(p.cut) > 0:
		return p.p.Refuse()
	case len(p.slow) > 0:
		var most time.Duration
		for _, l := range p.slow {
			most = max(most, l)
		}
		return p.p.Slow(most)
	default:
		return p.p.Heal()
	}
}

// inject applies fault i at its time and undoes it after its duration.
func (c *chaosRun) inject(t *testing.T, start time.Time, i int, f chaos.Fault) {
	time.Sleep(time.Until(start.Add(f.At)))
	c.mu.Lock()
	c.applied[f.Kind]++
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logErr := func(what string, err error) {
		if err != nil {
			t.Logf("chaos: %s (%v): %v", what, f, err)
		}
	}
	switch f.Kind {
	case chaos.Cut, chaos.Slow:
		p := c.proxies[f.Region]
		p.mu.Lock()
		if f.Kind == chaos.Cut {
			p.cut[i] = true
		} else {
			p.slow[i] = f.Latency
		}
		logErr("proxy", p.apply())
		p.mu.Unlock()
		time.Sleep(f.For)
		p.mu.Lock()
		delete(p.cut, i)
		delete(p.slow, i)
		logErr("proxy", p.apply())
		p.mu.Unlock()
	case chaos.PauseNode:
		n := c.l.Nodes(f.Region)[0]
		logErr("pause", n.Pause())
		time.Sleep(f.For)
		logErr("resume", n.Resume())
	case chaos.KillNode:
		n := c.l.Nodes(f.Region)[0]
		logErr("kill", n.Kill(ctx))
		time.Sleep(f.For)
		logErr("restart", c.l.RestartNode(ctx, n))
	case chaos.PauseKafka:
		logErr("pause kafka", c.l.Broker().Pause())
		time.Sleep(f.For)
		logErr("resume kafka", c.l.Broker().Resume())
	case chaos.RestartKafka:
		logErr("kill kafka", c.l.Broker().Kill(ctx))
		time.Sleep(f.For)
		logErr("restart kafka", c.l.RestartKafka(ctx))
	case chaos.KillReplayer:
		c.killServe()
		time.Sleep(f.For)
		c.startServe(t)
	case chaos.KillRepair:
		rctx, rcancel := context.WithTimeout(ctx, f.For)
		_, _ = c.repair(rctx) // killed when rctx ends
		rcancel()
	}
}

// converge heals, waits for every hint to be replayed, repairs, checks the
// regions against the model and repairs again.
func (c *chaosRun) converge(t *testing.T) {
	t.Helper()
	for _, p := range c.proxies {
		p.mu.Lock()
		clear(p.cut)
		clear(p.slow)
		if err := p.apply(); err != nil {
			t.Errorf("heal proxy: %v", err)
		}
		p.mu.Unlock()
	}
	// Close the stores: their background writes finish or become hints.
	for i, st := range c.stores {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := st.CloseContext(ctx); err != nil && !errors.Is(err, store.ErrStillClosing) {
			t.Logf("chaos: close store %d: %v", i+1, err)
		}
		cancel()
	}
	for _, p := range c.prods {
		_ = p.Close()
	}
	c.startServe(t)
	started := time.Now()
	c.awaitReplay(t)
	t.Logf("chaos: every hint replayed %v after the workload", time.Since(started).Round(100*time.Millisecond))
	c.stopServe() // its scheduled repair must not race the checks

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A fresh run: an unfinished run (a repair killed part-way) started
	// before the last faults, and finishing it would not cover them.
	var out string
	for attempt := 1; ; attempt++ {
		code, o := c.repair(ctx, "--fresh")
		out = o
		if code == 0 {
			break
		}
		if attempt == 5 || ctx.Err() != nil {
			t.Fatalf("repair did not complete (exit %d):\n%s", code, o)
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("chaos: repair: %s", summaryLine(out))

	states := map[string]map[chaos.Key]chaos.State{}
	for _, r := range c.regions {
		states[r] = c.readStates(t, r)
	}
	// Markers are compared by timestamp: their expiry is the writer's
	// now + retention, which the history does not know to the second.
	h := c.historyWithMarkerExpiries(states)
	v := chaos.Check(h, states)
	t.Logf("chaos: verdict: %s", v)
	if !v.OK() {
		t.Errorf("chaos: the regions are not what Cassandra could hold after this history (seed %d)", c.seed)
	}
	code, out := c.repair(ctx, "--fresh")
	if code != 0 {
		t.Fatalf("second repair failed (exit %d):\n%s", code, out)
	}
	if n := differing(out); n != 0 {
		t.Errorf("chaos: a second repair found %d rows differing:\n%s", n, out)
	}
	t.Logf("chaos: second repair: %s", summaryLine(out))
}

// historyWithMarkerExpiries returns the history with each marker's expiry
// taken from the regions that hold that marker (it is the writer's clock
// plus the retention, which the test does not know to the second).
func (c *chaosRun) historyWithMarkerExpiries(states map[string]map[chaos.Key]chaos.State) *chaos.History {
	held := map[int64]int64{}
	for _, s := range states["a"] {
		if s.Present && s.V.Deleted {
			held[s.V.Timestamp] = s.V.Expires
		}
	}
	h := &chaos.History{}
	for _, w := range c.history.Writes() {
		if w.V.Expires < 0 {
			w.V.Expires = held[w.V.Timestamp] // 0 when no region holds it: judged absent anyway
			if w.V.Expires == 0 {
				w.V.Expires = time.Now().Add(48 * time.Hour).Unix()
			}
		}
		h.AddWrite(w)
	}
	for _, r := range c.history.Reads() {
		h.AddRead(r)
	}
	return h
}

var differingRE = regexp.MustCompile(`rows: \d+ scanned, (\d+) differing`)

func differing(out string) int {
	m := differingRE.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func summaryLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "rows: ") {
			return l
		}
	}
	return strings.TrimSpace(out)
}

// readStates reads every row of the namespace in a region, directly.
func (c *chaosRun) readStates(t *testing.T, regionName string) map[chaos.Key]chaos.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.statesOf(ctx, regionName) // c.admin is filled before the workload
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// statesOf reads every row of the namespace in a region, directly.
func (c *chaosRun) statesOf(ctx context.Context, regionName string) (map[chaos.Key]chaos.State, error) {
	s := c.admin[regionName]
	out := map[chaos.Key]chaos.State{}
	it := s.Query(fmt.Sprintf(`SELECT pk, ck, value, deleted, writetime(digest), expires FROM %s.%s`, c.ks, chaosNS)).
		Consistency(gocql.LocalQuorum).PageSize(1000).IterContext(ctx)
	var pk, ck, value []byte
	var deleted bool
	var wt, expires int64
	for it.Scan(&pk, &ck, &value, &deleted, &wt, &expires) {
		v := quorum.Version{Timestamp: wt, Deleted: deleted, Expires: expires}
		if !deleted {
			v.Value = bytes.Clone(value)
			if v.Value == nil {
				v.Value = []byte{}
			}
		}
		out[chaos.Key{PK: string(pk), CK: string(ck)}] = chaos.State{Present: true, V: v}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read region %s: %w", regionName, err)
	}
	return out, nil
}

// awaitReplay waits until every hint topic's consumer group has committed
// every record (the replayers applied or dead-lettered them all), and
// repaird answers.
func (c *chaosRun) awaitReplay(t *testing.T) {
	t.Helper()
	client := kafkaAdmin(t)
	group := strings.TrimSuffix(c.prefix, ".")
	eventually(t, 5*time.Minute, "every hint replayed", func() error {
		resp, err := http.Get("http://" + c.httpAddr + "/healthz")
		if err != nil {
			return fmt.Errorf("repaird: %w", err)
		}
		_ = resp.Body.Close()
		for _, r := range c.regions {
			if err := caughtUp(client, c.prefix+r, group+"-"+r); err != nil {
				return err
			}
		}
		return nil
	})
}

// caughtUp reports nil when the group has committed the end offset of
// every partition of topic (a topic that does not exist has no hints).
func caughtUp(client *kafka.Client, topic, group string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return err
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return err
	}
	done := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		done[p.Partition] = p.CommittedOffset
	}
	for _, p := range ends.Topics[topic] {
		if p.LastOffset > 0 && done[p.Partition] < p.LastOffset {
			return fmt.Errorf("%s partition %d: committed %d of %d", topic, p.Partition, done[p.Partition], p.LastOffset)
		}
	}
	return nil
}

// hintCounts sums a Store's hint metrics: hinted, left to repair (by
// reason) and uncertain.
func hintCounts(t *testing.T, st *store.Store) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(st.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	for _, mf := range mfs {
		name := strings.TrimPrefix(mf.GetName(), "tidemark_store_")
		if !strings.HasPrefix(name, "hint") {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					key += "{" + l.GetValue() + "}"
				}
			}
			sums[key] += m.GetCounter().GetValue()
		}
	}
	return fmt.Sprint(sums)
}
