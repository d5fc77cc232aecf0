package integration

// Tests that prove the environment is real: Cassandra 5.0 in every region,
// regions are separate clusters, faults cut and heal, killed nodes come back
// with their data, and Kafka consumer-group offsets survive a broker restart.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/segmentio/kafka-go"

	"github.com/tidemark/tidemark/integration/env"
	"github.com/tidemark/tidemark/internal/cluster"
)

func checkReleaseVersions(t *testing.T, e env.Env) {
	t.Helper()
	if len(e.Regions()) < 3 {
		t.Fatalf("want at least 3 regions, have %d", len(e.Regions()))
	}
	for _, r := range e.Regions() {
		for _, h := range r.Hosts {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			s, err := cluster.Connect(ctx, cluster.Region{Name: r.Name, ContactPoints: []string{h}, LocalDC: r.DC}, "")
			cancel()
			if err != nil {
				t.Fatalf("region %s host %s: %v", r.Name, h, err)
			}
			var v, dc string
			err = s.Query(`SELECT release_version, data_center FROM system.local`).Scan(&v, &dc)
			s.Close()
			if err != nil {
				t.Fatalf("region %s host %s: %v", r.Name, h, err)
			}
			if !strings.HasPrefix(v, "5.0.") {
				t.Errorf("region %s host %s: release_version %s, want 5.0.x", r.Name, h, v)
			}
			if dc != r.DC {
				t.Errorf("region %s host %s: data_center %q, want %q", r.Name, h, dc, r.DC)
			}
		}
	}
}

func TestEnvReleaseVersionIs50InEveryRegion(t *testing.T) {
	t.Parallel()
	checkReleaseVersions(t, testEnv(t))
}

func TestEnvRegionsAreSeparateClusters(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "a", "b", "c")
	sessions := map[string]*gocql.Session{}
	for _, r := range []string{"a", "b", "c"} {
		s := directSession(t, r, ks)
		if err := s.Query(`CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text)`).Exec(); err != nil {
			t.Fatal(err)
		}
		sessions[r] = s
		// Each region's cluster knows only its own nodes.
		var peers int
		if err := s.Query(`SELECT count(*) FROM system.peers_v2`).Scan(&peers); err != nil {
			t.Fatal(err)
		}
		if want := len(region(t, r).Hosts) - 1; peers != want {
			t.Errorf("region %s: %d peers, want %d", r, peers, want)
		}
	}
	if err := sessions["a"].Query(`INSERT INTO kv (k, v) VALUES ('only-in-a', 'x')`).Exec(); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := sessions["a"].Query(`SELECT v FROM kv WHERE k = 'only-in-a'`).Scan(&v); err != nil || v != "x" {
		t.Fatalf("region a lost its own write: %q, %v", v, err)
	}
	for _, r := range []string{"b", "c"} {
		err := sessions[r].Query(`SELECT v FROM kv WHERE k = 'only-in-a'`).Scan(&v)
		if !errors.Is(err, gocql.ErrNotFound) {
			t.Errorf("region %s sees region a's write (err=%v): regions are not separate clusters", r, err)
		}
	}
}

// TestEnvCutRegionFailsWithinTimeoutAndHeals cuts region b behind its proxy
// in each way the fault package offers: a request fails within the session's
// timeout, and succeeds again once the cut heals.
func TestEnvCutRegionFailsWithinTimeoutAndHeals(t *testing.T) {
	t.Parallel()
	ks := newKeyspace(t, "b")
	setup := directSession(t, "b", ks)
	if err := setup.Query(`CREATE TABLE kv (k text PRIMARY KEY, v text)`).Exec(); err != nil {
		t.Fatal(err)
	}
	p := frontRegion(t, "b")
	cfg := proxiedRegion(t, "b", p)
	const timeout = 1 * time.Second
	cfg.Timeout = timeout
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	s, err := cluster.Connect(ctx, cfg, ks)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	// gocql can take long to close a session whose connections lived
	// through cuts (its control connection may be mid-reconnect); the
	// test must not hang on it.
	defer closeSessionWithin(t, s, 30*time.Second)
	write := func(v string) error {
		return s.Query(`INSERT INTO kv (k, v) VALUES ('k', ?)`, v).Consistency(gocql.LocalQuorum).Exec()
	}
	if err := write("before"); err != nil {
		t.Fatalf("healthy write through the proxy: %v", err)
	}
	// The session really goes through the proxy: every host it knows is a
	// proxy address.
	proxied := map[string]bool{}
	for _, a := range p.ContactPoints() {
		proxied[a] = true
	}
	cuts := []struct {
		name string
		cut  func() error
	}{
		{"blackhole", p.Blackhole},
		{"refuse", p.Refuse},
		{"reset", func() error { return p.ResetPeer(0) }},
	}
	for i, c := range cuts {
		if err := c.cut(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := write(fmt.Sprintf("during-%s", c.name))
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s: write succeeded through a cut region", c.name)
		}
		// The driver's own timeout (plus scheduling slack on 2 cores) bounds
		// how long a cut region can hold a caller.
		if took > 3*timeout {
			t.Errorf("%s: failed after %s, want within ~%s: %v", c.name, took, timeout, err)
		}
		if err := p.Heal(); err != nil {
			t.Fatal(err)
		}
		v := fmt.Sprintf("after-%d", i)
		eventually(t, 30*time.Second, c.name+": write after heal", func() error { return write(v) })
		var got string
		if err := setup.Query(`SELECT v FROM kv WHERE k = 'k'`).Scan(&got); err != nil || got != v {
			t.Fatalf("%s: region b has %q (%v), want %q", c.name, got, err, v)
		}
	}
}

