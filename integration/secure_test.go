package integration

// The secure mode end to end: Cassandra over TLS with password
// authentication and permissions, Kafka over SASL_SSL. The environment has
// one secure region, "s"; these tests use it as the remote region that is
// cut, with the plain region "a" as home. One secure region already puts
// every secure hop on the path — the store's writes to s (TLS, a role,
// through a fault proxy), hints to Kafka over SASL_SSL, their replay over
// SASL_SSL into s through an authenticated TLS session, and repair
// reading and writing s over TLS — while a second secure node would cost
// every environment start another JVM. The home region's connection is
// the plain one every other test exercises.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/internal/cluster"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
	"github.com/tidemark/tidemark/store"
)

// secureProducer is a hint producer on the SASL_SSL listener. Its hints
// have 30 s, as the store in TestSecureWriteCutHintReplayRepair gives them (HintTimeout):
// the producer's ProduceTimeout bounds each hint too, and these tests are
// about security, not about a loaded CI run's Kafka latency.
func secureProducer(t testing.TB, sec *env.Secure, prefix string, creds *hints.SASL) *hints.Producer {
	t.Helper()
	p, err := hints.NewProducer(hints.ProducerConfig{
		Brokers: []string{sec.KafkaAddr}, TLS: secureTLS(t, sec, ""), SASL: creds,
		TopicPrefix: prefix, Partitions: 4, ReplicationFactor: 1, ProduceTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	deleteTopicsAtCleanup(t, prefix+sec.Region.Name, prefix+hints.DeadLetterSuffix)
	return p
}

// secureReplayer is a replayer of region s on the SASL_SSL listener.
func secureReplayer(t testing.TB, sec *env.Secure, prefix string, creds *hints.SASL, applier hints.Applier) *hints.Replayer {
	t.Helper()
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: []string{sec.KafkaAddr}, TLS: secureTLS(t, sec, ""), SASL: creds,
		TopicPrefix: prefix, Region: sec.Region.Name, GroupID: prefix + "replayer",
		Applier: applier, Partitions: 4, ReplicationFactor: 1,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func scram512(sec *env.Secure) *hints.SASL {
	return &hints.SASL{Mechanism: hints.SASLScramSHA512, Username: sec.KafkaUser, Password: sec.KafkaPassword}
}

// TestSecureWriteCutHintReplayRepair: the whole path over TLS and
// authentication. A store with home a and region s behind a fault proxy
// (TLS through the proxy, as the test role) writes while s is cut; the
// missed writes become hints on Kafka's SASL_SSL listener (SCRAM-SHA-512);
// a replayer (SCRAM-SHA-256) applies them through an authenticated TLS
// session that also goes through the proxy, pausing until the cut heals;
// then repair, reading a plainly and s over TLS, copies the one row whose
// hint was lost, and the regions hold the same rows.
func TestSecureWriteCutHintReplayRepair(t *testing.T) {
	t.Parallel()
	sec := secureEnv(t)
	const n = 60
	ks := newKeyspace(t, "a")
	secureKeyspace(t, sec, ks, "")
	prefix := newTopicPrefix(t)
	prod := &storedHints{p: secureProducer(t, sec, prefix, scram512(sec))}

	proxy := frontSecure(t, sec)
	// Through the proxy the driver dials the proxy's address: the certificate
	// names the node, so the TLS config names it too.
	viaProxy := secureTLS(t, sec, secureNodeAddress(t, sec))
	ra := region(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{
		Regions: []store.RegionConfig{
			{Name: "a", ContactPoints: ra.Hosts, LocalDC: ra.DC},
			{Name: sec.Region.Name, ContactPoints: proxy.ContactPoints(), LocalDC: sec.Region.DC, AddressMap: proxy.AddressMap(),
				Username: sec.Username, Password: sec.Password, TLS: viaProxy},
		},
		Home: "a", Keyspace: ks, Timeout: 2 * time.Second, ConnectTimeout: 30 * time.Second,
		HintSink: prod, HintTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatalf("store.Open with region s over TLS: %v", err)
	}
	defer func() { _ = closeStore(t, st) }()
	ns, err := st.CreateNamespace(ctx, hintsNS)
	if err != nil {
		t.Fatalf("CreateNamespace (in region s as role %s): %v", sec.Username, err)
	}
	sa, ss := directSession(t, "a", ks), secureSession(t, sec, ks)

	// Healthy: a write reaches s over TLS through the proxy.
	if err := ns.Put(ctx, []byte("before"), []byte("-"), []byte("v0")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the first write reaches s", func() error {
		if c := countRows(t, ss, ks); c != 1 {
			return fmt.Errorf("s has %d rows", c)
		}
		return nil
	})

	// The replayer's session goes through the proxy too, opened while s
	// answers.
	rs := proxiedSecureRegion(t, sec, proxy)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	replaySession, err := cluster.Connect(cctx, rs, ks)
	ccancel()
	if err != nil {
		t.Fatalf("replay session to s through the proxy: %v", err)
	}
	defer closeSessionWithin(t, replaySession, 30*time.Second)

	if err := proxy.Refuse(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pk, ck := fmt.Appendf(nil, "p%03d", i/4), fmt.Appendf(nil, "c%d", i%4)
		var err error
		switch i % 3 {
		case 0:
			err = ns.Put(ctx, pk, ck, fmt.Appendf(nil, "v%d", i))
		case 1:
			err = ns.Put(ctx, pk, ck, fmt.Appendf(nil, "t%d", i), store.WithTTL(time.Hour))
		default:
			err = ns.Delete(ctx, pk, ck)
		}
		if err != nil {
			t.Fatalf("write %d with s cut: %v", i, err)
		}
	}
	eventually(t, 2*time.Minute, "every missed write hinted over SASL_SSL", func() error {
		if got, failed, last := prod.counts(); got != n {
			return fmt.Errorf("%d hints for s stored, %d not (last error: %v)", got, failed, last)
		}
		return nil
	})
	// A write whose hint was lost (Kafka down at the time, say): only a
	// has it, and only repair can bring it to s.
	lostTS := time.Now().UnixMicro()
	if err := sa.Query(schema.Insert(ks, hintsNS), schema.InsertValues([]byte("lost"), []byte("-"), schema.RowCells(false, []byte("only-in-a"), 0), lostTS, 0)...).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if c := countRows(t, ss, ks); c != 1 {
		t.Fatalf("cut region s has %d rows, want the 1 written before the cut", c)
	}

	// Replay starts while s is still cut: it pauses, then applies once
	// the cut heals.
	r := secureReplayer(t, sec, prefix, &hints.SASL{Mechanism: hints.SASLScramSHA256, Username: sec.KafkaUser, Password: sec.KafkaPassword},
		hints.NewCQLApplier(replaySession, ks))
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	err = r.EnsureTopics(ectx)
	ecancel()
	if err != nil {
		t.Fatalf("EnsureTopics over SASL_SSL: %v", err)
	}
	runReplayer(t, r)
	time.Sleep(time.Second)
	if err := proxy.Heal(); err != nil {
		t.Fatal(err)
	}
	if a := readTable(t, sa, ks); len(a) != n+2 {
		t.Fatalf("a has %d rows, want %d", len(a), n+2)
	}
	eventually(t, 3*time.Minute, "s holds every hinted write", func() error {
		a := readTable(t, sa, ks) // read again each time: TTLs tick
		delete(a, "lost/-")
		if d := diffTables(a, readTable(t, ss, ks)); d != "" {
			return errors.New(d)
		}
		return nil
	})

	// Repair over TLS: digest scans of a (plain) and s (TLS, test role).
	regions := make([]repair.Region, 0, 2)
	for _, x := range []struct {
		name string
		s    *gocql.Session
	}{{"a", sa}, {sec.Region.Name, ss}} {
		cr, err := repair.NewCQLRegion(x.s, ks)
		if err != nil {
			t.Fatal(err)
		}
		regions = append(regions, repair.Region{Name: x.name, Reader: cr, Writer: cr})
	}
	rep, err := repair.New(regions, repair.Options{Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	report, err := rep.Run(ctx, hintsNS)
	if err != nil {
		t.Fatalf("repair across a and s: %v", err)
	}
	if !report.Complete || report.RowsWritten != 1 {
		t.Fatalf("repair report %+v; want complete, 1 row written (the lost one)", report)
	}
	if d := diffTables(readTable(t, sa, ks), readTable(t, ss, ks)); d != "" {
		t.Fatalf("after repair: %s", d)
	}
}

// storedHints is a hint sink that counts the hints its producer stored and did not.
type storedHints struct {
	p        *hints.Producer
	mu       sync.Mutex
	ok, fail int
	last     error
}

func (c *storedHints) Hint(ctx context.Context, h record.Hint) error {
	err := c.p.Hint(ctx, h)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.fail++
		c.last = err
	} else {
		c.ok++
	}
	return err
}

func (c *storedHints) counts() (ok, failed int, last error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok, c.fail, c.last
}

// proxiedSecureRegion is region s reached only through p, over TLS (the
// certificate checked against the node's address) as the test role.
func proxiedSecureRegion(t testing.TB, sec *env.Secure, p interface {
	ContactPoints() []string
	AddressMap() map[string]string
}) cluster.Region {
	t.Helper()
	return cluster.Region{
		Name: sec.Region.Name, ContactPoints: p.ContactPoints(), LocalDC: sec.Region.DC, AddressMap: p.AddressMap(),
		Username: sec.Username, Password: sec.Password, TLS: secureTLS(t, sec, secureNodeAddress(t, sec)),
		ConnectTimeout: 2 * time.Second, Timeout: 2 * time.Second,
	}
}

// proxyHost is the IP address a client of p dials.
func proxyHost(t testing.TB, p interface{ ContactPoints() []string }) string {
	t.Helper()
	host, _, err := net.SplitHostPort(p.ContactPoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// oneClearError checks that err is a single short message naming its
// cause.
func oneClearError(t *testing.T, what string, err error, cause string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("%s: no error", what)
	case !strings.Contains(err.Error(), cause):
		t.Errorf("%s: %q does not name the cause (%q)", what, err, cause)
	case strings.Count(err.Error(), "\n") > 0 || len(err.Error()) > 600:
		t.Errorf("%s: not one short message: %q", what, err)
	}
}

// TestSecureCassandraRefusals: a wrong password, an unknown role, a
// missing password, an untrusted certificate and a certificate for
// another address each fail the connection at once with one error naming
// the cause, which cluster.Classify calls a refusal (never hinted, never
// retried as an outage).
func TestSecureCassandraRefusals(t *testing.T) {
	t.Parallel()
	sec := secureEnv(t)
	proxy := frontSecure(t, sec)
	cases := []struct {
		name  string
		mod   func(*cluster.Region)
		cause string
	}{
		{"wrong password", func(r *cluster.Region) { r.Password = "not-" + sec.Password },
			"Provided username " + sec.Username + " and/or password are incorrect"},
		{"unknown role", func(r *cluster.Region) { r.Username = "nobody" }, "Provided username nobody and/or password are incorrect"},
		{"no credentials", func(r *cluster.Region) { r.Username, r.Password = "", "" }, "authentication required"},
		{"untrusted certificate (no CA)", func(r *cluster.Region) { r.TLS = secureTLS(t, sec, ""); r.TLS.RootCAs = nil },
			"x509: certificate signed by unknown authority"},
		{"proxy address, no ServerName", func(r *cluster.Region) {
			pr := proxiedSecureRegion(t, sec, proxy)
			pr.TLS.ServerName = ""
			*r = pr
		}, "x509: certificate is valid for " + secureNodeAddress(t, sec) + ", not " + proxyHost(t, proxy)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := secureRegion(t, sec)
			c.mod(&r)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			s, err := cluster.Connect(ctx, r, "")
			if err == nil {
				s.Close()
			}
			oneClearError(t, c.name, err, c.cause)
			if k := cluster.Classify(ctx, err); k != cluster.Refused {
				t.Errorf("Classify(%v) = %v, want %v", err, k, cluster.Refused)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("refusal took %s", took)
			}
		})
	}
	// The authorizer works: the test role is no superuser.
	s := secureSession(t, sec, "")
	err := s.Query(`CREATE ROLE IF NOT EXISTS tidemark_intruder WITH PASSWORD = 'x' AND LOGIN = true`).Exec()
	var unauthorized *gocql.RequestErrUnauthorized
	if !errors.As(err, &unauthorized) || cluster.Classify(context.Background(), err) != cluster.Refused {
		t.Errorf("role %s created a role: %v; want Unauthorized, a refusal", sec.Username, err)
	}
}

// TestSecureKafkaRefusals: a wrong password, an unknown user, an untrusted
// certificate and a plaintext client on the SASL_SSL listener each give
// one error naming the cause and wrapping hints.ErrAuthentication (from a
// producer's hint and from a replayer's EnsureTopics); a missing user name
// is refused by the config.
func TestSecureKafkaRefusals(t *testing.T) {
	t.Parallel()
	sec := secureEnv(t)
	good := scram512(sec)
	cases := []struct {
		name  string
		tls   bool
		creds *hints.SASL
		cause string
	}{
		{"wrong password", true, &hints.SASL{Username: sec.KafkaUser, Password: "not-" + sec.KafkaPassword},
			"Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"},
		{"unknown user", true, &hints.SASL{Mechanism: hints.SASLScramSHA256, Username: "nobody", Password: "x"},
			"invalid credentials with SASL mechanism SCRAM-SHA-256"},
		{"wrong PLAIN password", true, &hints.SASL{Mechanism: hints.SASLPlain, Username: sec.KafkaUser, Password: "x"},
			"Invalid username or password"},
		{"untrusted certificate", false, good, "x509: certificate signed by unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := newTopicPrefix(t)
			tc := secureTLS(t, sec, "")
			if !c.tls {
				tc.RootCAs = nil // the system's roots: not the environment's CA
			}
			p, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{sec.KafkaAddr}, TLS: tc, SASL: c.creds,
				TopicPrefix: prefix, ReplicationFactor: 1, ProduceTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = p.Hint(ctx, record.Hint{Target: sec.Region.Name, Namespace: hintsNS, PK: []byte("k"), Value: []byte("v"), Timestamp: time.Now().UnixMicro()})
			oneClearError(t, "producer", err, c.cause)
			if !errors.Is(err, hints.ErrAuthentication) || !errors.Is(err, hints.ErrUnavailable) {
				t.Errorf("producer: %v; want ErrAuthentication (an ErrUnavailable)", err)
			}

			r, err := hints.NewReplayer(hints.ReplayerConfig{Brokers: []string{sec.KafkaAddr}, TLS: tc, SASL: c.creds,
				TopicPrefix: prefix, Region: sec.Region.Name, ReplicationFactor: 1,
				Applier: hints.ApplierFunc(func(context.Context, record.Hint) error { return nil })})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			err = r.EnsureTopics(ctx)
			oneClearError(t, "replayer", err, c.cause)
			if !errors.Is(err, hints.ErrAuthentication) {
				t.Errorf("replayer: %v; want ErrAuthentication", err)
			}
		})
	}
	t.Run("plaintext client", func(t *testing.T) {
		p, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{sec.KafkaAddr}, SASL: good,
			TopicPrefix: newTopicPrefix(t), ReplicationFactor: 1, ProduceTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = p.Hint(ctx, record.Hint{Target: sec.Region.Name, Namespace: hintsNS, PK: []byte("k"), Value: []byte("v"), Timestamp: time.Now().UnixMicro()})
		oneClearError(t, "plaintext producer", err, "broker appears to be expecting TLS")
		if !errors.Is(err, hints.ErrAuthentication) {
			t.Errorf("plaintext producer: %v; want ErrAuthentication", err)
		}
	})
	t.Run("missing user name", func(t *testing.T) {
		_, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{sec.KafkaAddr}, TLS: secureTLS(t, sec, ""),
			SASL: &hints.SASL{Password: sec.KafkaPassword}})
		oneClearError(t, "config", err, "SASL.Username is empty")
		if !errors.Is(err, hints.ErrInvalidConfig) {
			t.Errorf("config: %v; want ErrInvalidConfig", err)
		}
	})
}

// TestEnvSecureMode: the secure mode is what the environment says: region
// s takes TLS only, it is not among the plain regions, every SASL
// mechanism of the SASL_SSL listener logs in, and an environment attached
// from its state file sees the same secure mode.
func TestEnvSecureMode(t *testing.T) {
	t.Parallel()
	sec := secureEnv(t)
	if _, ok := env.RegionByName(testEnv(t), sec.Region.Name); ok {
		t.Errorf("region %s is among the plain regions", sec.Region.Name)
	}
	// A plaintext client gets no session.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain := secureRegion(t, sec)
	plain.TLS = nil
	if s, err := cluster.Connect(ctx, plain, ""); err == nil {
		s.Close()
		t.Fatal("region s accepted a plaintext client: TLS is optional")
	}
	var v string
	if err := secureSession(t, sec, "").Query(`SELECT release_version FROM system.local`).ScanContext(ctx, &v); err != nil || !strings.HasPrefix(v, "5.0.") {
		t.Fatalf("region s over TLS: release_version %q, %v", v, err)
	}

	for _, m := range env.KafkaMechanisms {
		mech := hints.SASLMechanism(m)
		t.Run(m, func(t *testing.T) {
			prefix := newTopicPrefix(t)
			p := secureProducer(t, sec, prefix, &hints.SASL{Mechanism: mech, Username: sec.KafkaUser, Password: sec.KafkaPassword})
			if err := p.Hint(ctx, record.Hint{Target: sec.Region.Name, Namespace: hintsNS, PK: []byte("k"), Value: []byte(m), Timestamp: time.Now().UnixMicro()}); err != nil {
				t.Fatalf("hint over SASL_SSL with %s: %v", m, err)
			}
		})
	}
	// The broker advertises the SASL_SSL address to SASL_SSL clients.
	d, err := sec.KafkaDialer()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.DialContext(ctx, "tcp", sec.KafkaAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	brokers, err := conn.Brokers()
	conn.Close()
	if err != nil || len(brokers) != 1 || fmt.Sprintf("%s:%d", brokers[0].Host, brokers[0].Port) != sec.KafkaAddr {
		t.Errorf("brokers seen on SASL_SSL: %v (%v); want %s", brokers, err, sec.KafkaAddr)
	}

	attached, err := env.Attach(ctx, shared.local.Dir())
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if got := attached.Secure(); got == nil || !reflect.DeepEqual(*got, *sec) {
		t.Errorf("attached environment's secure mode %+v, want %+v", got, sec)
	}
}
