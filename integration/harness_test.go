package integration

// The harness: one environment per test run, shared by every test; each test
// gets its own keyspaces, topics and fault proxies, so tests can run in
// parallel without seeing each other's data or faults.
//
// Which environment:
//   - an environment already running (`make up`, or `make test`, which starts
//     one before the tests): attached, and left running;
//   - otherwise one is started here and stopped when the tests end, also on
//     Ctrl-C (signal handler) or a crash (its JVMs die with this process);
//   - TIDEMARK_ENV=docker uses testcontainers instead (see containers_test.go).
//
// With CI=true a missing environment fails every test that needs it; without
// CI it skips them with the reason.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/integration/fault"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
)

var shared struct {
	env     env.Env
	local   *env.Local // nil for a docker environment
	proxies *fault.Server
	err     error
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashingStoreEnv); spec != "" {
		os.Exit(runCrashingStore(spec)) // the child of TestWatermarkAfterUncleanExit
	}
	os.Exit(runMain(m))
}

func inCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

func runMain(m *testing.M) int {
	flagList := strings.Join(os.Args, " ")
	// `go test -list` and unit-only runs need no servers.
	if strings.Contains(flagList, "-test.list") {
		return m.Run()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shared.proxies = fault.NewServer()

	var owned env.Env
	if os.Getenv("TIDEMARK_ENV") == "docker" {
		e, err := startContainers(ctx)
		shared.env, shared.err, owned = e, err, e
	} else if l, err := env.Attach(ctx, ""); err == nil {
		fmt.Fprintf(os.Stderr, "integration: attached to the running environment in %s\n", l.Dir())
		shared.env, shared.local = l, l
	} else {
		fmt.Fprintf(os.Stderr, "integration: no running environment (%v); starting one\n", err)
		start := time.Now()
		l, err := env.Start(ctx, env.Options{Secure: env.SecureByDefault(), Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "integration: "+f+"\n", a...)
		}})
		if err != nil {
			shared.err = err
		} else {
			fmt.Fprintf(os.Stderr, "integration: environment started in %s\n", time.Since(start).Round(100*time.Millisecond))
			shared.env, shared.local, owned = l, l, l
		}
	}
	if shared.err != nil {
		fmt.Fprintf(os.Stderr, "integration: ENVIRONMENT UNAVAILABLE: %v\n", shared.err)
		if inCI() {
			fmt.Fprintln(os.Stderr, "integration: CI=true, so every integration test will FAIL")
		}
	}
	if owned != nil {
		// Ctrl-C or SIGTERM: stop the servers, then exit.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		var once sync.Once
		stopEnv := func() {
			once.Do(func() {
				c, cc := context.WithTimeout(context.Background(), 30*time.Second)
				defer cc()
				_ = owned.Close(c)
			})
		}
		go func() {
			s, ok := <-sig
			if !ok {
				return
			}
			fmt.Fprintf(os.Stderr, "integration: %v: stopping the environment\n", s)
			stopEnv()
			os.Exit(130)
		}()
		defer func() {
			signal.Stop(sig)
			close(sig)
			stopEnv()
		}()
	}
	return m.Run()
}

// testEnv returns the shared environment, failing (CI) or skipping the test
// when there is none.
func testEnv(t testing.TB) env.Env {
	t.Helper()
	watchTest(t)
	if shared.env == nil {
		if inCI() {
			t.Fatalf("integration environment unavailable (CI=true, so this is a failure): %v", shared.err)
		}
		t.Skipf("integration environment unavailable: %v", shared.err)
	}
	return shared.env
}

// localEnv returns the local environment for tests that stop, kill or
// restart servers.
func localEnv(t testing.TB) *env.Local {
	t.Helper()
	testEnv(t)
	if shared.local == nil {
		t.Skip("this test controls server processes; the docker environment cannot (TIDEMARK_ENV=docker)")
	}
	return shared.local
}

