package env

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSecurePlanCertificates: the CA signs a certificate for the secure
// node's address and one for Kafka's, each verifying for its own address
// only, and the keystores hold the key first, then the chain.
func TestSecurePlanCertificates(t *testing.T) {
	dir := t.TempDir()
	p, err := planSecure(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := p.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		keystore, good, bad string
	}{
		{p.nodeKeystore, "127.0.0.71", "127.0.0.1"},
		{p.kafkaKeystore, "127.0.0.1", "127.0.0.71"},
	} {
		b, err := os.ReadFile(c.keystore)
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(c.keystore); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", c.keystore, fi.Mode().Perm())
		}
		first, rest := pem.Decode(b)
		if first == nil || first.Type != "PRIVATE KEY" {
			t.Fatalf("%s does not start with a PKCS #8 private key", c.keystore)
		}
		pair, err := tls.X509KeyPair(rest, b)
		if err != nil {
			t.Fatalf("%s: %v", c.keystore, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		opts := x509.VerifyOptions{Roots: pool, DNSName: c.good, CurrentTime: time.Now()}
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("%s: certificate does not verify for %s: %v", c.keystore, c.good, err)
		}
		opts.DNSName = c.bad
		if _, err := leaf.Verify(opts); err == nil {
			t.Errorf("%s: certificate verifies for %s too", c.keystore, c.bad)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: c.good}); err == nil {
			t.Errorf("%s: verifies without the CA", c.keystore)
		}
	}
	if p.Password == p.KafkaPassword || len(p.Password) != 32 {
		t.Errorf("passwords %q and %q: want two random 128-bit secrets", p.Password, p.KafkaPassword)
	}
	q, err := planSecure(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	if q.KafkaAddr != "" || q.kafkaKeystore != "" || q.Password == p.Password {
		t.Errorf("a plan without Kafka: %+v", q)
	}
}

// TestSecureServerConfigs: the settings verified on Cassandra 5.0.8 and
// Kafka 3.9.2 (docs/development.md, "Secure mode") are the ones written.
func TestSecureServerConfigs(t *testing.T) {
	p := &securePlan{nodeKeystore: "/tls/cassandra-s.pem", kafkaKeystore: "/tls/kafka.pem"}
	p.KafkaUser, p.KafkaPassword = "tidemark", "0123abcd"
	yaml := p.cassandraYAML()
	for _, want := range []string{
		"authenticator: PasswordAuthenticator\n", "authorizer: CassandraAuthorizer\n",
		"client_encryption_options:\n  enabled: true\n  optional: false\n",
		"class_name: org.apache.cassandra.security.PEMBasedSslContextFactory\n", "  keystore: /tls/cassandra-s.pem\n",
	} {
		if !strings.Contains(yaml, want) {
			t.Errorf("cassandra.yaml lacks %q:\n%s", want, yaml)
		}
	}
	props := kafkaSpec{dir: "/k", secure: p.kafka()}.properties()
	for _, want := range []string{
		"listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093,SASL_SSL://127.0.0.1:29094\n",
		"advertised.listeners=PLAINTEXT://127.0.0.1:29092,SASL_SSL://127.0.0.1:29094\n",
		"inter.broker.listener.name=PLAINTEXT\n",
		"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL\n",
		"listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN\n",
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n",
		`listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tidemark="0123abcd";` + "\n",
		"listener.name.sasl_ssl.ssl.keystore.type=PEM\n", "listener.name.sasl_ssl.ssl.keystore.location=/tls/kafka.pem\n",
	} {
		if !strings.Contains(props, want) {
			t.Errorf("server.properties lacks %q:\n%s", want, props)
		}
	}
	plain := kafkaSpec{dir: "/k"}.properties()
	if strings.Contains(plain, "SASL") || !strings.Contains(plain, "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093\n") {
		t.Errorf("without the secure mode the broker changed:\n%s", plain)
	}
}

// TestSecureStateRoundTrips: what Attach reads of the secure mode is what
// Start wrote.
func TestSecureStateRoundTrips(t *testing.T) {
	dir := t.TempDir()
	p, err := planSecure(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	node := &Node{Region: SecureRegionName, Address: "127.0.0.71", Process: &Process{Name: "cassandra s/0", dir: filepath.Join(dir, "s")}}
	l := &Local{dir: dir, started: time.Now(), secure: &p.Secure, secureNode: node}
	if err := l.writeState(); err != nil {
		t.Fatal(err)
	}
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Secure == nil || !reflect.DeepEqual(st.Secure.Secure, p.Secure) || st.Secure.Node.Address != "127.0.0.71" {
		t.Fatalf("state's secure mode %+v, want %+v", st.Secure, p.Secure)
	}
	if ps := st.procs(); len(ps) != 1 || ps[0].Name != "cassandra s/0" {
		t.Errorf("Down would stop %v; want the secure node", ps)
	}
}

func TestSecureModeLeavesRoomForItsRegion(t *testing.T) {
	regions := []RegionSpec{{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}, {"e", 1}, {"f", 1}, {"g", 1}}
	_, err := Start(t.Context(), Options{Regions: regions, Secure: true, NoKafka: true, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "at most 6 regions with the secure mode") {
		t.Fatalf("Start = %v; want a refusal naming the secure region's addresses", err)
	}
}

func TestSecureByDefault(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1": true, "true": true, "0": false, "false": false, "junk": true} {
		t.Setenv("TIDEMARK_SECURE", v)
		if got := SecureByDefault(); got != want {
			t.Errorf("TIDEMARK_SECURE=%q: %v, want %v", v, got, want)
		}
	}
}
