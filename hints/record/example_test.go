package record_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tidemark/tidemark/hints/record"
)

// A hint round trip through the record format, signed and verified.
func ExampleEncode() {
	kr, err := record.NewKeyring(record.KeyringConfig{
		Current: record.Key{ID: "2025-03", Secret: []byte("32-random-bytes-in-a-real-setup!")},
	})
	if err != nil {
		log.Fatal(err)
	}
	h := record.Hint{
		Target: "eu-west-1", Origin: "us-east-1", Namespace: "users",
		PK: []byte("user:42"), CK: []byte("profile"), Value: []byte(`{"name":"Ada"}`),
		Timestamp: 1741964966535897,
		ExpiresAt: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		CreatedAt: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC),
	}
	rec, err := record.Encode(h, kr)
	if err != nil {
		log.Fatal(err)
	}
	got, err := record.Decode(rec, kr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes: %s %s/%s = %s at %d\n", len(rec), got.Target, got.PK, got.CK, got.Value, got.Timestamp)

	rec[len(rec)-1] ^= 1 // tamper with the MAC
	_, err = record.Decode(rec, kr)
	fmt.Println(errors.Is(err, record.ErrUnauthenticated))
	// Output:
	// 128 bytes: eu-west-1 user:42/profile = {"name":"Ada"} at 1741964966535897
	// true
}

// Rotating the signing key: the old key is still accepted until its
// AcceptUntil, then refused.
func ExampleNewKeyring() {
	oldKey := record.Key{ID: "k1", Secret: []byte("the-old-secret-0123456789")}
	newKey := record.Key{ID: "k2", Secret: []byte("the-new-secret-0123456789")}
	rotatedAt := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	now := rotatedAt
	kr, err := record.NewKeyring(record.KeyringConfig{
		Current:  newKey,
		Previous: []record.Key{{ID: oldKey.ID, Secret: oldKey.Secret, AcceptUntil: rotatedAt.Add(10 * 24 * time.Hour)}},
		Now:      func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	old, _ := record.NewKeyring(record.KeyringConfig{Current: oldKey})
	rec, _ := record.Encode(record.Hint{Target: "b", Namespace: "users", PK: []byte("k")}, old)

	_, err = record.Decode(rec, kr)
	fmt.Println("day 0:", err == nil)
	now = rotatedAt.Add(11 * 24 * time.Hour)
	_, err = record.Decode(rec, kr)
	fmt.Println("day 11:", errors.Is(err, record.ErrUnauthenticated))
	fmt.Println("signing with", kr.CurrentKeyID())
	// Output:
	// day 0: true
	// day 11: true
	// signing with k2
}

// The record of the largest row a store accepts with its default limits
// (a 1 MiB value, 64 KiB keys) is larger than Kafka's default message size
// of 1 MiB, and fits record.DefaultMaxHintBytes.
func ExampleEncode_largestRow() {
	h := record.Hint{
		Target: "b", Namespace: "users",
		PK:    make([]byte, 65535),
		CK:    make([]byte, 65535),
		Value: make([]byte, 1<<20),
	}
	rec, err := record.Encode(h, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(rec) <= record.DefaultMaxHintBytes, len(rec) > 1<<20)
	// Output:
	// true true
}
