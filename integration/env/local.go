package env

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// RegionSpec describes one region to start.
type RegionSpec struct {
	// Name of the region; also its data center name.
	Name string
	// Nodes in the region's cluster (1 or 3 are sensible).
	Nodes int
}

// Options configure a local environment.
type Options struct {
	// Regions to start. Default: DefaultRegions().
	Regions []RegionSpec
	// NoKafka skips the Kafka broker.
	NoKafka bool
	// Secure also starts the secure mode (see Secure): region "s" on
	// 127.0.0.71, one node that takes only TLS connections from
	// password-authenticated roles, and a SASL_SSL listener on the Kafka
	// broker (127.0.0.1:29094; SCRAM-SHA-512, SCRAM-SHA-256, PLAIN). The
	// node starts with the others, so it adds little to the start time.
	// Default false; `tidemark-env up` and the integration tests set it
	// from SecureByDefault.
	Secure bool
	// Dir holds the servers' data and logs. Default: CacheDir()/run. It is
	// wiped at start.
	Dir string
	// Detached servers outlive the process that started them (make up);
	// otherwise they are killed when it dies, even by a panic or SIGKILL.
	Detached bool
	// CassandraHeap and KafkaHeap are JVM heap sizes. Default 512M each.
	CassandraHeap, KafkaHeap string
	// StartTimeout bounds the whole start. Default 4 minutes.
	StartTimeout time.Duration
	// Logf receives progress lines. Default: discard.
	Logf func(format string, args ...any)

	// firstRegion shifts the regions' addresses (tests of start failures use
	// addresses no shared environment uses); extraYAML is appended to every
	// node's cassandra.yaml.
	firstRegion int
	extraYAML   string
}

// DefaultRegions are three single-node regions "a", "b" and "c", plus the
// three-node region "q" when TIDEMARK_THREE_NODE_REGION=1.
func DefaultRegions() []RegionSpec {
	r := []RegionSpec{{"a", 1}, {"b", 1}, {"c", 1}}
	if v, _ := strconv.ParseBool(os.Getenv("TIDEMARK_THREE_NODE_REGION")); v {
		r = append(r, RegionSpec{"q", 3})
	}
	return r
}

// Local is an environment of local JVM processes.
type Local struct {
	dir      string
	detached bool
	attached bool // Attach()ed: Close stops nothing
	regions  []localRegion
	broker   *Broker
	started  time.Time
	logf     func(string, ...any)
	// secure and secureNode are the secure mode, when it runs.
	secure     *Secure
	secureNode *Node
}

type localRegion struct {
	Region
	nodes []*Node
}

// Regions implements Env.
func (l *Local) Regions() []Region {
	out := make([]Region, len(l.regions))
	for i, r := range l.regions {
		out[i] = r.Region
	}
	return out
}

// KafkaBrokers implements Env.
func (l *Local) KafkaBrokers() []string {
	if l.broker == nil {
		return nil
	}
	return []string{l.broker.Addr}
}

// Nodes returns the nodes of a region, the secure region's included.
func (l *Local) Nodes(region string) []*Node {
	for _, r := range l.regions {
		if r.Name == region {
			return r.nodes
		}
	}
	if l.secureNode != nil && region == l.secure.Region.Name {
		return []*Node{l.secureNode}
	}
	return nil
}

// Secure describes the secure mode (region "s", Kafka's SASL_SSL
// listener, the CA and the credentials), or returns nil when the
// environment runs without it. Its region is not among Regions.
func (l *Local) Secure() *Secure {
	if l.secure == nil {
		return nil
	}
	s := *l.secure
	return &s
}

// Broker returns the Kafka broker, or nil.
func (l *Local) Broker() *Broker { return l.broker }

// Dir is the directory holding the servers' data and logs.
func (l *Local) Dir() string { return l.dir }

// StartedAt is when the environment was started.
func (l *Local) StartedAt() time.Time { return l.started }

