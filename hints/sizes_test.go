package hints_test

import (
	"testing"

	"github.com/tidemark/tidemark/hints"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/store"
)

// TestDefaultMaxHintBytesFitsLargestStoreRow keeps DefaultMaxHintBytes in
// step with the store's default limits: a row with a value of
// store.DefaultMaxValueSize and both keys at their limits must be hintable.
func TestDefaultMaxHintBytesFitsLargestStoreRow(t *testing.T) {
	want := store.DefaultMaxValueSize + schema.MaxPartitionKey + schema.MaxClusteringKey + hints.MaxRecordOverhead
	if hints.DefaultMaxHintBytes != want {
		t.Fatalf("DefaultMaxHintBytes = %d, want %d (store.DefaultMaxValueSize %d + keys %d + %d + MaxRecordOverhead %d)",
			hints.DefaultMaxHintBytes, want, store.DefaultMaxValueSize, schema.MaxPartitionKey, schema.MaxClusteringKey, hints.MaxRecordOverhead)
	}
}
