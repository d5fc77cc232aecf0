package env

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// The secure mode: a Cassandra region that takes only TLS connections from
// password-authenticated roles, and a SASL_SSL listener on the Kafka
// broker, next to the plain regions and listener the other tests use.
// Its CA, certificates and passwords are made anew at every start.

// SecureRegionName is the name, and data center, of the secure region.
const SecureRegionName = "s"

// secureRegionIndex is the secure region's address block (nodeAddress):
// 127.0.0.71. The plain regions use the blocks from index 0 up; the tests
// of start failures use index 8.
const secureRegionIndex = 6

// KafkaMechanisms are the SASL mechanisms of the SASL_SSL listener;
// Secure.KafkaUser can log in with each.
var KafkaMechanisms = []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}

// Cassandra's default superuser, which exists as soon as a node with
// PasswordAuthenticator starts (with -Dcassandra.superuser_setup_delay_ms=0).
const (
	cassandraSuperuser         = "cassandra"
	cassandraSuperuserPassword = "cassandra"
)

// SecureByDefault reports whether `tidemark-env up` and the integration
// tests start the secure mode: yes, unless TIDEMARK_SECURE is a false
// value ("0", "false").
func SecureByDefault() bool {
	v, err := strconv.ParseBool(os.Getenv("TIDEMARK_SECURE"))
	return err != nil || v
}

// Secure is what a client needs to reach the secure mode of an
// environment.
type Secure struct {
	// Region is the secure region "s": one node (single-node cluster
	// tidemark-s, data center s) that takes only TLS connections
	// (client_encryption_options enabled, not optional) and checks
	// passwords and permissions (PasswordAuthenticator,
	// CassandraAuthorizer). It is not one of Env.Regions: plain clients
	// cannot use it.
	Region Region `json:"region"`
	// CAFile is the PEM certificate of the environment's throwaway CA. It
	// signed the certificate of region s's node (for its address only)
	// and of Kafka's SASL_SSL listener (for 127.0.0.1 and localhost).
	CAFile string `json:"ca_file"`
	// Username and Password are the Cassandra role made for tests: LOGIN,
	// not a superuser, with ALL PERMISSIONS ON ALL KEYSPACES.
	Username string `json:"username"`
	Password string `json:"password"`
	// AdminUsername and AdminPassword are Cassandra's default superuser.
	AdminUsername string `json:"admin_username"`
	AdminPassword string `json:"admin_password"`
	// KafkaAddr is the SASL_SSL bootstrap address; empty without Kafka.
	KafkaAddr string `json:"kafka_addr"`
	// KafkaUser and KafkaPassword log in to KafkaAddr with any of
	// KafkaMechanisms (SCRAM-SHA-512 and SCRAM-SHA-256 users made when
	// the storage was formatted; PLAIN in the listener's JAAS config).
	KafkaUser     string `json:"kafka_user"`
	KafkaPassword string `json:"kafka_password"`
}

// CAPool returns a certificate pool holding only the environment's CA.
func (s *Secure) CAPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("the secure mode's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the secure mode's CA: no certificate in %s", s.CAFile)
	}
	return pool, nil
}

// TLSConfig returns a client TLS config that trusts only the environment's
// CA (TLS 1.2 or later). ServerName is empty: clients check the address
// they dial against the certificate.
func (s *Secure) TLSConfig() (*tls.Config, error) {
	pool, err := s.CAPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// KafkaDialer returns a kafka-go dialer for KafkaAddr: TLS with the CA and
// SCRAM-SHA-512 as KafkaUser.
func (s *Secure) KafkaDialer() (*kafka.Dialer, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	m, err := scram.Mechanism(scram.SHA512, s.KafkaUser, s.KafkaPassword)
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: 5 * time.Second, TLS: tc, SASLMechanism: m}, nil
}

// cql is the probe option that connects to the secure node over TLS as
// user.
func (s *Secure) cql(user, password string) (cqlOption, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	return func(c *gocql.ClusterConfig) {
		c.SslOpts = &gocql.SslOptions{Config: tc}
		c.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
	}, nil
}

// securePlan is the secure mode being prepared: its public description,
// the node's keystore and the Kafka listener's.
type securePlan struct {
	Secure
	nodeKeystore, kafkaKeystore string
}

