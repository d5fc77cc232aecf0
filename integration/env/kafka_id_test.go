package env

import (
	"encoding/base64"
	"testing"
)

// A cluster id must never start with '-' (the storage tool would read it
// as an option) and must be 16 bytes of URL-safe base64.
func TestKafkaClusterIDNeverLooksLikeAnOption(t *testing.T) {
	for range 5000 {
		id := newKafkaClusterID()
		if id[0] == '-' {
			t.Fatalf("cluster id %q starts with '-'", id)
		}
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != 16 {
			t.Fatalf("cluster id %q: %d bytes, %v", id, len(b), err)
		}
	}
}
