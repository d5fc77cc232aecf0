package hints

import (
	"testing"
	"time"

	"github.com/tidemark/tidemark/hints/record"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// testKey returns a deterministic HMAC key for tests.
func testKey(id string) record.Key {
	return record.Key{ID: id, Secret: []byte("secret-of-" + id + "-0123456789abcdef")}
}

func mustKeyring(t testing.TB, cfg record.KeyringConfig) *record.Keyring {
	t.Helper()
	kr, err := record.NewKeyring(cfg)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}
