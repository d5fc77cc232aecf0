package hints_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/hints/record"
)

// The store's hint sink: a Producer, registered for metrics. (Needs a
// Kafka broker, so it has no Output.)
func ExampleNewProducer() {
	p, err := hints.NewProducer(hints.ProducerConfig{
		Brokers:           []string{"127.0.0.1:9092"},
		ReplicationFactor: 3,
		MinInSyncReplicas: 2,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	prometheus.NewRegistry().MustRegister(p)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = p.Hint(ctx, record.Hint{Target: "b", Origin: "a", Namespace: "users", PK: []byte("k"), Value: []byte("v"), Timestamp: time.Now().UnixMicro()})
	switch {
	case errors.Is(err, hints.ErrUnavailable), errors.Is(err, hints.ErrBufferFull):
		// Not stored: the write is left to anti-entropy repair.
	case err != nil:
		log.Print(err)
	}
}

// A replayer for region "b", applying hints through a gocql session of that
// region (hints.NewCQLApplier). Here a stand-in Applier prints them. (Needs
// a Kafka broker, so it has no Output.)
func ExampleNewReplayer() {
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: []string{"127.0.0.1:9092"},
		Region:  "b",
		Applier: hints.ApplierFunc(func(ctx context.Context, h record.Hint) error {
			fmt.Printf("apply %s/%s at %d\n", h.PK, h.CK, h.Timestamp)
			return nil
		}),
		MaxHintsPerSecond: 5000,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.Run(ctx) // returns when ctx is done
}

// The replayer of region "b" in production: the CQL applier checks each
// table's own tombstone retention (re-read every 30 s here) and lets the
// replayer probe the region, so a hint that keeps failing while the region
// is up is dead-lettered after MaxHintAttempts instead of stopping replay.
// (Needs Cassandra and Kafka, so it has no Output.)
func ExampleNewCQLApplier() {
	var session *gocql.Session // cluster.Connect to region "b"
	applier := hints.NewCQLApplier(session, "app", hints.WithRetentionRefresh(30*time.Second))
	if _, ok := applier.(hints.Prober); !ok {
		log.Fatal("the CQL applier probes its region")
	}
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers:         []string{"127.0.0.1:9092"},
		Region:          "b",
		Applier:         applier,
		MaxHintAttempts: 5,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
}

// A producer and a replayer on a SASL_SSL listener: TLS verified against
// the brokers' CA, SCRAM-SHA-512 credentials. The same two fields work for
// both; a credential or certificate Kafka refuses gives an error wrapping
// hints.ErrAuthentication. (Needs a Kafka broker, so it has no Output.)
func ExampleSASL() {
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile("/etc/kafka/ca.pem")
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		log.Fatal("no CA certificate")
	}
	tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	creds := &hints.SASL{Mechanism: hints.SASLScramSHA512, Username: "tidemark", Password: os.Getenv("KAFKA_PASSWORD")}

	p, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{"kafka-1:9094"}, TLS: tlsConfig, SASL: creds})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: []string{"kafka-1:9094"}, TLS: tlsConfig, SASL: creds, Region: "b",
		Applier: hints.ApplierFunc(func(context.Context, record.Hint) error { return nil }),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.EnsureTopics(ctx); errors.Is(err, hints.ErrAuthentication) {
		log.Fatalf("fix the Kafka credentials or CA: %v", err)
	}
}

// A store's heartbeat to region "b": one copy to each partition of the
// region's hint topic, about once a second, promising that every write it
// acknowledged below Before has reached the region, is a hint earlier in
// the partition, or is repair debt. (Needs a Kafka broker, so it has no
// Output.)
func ExampleProducer_Heartbeat() {
	p, err := hints.NewProducer(hints.ProducerConfig{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	registered := time.Now().UnixMicro()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = p.Heartbeat(ctx, record.Heartbeat{
		Producer:   "store-7f3a",           // unique per process
		Target:     "b",                    // the region the promise is about
		Before:     time.Now().UnixMicro(), // the oldest version still unsettled for "b"
		Registered: registered,             // below every write of this store
	})
	if err != nil {
		log.Print(err) // the watermark waits for the next one
	}
}

// latestMarks is a MarkRecorder that keeps, in memory, the newest mark
// per (producer, partition).
type latestMarks struct {
	mu    sync.Mutex
	marks map[string]hints.Mark
}

func (l *latestMarks) RecordMarks(ctx context.Context, region string, marks []hints.Mark) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range marks {
		k := fmt.Sprintf("%s/%s/%d", region, m.Producer, m.Partition)
		if old, ok := l.marks[k]; !ok || m.Offset > old.Offset {
			l.marks[k] = m
		}
	}
	return nil
}

// debtLog is a DebtRecorder that only logs (repaird records debt in its
// home region's keyspace).
type debtLog struct{}

func (debtLog) RecordDebt(_ context.Context, h record.Hint, reason string) error {
	log.Printf("repair debt: %s lacks %s/%x (%s)", h.Target, h.Namespace, h.PK, reason)
	return nil
}

// A replayer that passes the heartbeats it has replayed past on to a
// MarkRecorder: a mark says every record before it in its partition was
// applied or dead-lettered. (Needs a Kafka broker, so it has no Output.)
func ExampleMarkRecorder() {
	marks := &latestMarks{marks: map[string]hints.Mark{}}
	r, err := hints.NewReplayer(hints.ReplayerConfig{
		Brokers: []string{"127.0.0.1:9092"},
		Region:  "b",
		Applier: hints.ApplierFunc(func(context.Context, record.Hint) error { return nil }),
		Marks:   marks,
		Debt:    debtLog{}, // marks need the rejected hints recorded as repair debt
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.Run(ctx)
}