// TestEnvKilledNodeComesBackWithData kills region c's node (SIGKILL, no
// clean shutdown), checks that the region is unreachable, restarts it and
// finds the data written before the kill. Not parallel: it takes a region
// down.
func TestEnvKilledNodeComesBackWithData(t *testing.T) {
	l := localEnv(t)
	ks := newKeyspace(t, "c")
	s := directSession(t, "c", ks)
	if err := s.Query(`CREATE TABLE kv (k int PRIMARY KEY, v text)`).Exec(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := s.Query(`INSERT INTO kv (k, v) VALUES (?, ?)`, i, fmt.Sprint("v", i)).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	// commitlog_sync is periodic (1 s in this environment, as Cassandra's
	// default is 10 s): a crash loses what was written after the last sync,
	// exactly as in production. Wait past one period so the rows are durable.
	time.Sleep(2500 * time.Millisecond)
	node := l.Nodes("c")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := node.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if node.Running() {
		t.Fatal("node still running after Kill")
	}
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	err := s.Query(`SELECT v FROM kv WHERE k = 1`).ExecContext(qctx)
	qcancel()
	if err == nil {
		t.Fatal("query to a killed region succeeded")
	}
	start := time.Now()
	if err := l.RestartNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Logf("node restarted in %s", time.Since(start).Round(100*time.Millisecond))
	eventually(t, 60*time.Second, "region c answers after restart", func() error {
		var n int
		if err := s.Query(`SELECT count(*) FROM kv`).Scan(&n); err != nil {
			return err
		}
		if n != 100 {
			return fmt.Errorf("%d rows after restart, want 100", n)
		}
		return nil
	})
}

// TestEnvKafkaConsumerGroupOffsetsSurviveRestart produces messages, consumes
// half in a consumer group with explicitly committed offsets, restarts the
// broker, and checks that the group resumes exactly after the last commit.
// Not parallel: it restarts the shared broker.
func TestEnvKafkaConsumerGroupOffsetsSurviveRestart(t *testing.T) {
	l := localEnv(t)
	brokers := l.KafkaBrokers()
	topic := newTopicPrefix(t) + "offsets"
	createTopic(t, topic, 1)
	group := topic + ".group"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	const n = 100
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint("m", i))}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	consume := func(count int) []string {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic, CommitInterval: 0, MaxWait: 200 * time.Millisecond})
		defer r.Close()
		var got []string
		for len(got) < count {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("fetch after %d messages: %v", len(got), err)
			}
			got = append(got, string(m.Value))
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	first := consume(n / 2)
	if first[0] != "m0" || first[len(first)-1] != fmt.Sprint("m", n/2-1) {
		t.Fatalf("first half: %v … %v", first[0], first[len(first)-1])
	}
	b := l.Broker()
	if err := b.Stop(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.RestartKafka(ctx); err != nil {
		t.Fatal(err)
	}
	second := consume(n / 2)
	if second[0] != fmt.Sprint("m", n/2) || second[len(second)-1] != fmt.Sprint("m", n-1) {
		t.Fatalf("after restart the group resumed at %s (want m%d) and ended at %s", second[0], n/2, second[len(second)-1])
	}
}
