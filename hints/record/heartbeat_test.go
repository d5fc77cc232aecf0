package record

import (
	"errors"
	"testing"
	"time"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	kr, err := NewKeyring(KeyringConfig{Current: Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	hb := Heartbeat{Producer: "a/7/1f2e", Target: "c", Before: 1_700_000_000_000_007, Registered: 1_699_999_999_000_007,
		SentAt: time.UnixMicro(1_700_000_000_100_000), Partition: 3, Partitions: 8, Closing: true}
	for _, k := range []*Keyring{nil, kr} {
		b, err := EncodeHeartbeat(hb, k)
		if err != nil {
			t.Fatal(err)
		}
		if !IsHeartbeat(b) {
			t.Fatal("IsHeartbeat false on a heartbeat")
		}
		got, err := DecodeHeartbeat(b, k)
		if err != nil {
			t.Fatal(err)
		}
		if !got.SentAt.Equal(hb.SentAt) {
			t.Fatalf("SentAt %v, want %v", got.SentAt, hb.SentAt)
		}
		got.SentAt = hb.SentAt
		if got != hb {
			t.Fatalf("round trip: %+v, want %+v", got, hb)
		}
		if _, err := Decode(b, k); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a heartbeat decoded as a hint: %v", err)
		}
	}
	// A hint is not a heartbeat.
	h, _ := Encode(Hint{Target: "c", Namespace: "ns", PK: []byte("p")}, nil)
	if IsHeartbeat(h) {
		t.Fatal("IsHeartbeat true on a hint")
	}
	if _, err := DecodeHeartbeat(h, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a hint decoded as a heartbeat: %v", err)
	}
	// Signed heartbeats are checked like hints.
	unsigned, _ := EncodeHeartbeat(hb, nil)
	if _, err := DecodeHeartbeat(unsigned, kr); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("unsigned heartbeat with a keyring that requires MACs: %v", err)
	}
	signed, _ := EncodeHeartbeat(hb, kr)
	signed[10] ^= 1
	if _, err := DecodeHeartbeat(signed, kr); !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("altered heartbeat: %v", err)
	}
	for _, bad := range []Heartbeat{
		{Target: "c", Partitions: 1},
		{Producer: "p", Partitions: 1},
		{Producer: "p", Target: "c", Partition: 2, Partitions: 2},
	} {
		if _, err := EncodeHeartbeat(bad, nil); !errors.Is(err, ErrInvalidHint) {
			t.Errorf("EncodeHeartbeat(%+v) = %v, want ErrInvalidHint", bad, err)
		}
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	b, _ := EncodeHeartbeat(Heartbeat{Producer: "p", Target: "c", Before: 5, Partitions: 2, Partition: 1}, nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := DecodeHeartbeat(b, nil)
		if err != nil {
			return
		}
		again, err := EncodeHeartbeat(hb, nil)
		if err != nil {
			t.Fatalf("decoded heartbeat does not encode: %v", err)
		}
		if _, err := DecodeHeartbeat(again, nil); err != nil {
			t.Fatalf("re-encoded heartbeat does not decode: %v", err)
		}
	})
}