// Start fetches the jars (once), starts every server and waits until each
// serves requests. On error, everything already started is stopped.
func Start(ctx context.Context, o Options) (*Local, error) {
	if len(o.Regions) == 0 {
		o.Regions = DefaultRegions()
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(CacheDir(), "run")
	}
	if o.CassandraHeap == "" {
		o.CassandraHeap = "512M"
	}
	if o.KafkaHeap == "" {
		o.KafkaHeap = "512M"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 4 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := validateSpecs(o.Regions); err != nil {
		return nil, err
	}
	if o.Secure && len(o.Regions)+o.firstRegion > secureRegionIndex {
		return nil, fmt.Errorf("at most %d regions with the secure mode (its region uses the addresses of region %d, %s)",
			secureRegionIndex, secureRegionIndex+1, nodeAddress(secureRegionIndex, 0))
	}
	if st, err := readState(o.Dir); err == nil && st.anyAlive() {
		return nil, fmt.Errorf("%w: an environment is already running from %s (started %s); attach to it, or stop it with `make down`",
			ErrPortInUse, o.Dir, st.Started.Format(time.RFC3339))
	}
	if err := checkPorts(o); err != nil {
		return nil, err
	}
	cassLib, kafkaLib, err := FetchJars(ctx, o.Logf)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	l := &Local{dir: o.Dir, detached: o.Detached, started: time.Now(), logf: o.Logf}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	var sec *securePlan
	if o.Secure {
		if sec, err = planSecure(o.Dir, !o.NoKafka); err != nil {
			return nil, fmt.Errorf("secure mode: certificates: %w", err)
		}
		l.secure = &sec.Secure
	}
	for ri, rs := range o.Regions {
		lr := localRegion{Region: Region{Name: rs.Name, DC: rs.Name}}
		var seeds []string
		ri += o.firstRegion
		for n := 0; n < rs.Nodes && n < 3; n++ {
			seeds = append(seeds, nodeAddress(ri, n)+":7000")
		}
		for n := 0; n < rs.Nodes; n++ {
			addr := nodeAddress(ri, n)
			spec := cassandraSpec{
				lib: cassLib, dir: filepath.Join(o.Dir, "cassandra", rs.Name, strconv.Itoa(n)),
				cluster: "tidemark-" + rs.Name, dc: rs.Name, address: addr, seeds: seeds,
				token: initialToken(n, rs.Nodes), heap: o.CassandraHeap, attached: !o.Detached,
				extraYAML: o.extraYAML,
			}
			p, err := spec.prepare(fmt.Sprintf("cassandra %s/%d (%s)", rs.Name, n, addr))
			if err != nil {
				return nil, err
			}
			lr.nodes = append(lr.nodes, &Node{Region: rs.Name, Index: n, Address: addr, Process: p, dir: spec.dir})
			lr.Hosts = append(lr.Hosts, fmt.Sprintf("%s:%d", addr, CQLPort))
		}
		l.regions = append(l.regions, lr)
	}
	if sec != nil {
		n, err := prepareSecureNode(o, cassLib, sec)
		if err != nil {
			return nil, err
		}
		l.secureNode = n
	}
	if !o.NoKafka {
		ks := kafkaSpec{lib: kafkaLib, dir: filepath.Join(o.Dir, "kafka"), heap: o.KafkaHeap, attached: !o.Detached}
		if sec != nil {
			ks.secure = sec.kafka()
		}
		p, err := ks.prepare(ctx)
		if err != nil {
			return nil, err
		}
		l.broker = &Broker{Addr: fmt.Sprintf("%s:%d", kafkaHost, KafkaPort), Process: p, dir: ks.dir}
	}

	ok := false
	defer func() {
		if !ok {
			_ = l.stopAll(context.Background())
			_ = os.Remove(statePath(l.dir))
		}
	}()
	o.Logf("starting %d Cassandra nodes in %d regions%s%s", l.nodeCount(), len(l.regions),
		map[bool]string{true: " and a Kafka broker", false: ""}[l.broker != nil],
		map[bool]string{true: ", and the secure mode (region " + SecureRegionName + ")", false: ""}[l.secure != nil])
	// A multi-node region starts its first node with the others; its
	// other nodes join one at a time once it answers (below). Nodes of one
	// ring started together sometimes never agreed on the schema (two
	// versions for over 3 minutes, in 1 start of about 8).
	joinLater := map[*Process]bool{}
	for _, r := range l.regions {
		for _, n := range r.nodes[1:] {
			joinLater[n.Process] = true
		}
	}
	for _, p := range l.processes() {
		if joinLater[p] {
			continue
		}
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	// Record pids at once, so that `make down` can clean up even if we die
	// while waiting.
	if err := l.writeState(); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, 0)
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for _, r := range l.regions {
		for _, n := range r.nodes {
			if joinLater[n.Process] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := waitNode(ctx, n); err != nil {
					fail(err)
				}
			}()
		}
	}
	if n := l.secureNode; n != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := waitNode(ctx, n); err != nil {
				fail(err)
				return
			}
			made := time.Now()
			if err := l.secure.setupRoles(ctx, n); err != nil {
				fail(err)
				return
			}
			o.Logf("region %s: answers over TLS after %s; role %s made in %s", n.Region,
				made.Sub(l.started).Round(100*time.Millisecond), l.secure.Username, time.Since(made).Round(100*time.Millisecond))
		}()
	}
	if l.broker != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := waitKafka(ctx, l.broker.Process, l.broker.Addr, nil); err != nil {
				fail(err)
				return
			}
			if l.secure == nil {
				return
			}
			d, err := l.secure.KafkaDialer()
			if err == nil {
				err = waitKafka(ctx, l.broker.Process, l.secure.KafkaAddr, d)
			}
			if err != nil {
				fail(fmt.Errorf("kafka's SASL_SSL listener: %w", err))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, r := range l.regions {
		for _, n := range r.nodes[1:] {
			joined := time.Now()
			if err := n.Process.start(); err != nil {
				return nil, err
			}
			if err := l.writeState(); err != nil {
				return nil, err
			}
			if err := waitNode(ctx, n); err != nil {
				return nil, err
			}
			o.Logf("region %s: %s joined in %s", r.Name, n.Name, time.Since(joined).Round(100*time.Millisecond))
		}
		if len(r.nodes) > 1 {
			if err := waitRing(ctx, r, o.Logf); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	o.Logf("environment ready in %s", time.Since(l.started).Round(100*time.Millisecond))
	return l, l.writeState()
}

// waitNode waits until node n answers CQL with a 5.0.x release.
func waitNode(ctx context.Context, n *Node) error {
	v, err := waitCQL(ctx, n.Process, n.CQLAddr(), n.probe)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(v, "5.0.") {
		return fmt.Errorf("%s answers with release_version %s, want 5.0.x", n.Name, v)
	}
	return nil
}

func validateSpecs(specs []RegionSpec) error {
	seen := map[string]bool{}
	if len(specs) > 9 {
		return fmt.Errorf("at most 9 regions, got %d", len(specs))
	}
	if len(specs) == 0 {
		return errors.New("no regions")
	}
	for _, s := range specs {
		if s.Name == "" || strings.ContainsAny(s.Name, " /\\:") {
			return fmt.Errorf("region name %q is not valid", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("region %q listed twice", s.Name)
		}
		seen[s.Name] = true
		if s.Nodes < 1 || s.Nodes > 9 {
			return fmt.Errorf("region %q: %d nodes; want 1 to 9", s.Name, s.Nodes)
		}
	}
	return nil
}

// checkPorts fails with one clear error if an address the environment needs
// is taken.
func checkPorts(o Options) error {
	var addrs []string
	for ri, rs := range o.Regions {
		for n := 0; n < rs.Nodes; n++ {
			a := nodeAddress(ri+o.firstRegion, n)
			addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(CQLPort)), net.JoinHostPort(a, "7000"))
		}
	}
	if o.Secure {
		a := nodeAddress(secureRegionIndex, 0)
		addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(CQLPort)), net.JoinHostPort(a, "7000"))
	}
	if !o.NoKafka {
		addrs = append(addrs, net.JoinHostPort(kafkaHost, strconv.Itoa(KafkaPort)), net.JoinHostPort(kafkaHost, strconv.Itoa(KafkaControlPort)))
		if o.Secure {
			addrs = append(addrs, net.JoinHostPort(kafkaHost, strconv.Itoa(KafkaSecurePort)))
		}
	}
	// A server killed a moment ago may hold its sockets for a little while
	// after its pid is gone; give that a few seconds before failing.
	var taken []string
	for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		taken = taken[:0]
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				taken = append(taken, a)
				continue
			}
			ln.Close()
		}
		if len(taken) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(taken) > 0 {
		return fmt.Errorf("%w: %s (another Cassandra or Kafka, or an environment from an earlier run: `make down` stops ours; `ss -ltnp` shows who holds a port)",
			ErrPortInUse, strings.Join(taken, ", "))
	}
	return nil
}