// region returns the environment's region called name.
func region(t testing.TB, name string) env.Region {
	t.Helper()
	r, ok := env.RegionByName(testEnv(t), name)
	if !ok {
		if name == "q" {
			if inCI() {
				t.Fatal("region q (three nodes) is not running: start the environment with TIDEMARK_THREE_NODE_REGION=1 (make test does)")
			}
			t.Skip("region q (three nodes) is not running: start the environment with TIDEMARK_THREE_NODE_REGION=1")
		}
		t.Fatalf("no region %q in the environment", name)
	}
	return r
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// uniqueName returns a CQL/Kafka-safe name unique to this test and run:
// prefix, a slug of the test name and random hex. At most 48 characters.
func uniqueName(t testing.TB, prefix string) string {
	slug := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	maxSlug := 48 - len(prefix) - len(suffix) - 2
	if len(slug) > maxSlug {
		slug = slug[:maxSlug]
	}
	return strings.Trim(prefix+"_"+slug, "_") + "_" + suffix
}

// newKeyspace creates a fresh keyspace with the same name in each of the
// given regions (all regions when none are named), replicated to every node
// of the region, and drops it when the test ends.
func newKeyspace(t testing.TB, regions ...string) string {
	t.Helper()
	e := testEnv(t)
	if len(regions) == 0 {
		for _, r := range e.Regions() {
			if r.Name != "q" {
				regions = append(regions, r.Name)
			}
		}
	}
	ks := uniqueName(t, "ks")
	for _, name := range regions {
		r := region(t, name)
		s := adminSession(t, r)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := s.Query(schema.CreateKeyspace(ks, r.DC, len(r.Hosts))).ExecContext(ctx)
		if err == nil {
			err = s.AwaitSchemaAgreement(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("create keyspace %s in region %s: %v", ks, name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx)
		})
	}
	return ks
}

var admin struct {
	sync.Mutex
	sessions map[string]*gocql.Session
}

// adminSession is a long-lived direct session (no proxy, no keyspace) to a
// region, shared by the tests, for setup and verification.
func adminSession(t testing.TB, r env.Region) *gocql.Session {
	t.Helper()
	admin.Lock()
	defer admin.Unlock()
	if s := admin.sessions[r.Name]; s != nil {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cluster.Connect(ctx, cluster.Region{Name: r.Name, ContactPoints: r.Hosts, LocalDC: r.DC, Timeout: 10 * time.Second}, "")
	if err != nil {
		t.Fatalf("connect to region %s: %v", r.Name, err)
	}
	if admin.sessions == nil {
		admin.sessions = map[string]*gocql.Session{}
	}
	admin.sessions[r.Name] = s
	return s
}

// directSession opens a session straight to a region's nodes (bypassing any
// fault proxy) in keyspace ks, closed when the test ends.
func directSession(t testing.TB, name, ks string) *gocql.Session {
	t.Helper()
	r := region(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cluster.Connect(ctx, cluster.Region{Name: r.Name, ContactPoints: r.Hosts, LocalDC: r.DC, Timeout: 10 * time.Second}, ks)
	if err != nil {
		t.Fatalf("connect to region %s: %v", name, err)
	}
	t.Cleanup(s.Close)
	return s
}

// closeSessionWithin closes s, waiting at most d (then the close goes on in
// the background and the test logs it).
func closeSessionWithin(t testing.TB, s *gocql.Session, d time.Duration) {
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Logf("gocql session still closing after %v; left to finish in the background", d)
	}
}

// frontRegion puts fault proxies in front of every node of a region, for this
// test only. Connect through it with proxiedRegion.
func frontRegion(t testing.TB, name string) *fault.Proxy {
	t.Helper()
	r := region(t, name)
	p, err := shared.proxies.Front(uniqueName(t, "proxy_"+name), r.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// proxiedRegion is the cluster.Region of a region reached only through p.
func proxiedRegion(t testing.TB, name string, p *fault.Proxy) cluster.Region {
	t.Helper()
	r := region(t, name)
	return cluster.Region{
		Name:           r.Name,
		ContactPoints:  p.ContactPoints(),
		LocalDC:        r.DC,
		AddressMap:     p.AddressMap(),
		ConnectTimeout: 2 * time.Second,
		Timeout:        2 * time.Second,
	}
}

// newTopicPrefix returns a Kafka topic prefix unique to this test.
func newTopicPrefix(t testing.TB) string {
	return strings.ReplaceAll(uniqueName(t, "tm"), "_", "-") + "."
}

// kafkaAdmin is a client of the shared broker whose every request is
// bounded: a raw kafka.Conn has no deadline, and a broker that accepts
// connections but does not answer (restarting, stalled) would hold a test
// forever.
func kafkaAdmin(t testing.TB) *kafka.Client {
	t.Helper()
	brokers := testEnv(t).KafkaBrokers()
	if len(brokers) == 0 {
		t.Fatal("the environment has no Kafka broker")
	}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
}

// createTopic creates a topic on the shared broker (deleted at cleanup).
func createTopic(t testing.TB, topic string, partitions int) {
	t.Helper()
	c := kafkaAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	deleteTopicsAtCleanup(t, topic)
}

// deleteTopicsAtCleanup deletes topics when the test ends (best effort,
// bounded).
func deleteTopicsAtCleanup(t testing.TB, topics ...string) {
	c := kafkaAdmin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	})
}

// eventually polls cond until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- the secure mode: region "s" (TLS, password authentication) and
// Kafka's SASL_SSL listener ----

// secureEnv returns the secure mode of the shared environment, failing
// (CI) or skipping the test when it does not run.
func secureEnv(t testing.TB) *env.Secure {
	t.Helper()
	testEnv(t)
	var sec *env.Secure
	if shared.local != nil {
		sec = shared.local.Secure()
	}
	if sec == nil || sec.KafkaAddr == "" {
		msg := "the secure mode (region s, Kafka SASL_SSL) is not running: start the environment without TIDEMARK_SECURE=0 (make up and make test start it)"
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return sec
}

// secureTLS is a client TLS config trusting only the environment's CA.
// serverName, when not empty, is the name the server's certificate must
// carry: the node's address when the client dials a fault proxy.
func secureTLS(t testing.TB, sec *env.Secure, serverName string) *tls.Config {
	t.Helper()
	c, err := sec.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.ServerName = serverName
	return c
}

// secureRegion is the cluster.Region of region s, straight to its node,
// over TLS as the test role.
func secureRegion(t testing.TB, sec *env.Secure) cluster.Region {
	t.Helper()
	return cluster.Region{
		Name: sec.Region.Name, ContactPoints: sec.Region.Hosts, LocalDC: sec.Region.DC,
		Username: sec.Username, Password: sec.Password, TLS: secureTLS(t, sec, ""),
		Timeout: 10 * time.Second,
	}
}

// secureSession opens a session to region s (secureRegion) in keyspace ks,
// closed when the test ends.
func secureSession(t testing.TB, sec *env.Secure, ks string) *gocql.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := cluster.Connect(ctx, secureRegion(t, sec), ks)
	if err != nil {
		t.Fatalf("connect to region %s over TLS as %s: %v", sec.Region.Name, sec.Username, err)
	}
	t.Cleanup(s.Close)
	return s
}

// secureKeyspace creates keyspace ks (made by newKeyspace in the plain
// regions) in region s too, as the test role — with table ns of the
// default retention unless ns is empty — and drops it when the test ends.
func secureKeyspace(t testing.TB, sec *env.Secure, ks, ns string) {
	t.Helper()
	s := secureSession(t, sec, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ddl := []string{schema.CreateKeyspace(ks, sec.Region.DC, len(sec.Region.Hosts))}
	if ns != "" {
		ddl = append(ddl, schema.CreateTable(ks, ns, schema.DefaultRetention))
	}
	for _, q := range ddl {
		if err := s.Query(q).ExecContext(ctx); err != nil {
			t.Fatalf("region %s: %s: %v", sec.Region.Name, q, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx)
	})
}

// secureNodeAddress is the IP address of region s's node: the name its
// certificate carries.
func secureNodeAddress(t testing.TB, sec *env.Secure) string {
	t.Helper()
	host, _, err := net.SplitHostPort(sec.Region.Hosts[0])
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// frontSecure puts a fault proxy in front of region s's node, for this
// test only. TLS passes through it (toxiproxy forwards TCP); a client
// dialing the proxy must set its TLS ServerName to the node's address.
func frontSecure(t testing.TB, sec *env.Secure) *fault.Proxy {
	t.Helper()
	p, err := shared.proxies.Front(uniqueName(t, "proxy_"+sec.Region.Name), sec.Region.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