// planSecure makes the CA, the certificates (under dir/tls) and the
// passwords of a secure mode.
func planSecure(dir string, withKafka bool) (*securePlan, error) {
	ca, err := newPKI()
	if err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil {
		return nil, err
	}
	addr := nodeAddress(secureRegionIndex, 0)
	p := &securePlan{Secure: Secure{
		Region:        Region{Name: SecureRegionName, DC: SecureRegionName, Hosts: []string{fmt.Sprintf("%s:%d", addr, CQLPort)}},
		CAFile:        filepath.Join(tlsDir, "ca.crt"),
		Username:      "tidemark",
		Password:      randomSecret(),
		AdminUsername: cassandraSuperuser,
		AdminPassword: cassandraSuperuserPassword,
	}}
	if err := os.WriteFile(p.CAFile, ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	node, err := ca.issue([]string{addr})
	if err != nil {
		return nil, err
	}
	if p.nodeKeystore, err = node.write(tlsDir, "cassandra-"+SecureRegionName); err != nil {
		return nil, err
	}
	if withKafka {
		k, err := ca.issue([]string{kafkaHost}, "localhost")
		if err != nil {
			return nil, err
		}
		if p.kafkaKeystore, err = k.write(tlsDir, "kafka"); err != nil {
			return nil, err
		}
		p.KafkaAddr = fmt.Sprintf("%s:%d", kafkaHost, KafkaSecurePort)
		p.KafkaUser, p.KafkaPassword = "tidemark", randomSecret()
	}
	return p, nil
}

// randomSecret is a throwaway password: 128 random bits in hex (no
// character that needs quoting in YAML, JAAS or CQL).
func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cassandraYAML is what the secure node adds to its cassandra.yaml:
// password authentication, permissions, and client TLS that is required
// (optional: false), from the PEM keystore (the key, then the chain).
func (p *securePlan) cassandraYAML() string {
	return strings.Join([]string{
		"authenticator: PasswordAuthenticator",
		"authorizer: CassandraAuthorizer",
		"role_manager: CassandraRoleManager",
		"client_encryption_options:",
		"  enabled: true",
		"  optional: false",
		"  require_client_auth: false",
		"  ssl_context_factory:",
		"    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory",
		"  keystore: " + p.nodeKeystore,
		"",
	}, "\n")
}

func (p *securePlan) kafka() *kafkaSecurity {
	return &kafkaSecurity{keystore: p.kafkaKeystore, user: p.KafkaUser, password: p.KafkaPassword}
}

// setupRoles makes the test role on the secure node, as the superuser, and
// checks that it can log in.
func (s *Secure) setupRoles(ctx context.Context, n *Node) error {
	as, err := s.cql(s.AdminUsername, s.AdminPassword)
	if err != nil {
		return err
	}
	c := probeCluster(n.CQLAddr())
	c.DisableInitialHostLookup = true
	as(c)
	sess, err := c.CreateSession()
	if err != nil {
		return fmt.Errorf("%w: %s: connect as %s: %v", ErrStart, n.Name, s.AdminUsername, err)
	}
	defer sess.Close()
	for _, q := range []string{
		fmt.Sprintf(`CREATE ROLE IF NOT EXISTS %s WITH PASSWORD = '%s' AND LOGIN = true`, s.Username, s.Password),
		fmt.Sprintf(`GRANT ALL PERMISSIONS ON ALL KEYSPACES TO %s`, s.Username),
	} {
		if err := sess.Query(q).ExecContext(ctx); err != nil {
			return fmt.Errorf("%w: %s: %s: %v", ErrStart, n.Name, strings.SplitN(q, " WITH", 2)[0], err)
		}
	}
	user, err := s.cql(s.Username, s.Password)
	if err != nil {
		return err
	}
	// The new role's credentials may take a moment to be readable.
	for {
		_, err := releaseVersion(ctx, n.CQLAddr(), user)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: role %s cannot log in: %v", ErrStart, n.Name, s.Username, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkSecure checks that the secure mode answers: the node with the test
// role over TLS, the broker's SASL_SSL listener with the Kafka user.
func (s *Secure) checkSecure(ctx context.Context, n *Node) error {
	user, err := s.cql(s.Username, s.Password)
	if err != nil {
		return err
	}
	if _, err := releaseVersion(ctx, n.CQLAddr(), user); err != nil {
		return fmt.Errorf("%s does not answer CQL over TLS as %s: %w", n.Name, s.Username, err)
	}
	if s.KafkaAddr == "" {
		return nil
	}
	d, err := s.KafkaDialer()
	if err != nil {
		return err
	}
	if err := kafkaReady(ctx, s.KafkaAddr, d); err != nil {
		return fmt.Errorf("kafka does not answer on its SASL_SSL listener %s: %w", s.KafkaAddr, err)
	}
	return nil
}

// prepareSecureNode writes the secure region's node configuration and
// returns the node, not started.
func prepareSecureNode(o Options, cassLib string, p *securePlan) (*Node, error) {
	addr := nodeAddress(secureRegionIndex, 0)
	spec := cassandraSpec{
		lib: cassLib, dir: filepath.Join(o.Dir, "cassandra", SecureRegionName, "0"),
		cluster: "tidemark-" + SecureRegionName, dc: SecureRegionName, address: addr, seeds: []string{addr + ":7000"},
		token: initialToken(0, 1), heap: o.CassandraHeap, attached: !o.Detached,
		extraYAML: o.extraYAML + p.cassandraYAML(),
	}
	proc, err := spec.prepare(fmt.Sprintf("cassandra %s/0 (%s, TLS)", SecureRegionName, addr))
	if err != nil {
		return nil, err
	}
	probe, err := p.cql(p.AdminUsername, p.AdminPassword)
	if err != nil {
		return nil, err
	}
	return &Node{Region: SecureRegionName, Index: 0, Address: addr, Process: proc, dir: spec.dir, probe: probe}, nil
}
