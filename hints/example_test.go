package hints_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

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
