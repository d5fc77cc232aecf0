package integration

// repaird over Kafka's SASL_SSL listener: its config names the CA
// (hints.tls), the SCRAM credentials (hints.sasl, the password from an
// environment variable) and an HMAC key (from an environment variable);
// it replays the signed hints a secure producer wrote.

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
)

func TestRepairdReplaysOverSASLSSL(t *testing.T) {
	start := time.Now()
	sec := secureEnv(t)
	ks := newKeyspace(t, "c")
	hintsTable(t, ks, "c")
	prefix := newTopicPrefix(t)
	secret := []byte("secure-secret-0123456789abcdef!!")
	kr, err := record.NewKeyring(record.KeyringConfig{Current: record.Key{ID: "k1", Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := hints.NewProducer(hints.ProducerConfig{
		Brokers: []string{sec.KafkaAddr}, TLS: secureTLS(t, sec, ""), SASL: scram512(sec), Keyring: kr,
		TopicPrefix: prefix, Partitions: 2, ReplicationFactor: 1, ProduceTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	deleteTopicsAtCleanup(t, prefix+"c", prefix+hints.DeadLetterSuffix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 20
	for i := 0; i < n; i++ {
		h := record.Hint{Target: "c", Origin: "a", Namespace: hintsNS, PK: fmt.Appendf(nil, "pk%03d", i), CK: []byte("ck"),
			Value: []byte("v"), Timestamp: time.Now().UnixMicro(), CreatedAt: time.Now()}
		if err := p.Hint(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TM_TEST_KAFKA_PASSWORD", sec.KafkaPassword)
	t.Setenv("TM_TEST_HINT_KEY", base64.StdEncoding.EncodeToString(secret))
	r := region(t, "c")
	yaml := fmt.Sprintf(`home: c
keyspace: %s
regions:
  - {name: c, contact_points: [%q], local_dc: %s}
hints:
  brokers: [%q]
  topic_prefix: %q
  group: %q
  tls: {ca_file: %s}
  sasl: {mechanism: SCRAM-SHA-256, username: %s, password_env: TM_TEST_KAFKA_PASSWORD}
  hmac_keys: [{id: k1, secret_env: TM_TEST_HINT_KEY}]
http: {listen: "127.0.0.1:0"}
`, ks, r.Hosts[0], r.DC, sec.KafkaAddr, prefix, prefix+"repaird", sec.CAFile, sec.KafkaUser)
	path := filepath.Join(t.TempDir(), "repaird.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI("validate", "--config", path); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errs)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := daemon.New(cfg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dm.Run(rctx) }()
	defer func() {
		rcancel()
		<-done
	}()
	c := directSession(t, "c", ks)
	eventually(t, 90*time.Second, "the hints are replayed over SASL_SSL", func() error {
		if got := countRows(t, c, ks); got != n {
			return fmt.Errorf("%d rows in c", got)
		}
		return nil
	})
	// The replayer counts a hint once its apply has returned: the last row
	// can be in c a moment before the count reaches n (CI saw 19 of 20).
	eventually(t, 10*time.Second, "the status counts every hint replayed", func() error {
		if hv := dm.Status().Hints; len(hv) != 1 || hv[0].Replayed != n {
			return fmt.Errorf("hints %+v", hv)
		}
		return nil
	})
	t.Logf("repaird over SASL_SSL: %v", time.Since(start).Round(time.Second))
}