// waitRing waits until every node of a multi-node region sees the others and
// a write at consistency ALL succeeds.
func waitRing(ctx context.Context, r localRegion, logf func(string, ...any)) error {
	start := time.Now()
	c := probeCluster(r.Hosts...)
	// Schema changes reach the peers a coordinator knows when it makes
	// them; a node that misses that push can take minutes to pull the
	// schema on a fresh ring. So: first every node must know all the
	// others (system.peers_v2), then the DDL is repeated, each attempt
	// through whichever node the driver picks (a node that missed the
	// keyspace creates it and pushes it), with short waits for agreement.
	// The probe table has a fixed id, so that creations on two nodes
	// agree.
	c.MaxWaitSchemaAgreement = 15 * time.Second
	var last error
	for {
		last = func() error {
			if err := peersKnown(ctx, r); err != nil {
				return err
			}
			s, err := c.CreateSession()
			if err != nil {
				return err
			}
			defer s.Close()
			ks := "tidemark_env_probe"
			if err := s.Query(fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class':'NetworkTopologyStrategy','%s':%d}`, ks, r.DC, len(r.nodes))).ExecContext(ctx); err != nil {
				return err
			}
			if err := s.AwaitSchemaAgreement(ctx); err != nil {
				return err
			}
			if err := s.Query(`CREATE TABLE IF NOT EXISTS ` + ks + `.probe (k int PRIMARY KEY, v int) WITH ID = 5e7c9f1a-3b2d-4c8e-9f60-7d1a2b3c4d5e`).ExecContext(ctx); err != nil {
				return err
			}
			if err := s.AwaitSchemaAgreement(ctx); err != nil {
				return err
			}
			return s.Query(`INSERT INTO ` + ks + `.probe (k, v) VALUES (1, 1)`).Consistency(gocql.All).ExecContext(ctx)
		}()
		if last == nil {
			logf("region %s: ring of %d nodes ready after %s", r.Name, len(r.nodes), time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		logf("region %s: waiting for the ring: %v", r.Name, last)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: region %s: nodes did not form a ring in time: %v", ErrStart, r.Name, last)
		case <-time.After(time.Second):
		}
	}
}

// probeCluster is the driver configuration of the readiness probes.
func probeCluster(hosts ...string) *gocql.ClusterConfig {
	c := gocql.NewCluster(hosts...)
	c.Logger = quietLogger{}
	c.ProtoVersion = 5
	c.Timeout = 5 * time.Second
	c.ConnectTimeout = 5 * time.Second
	return c
}

// peersKnown checks that every node of r lists all the others in
// system.peers_v2 (gossip has them joined).
func peersKnown(ctx context.Context, r localRegion) error {
	for _, h := range r.Hosts {
		c := probeCluster(h)
		c.DisableInitialHostLookup = true
		c.HostFilter = gocql.WhiteListHostFilter(h)
		s, err := c.CreateSession()
		if err != nil {
			return fmt.Errorf("node %s: %w", h, err)
		}
		n := 0
		iter := s.Query(`SELECT peer FROM system.peers_v2`).IterContext(ctx)
		var peer string
		for iter.Scan(&peer) {
			n++
		}
		err = iter.Close()
		s.Close()
		if err != nil {
			return fmt.Errorf("node %s: read peers: %w", h, err)
		}
		if n < len(r.Hosts)-1 {
			return fmt.Errorf("node %s knows %d of its %d peers", h, n, len(r.Hosts)-1)
		}
	}
	return nil
}

func (l *Local) nodeCount() int {
	n := 0
	for _, r := range l.regions {
		n += len(r.nodes)
	}
	if l.secureNode != nil {
		n++
	}
	return n
}

func (l *Local) processes() []*Process {
	var ps []*Process
	for _, r := range l.regions {
		for _, n := range r.nodes {
			ps = append(ps, n.Process)
		}
	}
	if l.secureNode != nil {
		ps = append(ps, l.secureNode.Process)
	}
	if l.broker != nil {
		ps = append(ps, l.broker.Process)
	}
	return ps
}

func (l *Local) stopAll(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range l.processes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Kill(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Close stops every server this environment started (by SIGKILL of each
// process group: the data is disposable) and removes the state file. An
// attached environment stops nothing.
func (l *Local) Close(ctx context.Context) error {
	if l.attached {
		return nil
	}
	err := l.stopAll(ctx)
	_ = os.Remove(statePath(l.dir))
	return err
}

// RestartNode starts a stopped or killed node again with its data, and waits
// until it answers CQL.
func (l *Local) RestartNode(ctx context.Context, n *Node) error {
	if n.Running() {
		return fmt.Errorf("%s is still running; Kill it first", n.Name)
	}
	if err := n.start(); err != nil {
		return err
	}
	_ = l.writeState()
	_, err := waitCQL(ctx, n.Process, n.CQLAddr(), n.probe)
	return err
}

// RestartKafka starts a stopped or killed broker again and waits until it
// answers metadata requests.
func (l *Local) RestartKafka(ctx context.Context) error {
	if l.broker == nil {
		return errors.New("this environment has no Kafka broker")
	}
	if l.broker.Running() {
		return errors.New("kafka is still running; Kill it first")
	}
	if err := l.broker.start(); err != nil {
		return err
	}
	_ = l.writeState()
	return waitKafka(ctx, l.broker.Process, l.broker.Addr, nil)
}

// ---- state file: lets `make down` clean up and tests attach to `make up` ----

type stateProc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// StartTicks is the process's start time (/proc/<pid>/stat), so that a
	// pid reused after a reboot is never mistaken for our server.
	StartTicks uint64   `json:"start_ticks"`
	Argv       []string `json:"argv"`
	Dir        string   `json:"dir"`
	OutFile    string   `json:"out_file"`
	LogFile    string   `json:"log_file"`
}

type stateNode struct {
	Index   int       `json:"index"`
	Address string    `json:"address"`
	Proc    stateProc `json:"proc"`
}

type stateRegion struct {
	Name  string      `json:"name"`
	DC    string      `json:"dc"`
	Hosts []string    `json:"hosts"`
	Nodes []stateNode `json:"nodes"`
}

type state struct {
	Started  time.Time `json:"started"`
	Detached bool      `json:"detached"`
	OwnerPid int       `json:"owner_pid"`
	// OwnerTicks is the owner's start time (see stateProc.StartTicks).
	OwnerTicks uint64        `json:"owner_ticks"`
	Regions    []stateRegion `json:"regions"`
	Kafka      *struct {
		Addr string    `json:"addr"`
		Proc stateProc `json:"proc"`
	} `json:"kafka,omitempty"`
	// Secure is the secure mode, when it runs: what clients need, and its
	// node.
	Secure *stateSecure `json:"secure,omitempty"`
}

type stateSecure struct {
	Secure
	Node stateNode `json:"node"`
}

func statePath(dir string) string { return filepath.Join(dir, "env.json") }

func procState(p *Process) stateProc {
	pid := p.Pid()
	return stateProc{Name: p.Name, Pid: pid, StartTicks: startTime(pid), Argv: p.argv, Dir: p.dir, OutFile: p.outFile, LogFile: p.LogFile}
}

func (l *Local) writeState() error {
	st := state{Started: l.started, Detached: l.detached, OwnerPid: os.Getpid(), OwnerTicks: startTime(os.Getpid())}
	for _, r := range l.regions {
		sr := stateRegion{Name: r.Name, DC: r.DC, Hosts: r.Hosts}
		for _, n := range r.nodes {
			sr.Nodes = append(sr.Nodes, stateNode{Index: n.Index, Address: n.Address, Proc: procState(n.Process)})
		}
		st.Regions = append(st.Regions, sr)
	}
	if n := l.secureNode; n != nil {
		st.Secure = &stateSecure{Secure: *l.secure, Node: stateNode{Index: n.Index, Address: n.Address, Proc: procState(n.Process)}}
	}
	if l.broker != nil {
		st.Kafka = &struct {
			Addr string    `json:"addr"`
			Proc stateProc `json:"proc"`
		}{l.broker.Addr, procState(l.broker.Process)}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(l.dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(l.dir))
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("corrupt state file %s: %w", statePath(dir), err)
	}
	return &st, nil
}

func (st *state) procs() []stateProc {
	var ps []stateProc
	for _, r := range st.Regions {
		for _, n := range r.Nodes {
			ps = append(ps, n.Proc)
		}
	}
	if st.Secure != nil {
		ps = append(ps, st.Secure.Node.Proc)
	}
	if st.Kafka != nil {
		ps = append(ps, st.Kafka.Proc)
	}
	return ps
}

// alive returns the recorded processes that still run (same pid and start
// time).
func (st *state) alive() []stateProc {
	var out []stateProc
	for _, p := range st.procs() {
		if sameProcess(p.Pid, p.StartTicks) {
			out = append(out, p)
		}
	}
	return out
}

func (st *state) anyAlive() bool { return len(st.alive()) > 0 }

// adopt makes a Process for a server started by another process (make up).
func adopt(sp stateProc, detached bool) *Process {
	p := &Process{Name: sp.Name, LogFile: sp.LogFile, argv: sp.Argv, dir: sp.Dir, outFile: sp.OutFile, attached: !detached}
	if sameProcess(sp.Pid, sp.StartTicks) {
		p.pid = sp.Pid
		p.done = make(chan struct{})
		done := p.done
		pid := sp.Pid
		go func() {
			for pidAlive(pid) {
				time.Sleep(200 * time.Millisecond)
			}
			p.mu.Lock()
			if p.pid == pid {
				p.pid = 0
			}
			p.mu.Unlock()
			close(done)
		}()
	}
	return p
}

// Attach connects to an environment started by another process (`make up`,
// or the Makefile's test target) in dir ("" = CacheDir()/run), after checking
// that every server answers. Close on the result stops nothing.
func Attach(ctx context.Context, dir string) (*Local, error) {
	if dir == "" {
		dir = filepath.Join(CacheDir(), "run")
	}
	st, err := readState(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", ErrNotRunning, dir)
		}
		return nil, err
	}
	// Servers a test run started die with it: attaching to them from another
	// process would lose them in the middle of this run.
	if !st.Detached && st.OwnerPid != os.Getpid() && sameProcess(st.OwnerPid, st.OwnerTicks) {
		return nil, fmt.Errorf("%w: the environment in %s belongs to another test run (pid %d) and stops when it ends; use `make up` for a shared one",
			ErrNotRunning, dir, st.OwnerPid)
	}
	l := &Local{dir: dir, detached: st.Detached, attached: true, started: st.Started, logf: func(string, ...any) {}}
	for _, sr := range st.Regions {
		lr := localRegion{Region: Region{Name: sr.Name, DC: sr.DC, Hosts: sr.Hosts}}
		for _, sn := range sr.Nodes {
			lr.nodes = append(lr.nodes, &Node{Region: sr.Name, Index: sn.Index, Address: sn.Address, Process: adopt(sn.Proc, st.Detached), dir: sn.Proc.Dir})
		}
		l.regions = append(l.regions, lr)
	}
	if st.Kafka != nil {
		l.broker = &Broker{Addr: st.Kafka.Addr, Process: adopt(st.Kafka.Proc, st.Detached), dir: st.Kafka.Proc.Dir}
	}
	if ss := st.Secure; ss != nil {
		sec := ss.Secure
		probe, err := sec.cql(sec.AdminUsername, sec.AdminPassword)
		if err != nil {
			return nil, fmt.Errorf("%w: %v (stale state in %s; `make down` cleans up)", ErrNotRunning, err, dir)
		}
		l.secure = &sec
		l.secureNode = &Node{Region: sec.Region.Name, Index: ss.Node.Index, Address: ss.Node.Address,
			Process: adopt(ss.Node.Proc, st.Detached), dir: ss.Node.Proc.Dir, probe: probe}
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nodes := []*Node{}
	for _, r := range l.regions {
		nodes = append(nodes, r.nodes...)
	}
	if l.secureNode != nil {
		nodes = append(nodes, l.secureNode)
	}
	for _, n := range nodes {
		if !n.Running() {
			return nil, fmt.Errorf("%w: %s is not running (stale state in %s; `make down` cleans up)", ErrNotRunning, n.Name, dir)
		}
		if _, err := releaseVersion(cctx, n.CQLAddr(), n.probe); err != nil {
			return nil, fmt.Errorf("%w: %s does not answer CQL: %v", ErrNotRunning, n.Name, err)
		}
	}
	if l.broker != nil {
		if err := kafkaReady(cctx, l.broker.Addr, nil); err != nil {
			return nil, fmt.Errorf("%w: kafka does not answer: %v", ErrNotRunning, err)
		}
	}
	if l.secure != nil {
		if err := l.secure.checkSecure(cctx, l.secureNode); err != nil {
			return nil, fmt.Errorf("%w: the secure mode: %v", ErrNotRunning, err)
		}
	}
	return l, nil
}

// Down stops every server recorded in dir's state file ("" = CacheDir()/run),
// whoever started them, and removes the state file. It returns the number of
// processes it stopped.
func Down(dir string) (int, error) {
	if dir == "" {
		dir = filepath.Join(CacheDir(), "run")
	}
	st, err := readState(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	alive := st.alive()
	for _, p := range alive {
		killPid(p.Pid)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range alive {
		for sameProcess(p.Pid, p.StartTicks) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if sameProcess(p.Pid, p.StartTicks) {
			return len(alive), fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.Pid)
		}
	}
	n := len(alive)
	return n, os.Remove(statePath(dir))
}
