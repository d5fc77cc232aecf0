package env

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kafka ports on 127.0.0.1 (off the defaults, so a developer's own broker on
// 9092 does not collide).
const (
	KafkaPort        = 29092
	KafkaControlPort = 29093
	// KafkaSecurePort is the SASL_SSL listener of the secure mode.
	KafkaSecurePort = 29094
	kafkaHost       = "127.0.0.1"
)

// Broker is the environment's single KRaft Kafka broker.
type Broker struct {
	// Addr is the broker's "host:port" bootstrap address.
	Addr string
	// Process controls the broker's JVM.
	*Process
	dir string
}

type kafkaSpec struct {
	lib      string
	dir      string
	heap     string
	attached bool
	// secure adds the SASL_SSL listener; nil leaves it out.
	secure *kafkaSecurity
}

// kafkaSecurity is the SASL_SSL listener's key and users.
type kafkaSecurity struct {
	keystore       string // PEM: the private key, then the certificate chain
	user, password string // one user for every mechanism
}

func (s kafkaSpec) properties() string {
	listeners := fmt.Sprintf("PLAINTEXT://%s:%d,CONTROLLER://%s:%d", kafkaHost, KafkaPort, kafkaHost, KafkaControlPort)
	advertised := fmt.Sprintf("PLAINTEXT://%s:%d", kafkaHost, KafkaPort)
	protocols := "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
	var secure []string
	if sec := s.secure; sec != nil {
		l := fmt.Sprintf(",SASL_SSL://%s:%d", kafkaHost, KafkaSecurePort)
		listeners, advertised, protocols = listeners+l, advertised+l, protocols+",SASL_SSL:SASL_SSL"
		// The controller and the brokers keep talking PLAINTEXT; only
		// clients of this listener authenticate. SCRAM users live in the
		// cluster metadata (made by the storage format, KIP-900); PLAIN
		// users in the listener's JAAS line.
		scram := "org.apache.kafka.common.security.scram.ScramLoginModule required;"
		secure = []string{
			"listener.name.sasl_ssl.sasl.enabled.mechanisms=" + strings.Join(KafkaMechanisms, ","),
			"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=" + scram,
			"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" + scram,
			fmt.Sprintf("listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%s=%q;", sec.user, sec.password),
			"listener.name.sasl_ssl.ssl.keystore.type=PEM",
			"listener.name.sasl_ssl.ssl.keystore.location=" + sec.keystore,
		}
	}
	return strings.Join(append([]string{
		"process.roles=broker,controller",
		"node.id=1",
		fmt.Sprintf("controller.quorum.voters=1@%s:%d", kafkaHost, KafkaControlPort),
		"listeners=" + listeners,
		"advertised.listeners=" + advertised,
		"controller.listener.names=CONTROLLER",
		"inter.broker.listener.name=PLAINTEXT",
		"listener.security.protocol.map=" + protocols,
		"log.dirs=" + filepath.Join(s.dir, "data"),
		"num.partitions=4",
		"default.replication.factor=1",
		"min.insync.replicas=1",
		"offsets.topic.replication.factor=1",
		"offsets.topic.num.partitions=8",
		"transaction.state.log.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		"auto.create.topics.enable=false",
		"delete.topic.enable=true",
		"num.network.threads=2",
		"num.io.threads=4",
		"log.flush.interval.messages=9223372036854775807",
	}, append(secure, "")...), "\n")
}

func (s kafkaSpec) log4j() string {
	return fmt.Sprintf(`log4j.rootLogger=INFO, F
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File=%s
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.state.change.logger=WARN
`, filepath.Join(s.dir, "logs", "server.log"))
}

// prepare writes the broker's configuration, formats its storage (once) and
// returns its process.
func (s kafkaSpec) prepare(ctx context.Context) (*Process, error) {
	for _, d := range []string{"data", "logs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	props := filepath.Join(s.dir, "server.properties")
	l4j := filepath.Join(s.dir, "log4j.properties")
	if err := os.WriteFile(props, []byte(s.properties()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l4j, []byte(s.log4j()), 0o644); err != nil {
		return nil, err
	}
	cp := filepath.Join(s.lib, "*")
	logOpt := "-Dlog4j.configuration=file:" + l4j
	if _, err := os.Stat(filepath.Join(s.dir, "data", "meta.properties")); err != nil {
		clusterID := newKafkaClusterID()
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		args := []string{"-Xmx256M", logOpt, "-cp", cp,
			"kafka.tools.StorageTool", "format", "-t", clusterID, "-c", props, "--ignore-formatted"}
		if sec := s.secure; sec != nil {
			for _, m := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256"} {
				args = append(args, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", m, sec.user, sec.password))
			}
		}
		out, err := exec.CommandContext(fctx, javaBin(), args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%w: kafka storage format failed (%v):\n%s", ErrStart, err, lastLines(string(out), 10))
		}
	}
	return &Process{
		Name:     "kafka",
		LogFile:  filepath.Join(s.dir, "logs", "server.log"),
		argv:     []string{javaBin(), "-Xms" + s.heap, "-Xmx" + s.heap, "-XX:+UseG1GC", "-XX:+PerfDisableSharedMem", "-Djava.net.preferIPv4Stack=true", "-Djava.io.tmpdir=" + filepath.Join(s.dir, "data"), logOpt, "-cp", cp, "kafka.Kafka", props},
		dir:      s.dir,
		outFile:  filepath.Join(s.dir, "logs", "console.log"),
		attached: s.attached,
	}, nil
}

// waitKafka waits until the broker answers a metadata request at addr,
// connecting with d (nil: plaintext).
func waitKafka(ctx context.Context, p *Process, addr string, d *kafka.Dialer) error {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := kafkaReady(ctx, addr, d); err == nil {
			return nil
		}
		select {
		case <-p.exited():
			return startError(p, "exited during start")
		case <-ctx.Done():
			return startError(p, fmt.Sprintf("did not answer metadata requests on %s in time (%v)", addr, ctx.Err()))
		case <-tick.C:
		}
	}
}

// kafkaReady asks the broker for its metadata: the broker list must name
// it. d is the dialer (TLS, SASL); nil dials plaintext.
func kafkaReady(ctx context.Context, addr string, d *kafka.Dialer) error {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if d == nil {
		d = &kafka.Dialer{Timeout: 2 * time.Second}
	}
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	brokers, err := conn.Brokers()
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return fmt.Errorf("no brokers in metadata")
	}
	if _, err := conn.Controller(); err != nil {
		return err
	}
	return nil
}

// newKafkaClusterID returns a random cluster id in Kafka's form (16 bytes,
// URL-safe base64). One that starts with '-' is drawn again: the storage
// tool's argument parser would take it for an option and fail (1 start in
// 64 did).
func newKafkaClusterID() string {
	for {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		if s := base64.RawURLEncoding.EncodeToString(id); s[0] != '-' {
			return s
		}
	}
}
