package hints_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/hints"
)

// A hint round trip through the record format, signed and verified.
func ExampleEncode() {
	kr, err := hints.NewKeyring(hints.KeyringConfig{
		Current: hints.Key{ID: "2025-03", Secret: []byte("32-random-bytes-in-a-real-setup!")},
	})
	if err != nil {
		log.Fatal(err)
	}
	h := hints.Hint{
		Target: "eu-west-1", Origin: "us-east-1", Namespace: "users",
		PK: []byte("user:42"), CK: []byte("profile"), Value: []byte(`{"name":"Ada"}`),
		Timestamp: 1741964966535897,
		ExpiresAt: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		CreatedAt: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC),
	}
	rec, err := hints.Encode(h, kr)
	if err != nil {
		log.Fatal(err)
	}
	got, err := hints.Decode(rec, kr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes: %s %s/%s = %s at %d\n", len(rec), got.Target, got.PK, got.CK, got.Value, got.Timestamp)

	rec[len(rec)-1] ^= 1 // tamper with the MAC
	_, err = hints.Decode(rec, kr)
	fmt.Println(errors.Is(err, hints.ErrUnauthenticated))
	// Output:
	// 128 bytes: eu-west-1 user:42/profile = {"name":"Ada"} at 1741964966535897
	// true
}

// Rotating the signing key: the old key is still accepted until its
// AcceptUntil, then refused.
func ExampleNewKeyring() {
	oldKey := hints.Key{ID: "k1", Secret: []byte("the-old-secret-0123456789")}
	newKey := hints.Key{ID: "k2", Secret: []byte("the-new-secret-0123456789")}
	rotatedAt := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	now := rotatedAt
	kr, err := hints.NewKeyring(hints.KeyringConfig{
		Current:  newKey,
		Previous: []hints.Key{{ID: oldKey.ID, Secret: oldKey.Secret, AcceptUntil: rotatedAt.Add(10 * 24 * time.Hour)}},
		Now:      func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	old, _ := hints.NewKeyring(hints.KeyringConfig{Current: oldKey})
	rec, _ := hints.Encode(hints.Hint{Target: "b", Namespace: "users", PK: []byte("k")}, old)

	_, err = hints.Decode(rec, kr)
	fmt.Println("day 0:", err == nil)
	now = rotatedAt.Add(11 * 24 * time.Hour)
	_, err = hints.Decode(rec, kr)
	fmt.Println("day 11:", errors.Is(err, hints.ErrUnauthenticated))
	fmt.Println("signing with", kr.CurrentKeyID())
	// Output:
	// day 0: true
	// day 11: true
	// signing with k2
}

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
	err = p.Hint(ctx, hints.Hint{Target: "b", Origin: "a", Namespace: "users", PK: []byte("k"), Value: []byte("v"), Timestamp: time.Now().UnixMicro()})
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
		Applier: hints.ApplierFunc(func(ctx context.Context, h hints.Hint) error {
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

// The record of the largest row a store accepts with its default limits
// (a 1 MiB value, 64 KiB keys) is larger than Kafka's default message size
// of 1 MiB, and fits DefaultMaxHintBytes.
func ExampleEncode_largestRow() {
	h := hints.Hint{
		Target: "b", Namespace: "users",
		PK:    make([]byte, 65535),
		CK:    make([]byte, 65535),
		Value: make([]byte, 1<<20),
	}
	rec, err := hints.Encode(h, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(rec) <= hints.DefaultMaxHintBytes, len(rec) > 1<<20)
	// Output:
	// true true
}
